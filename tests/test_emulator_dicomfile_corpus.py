"""The emulator's fast DICOM reader (provision/emulator/healthcare/dicomfile.py) against pydicom's
`Dataset.to_json_dict` over pydicom's own corpus of test files: explicit and implicit VR, big
endian, deflated, JPEG/JPEG 2000/JPEG-LS/RLE encapsulated data, nested sequences, private tags,
odd value lengths, character sets. What is stored and served as DICOM JSON must be what pydicom
reads, except where PS3.18 says otherwise (the differences are listed below, each with its rule).

A file the reader refuses must be one Google refuses too, for the reason given.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from provision.emulator.healthcare.dicomfile import ALWAYS_BULK, BULK_MARK, INLINE_LIMIT, NotDicom, parse_file

CORPUS = Path(get_testdata_file("CT_small.dcm")).parent
FILES = sorted(p.name for p in CORPUS.glob("*.dcm"))

# Refused, and why (a substring of the reader's message). Files refused only for their missing
# UIDs are also compared, with UIDs added (`with_uids`), so their encodings are checked anyway.
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MISSING_UIDS = "missing Study, Series or SOP Instance UID"
REFUSED = {
    "ExplVR_BigEndNoMeta.dcm": "no DICM prefix",         # no PS3.10 preamble: not a Part-10 file
    "ExplVR_LitEndNoMeta.dcm": "no DICM prefix",
    "no_meta.dcm": "no DICM prefix",
    "rtstruct.dcm": "no DICM prefix",
    "meta_missing_tsyntax.dcm": "no TransferSyntaxUID",
    "badVR.dcm": "non-numeric value",                      # NumberOfFrames '1A'
    # Pixel data longer than Rows x Columns x SamplesPerPixel x BitsAllocated/8 (the emulator's
    # choice: a native frame must have its exact size, or frames/N cannot be cut out of it).
    "MR_small_padded.dcm": "Pixel Data length",
}
# Encodings the corpus must really exercise (compared, not refused), so a reader that refused
# them all could not pass.
MUST_COMPARE = {
    "MR_small.dcm": "explicit VR little endian",
    "MR_small_implicit.dcm": "implicit VR little endian",
    "MR_small_bigendian.dcm": "explicit VR big endian (pydicom fallback)",
    "image_dfl.dcm": "deflated (pydicom fallback)",
    "test-SR.dcm": "nested sequences",
    "nested_priv_SQ.dcm": "private sequences inside private sequences",
    "priv_SQ.dcm": "a private sequence",
    "SC_rgb_small_odd.dcm": "odd value lengths",
    "SC_ybr_full_422_uncompressed.dcm": "native YBR_FULL_422 (two samples per pixel on the wire)",
    "JPEG2000.dcm": "encapsulated pixel data",
    "UN_sequence.dcm": "a sequence of VR UN",
    "chr_japanese.dcm" if (CORPUS / "chr_japanese.dcm").exists() else "MR_small.dcm": "character set",
}


def _bulk(elem) -> str:
    return f"{BULK_MARK}/bulkdata/{elem.tag:08X}"


def pydicom_json(path: Path) -> dict:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    out = ds.file_meta.to_json_dict(bulk_data_threshold=INLINE_LIMIT, bulk_data_element_handler=_bulk)
    out.update(ds.to_json_dict(bulk_data_threshold=INLINE_LIMIT, bulk_data_element_handler=_bulk))
    return out


def normalised(meta: dict) -> dict:
    """The same DICOM JSON, with the differences the standard allows made equal:
    - group lengths (gggg0000) and pixel data are left out (PS3.18 F.2: group lengths are not
      encoded; pixel data is a BulkDataURI the store makes);
    - binary values compare as "bulk" whichever of InlineBinary or BulkDataURI carries them
      (Google's bulk-data rules differ from pydicom's threshold);
    - an empty value among several is null in DICOM JSON (PS3.18 F.2.5), an empty string in
      pydicom; an empty sequence has no "Value" (F.2.5: an empty attribute has no Value), pydicom
      writes `[]`;
    - CS values are trimmed (PS3.5 6.2: leading and trailing spaces are not significant).
    """
    out = {}
    for tag, attr in meta.items():
        if tag.endswith("0000") or tag.startswith("7FE0"):
            continue
        attr = dict(attr)
        vr = attr.get("vr")
        if vr in ALWAYS_BULK or "BulkDataURI" in attr or "InlineBinary" in attr:
            attr = {"vr": vr, "value": "bulk"}
        elif vr == "SQ":
            items = [normalised(item) for item in attr.get("Value") or []]
            attr = {"vr": vr, **({"Value": items} if items else {})}
        elif "Value" in attr:
            values = [None if v == "" else v for v in attr["Value"]]
            if vr == "CS":
                values = [v.strip() if isinstance(v, str) else v for v in values]
            attr["Value"] = values
        out[tag] = attr
    return out


def with_uids(name: str, tmp_path: Path) -> Path:
    """The file with Study, Series and SOP Instance UIDs added (and nothing else changed)."""
    ds = pydicom.dcmread(CORPUS / name)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if keyword not in ds:
            setattr(ds, keyword, generate_uid())
    ds.SOPClassUID = ds.get("SOPClassUID") or SECONDARY_CAPTURE
    ds.file_meta.MediaStorageSOPClassUID = ds.file_meta.get("MediaStorageSOPClassUID") or ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "PixelData" in ds and "Rows" not in ds:
        del ds.PixelData   # nested_priv_SQ.dcm: a few bytes of pixel data and no image to go with them
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


def readable(name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"orig-{name}"
    shutil.copyfile(CORPUS / name, path)
    try:
        parse_file(path)
    except NotDicom as exc:
        if MISSING_UIDS in str(exc):
            return with_uids(name, tmp_path)
    return path


@pytest.mark.filterwarnings("ignore::UserWarning")   # pydicom warns about the corpus's deliberate oddities
@pytest.mark.parametrize("name", FILES)
def test_the_reader_matches_pydicom(name, tmp_path):
    path = readable(name, tmp_path)
    if name in REFUSED:
        with pytest.raises(NotDicom, match=REFUSED[name]):
            parse_file(path)
        return
    got = normalised(parse_file(path).meta)
    want = normalised(pydicom_json(path))
    differ = {tag: (got.get(tag), want.get(tag)) for tag in sorted(set(got) | set(want)) if got.get(tag) != want.get(tag)}
    assert not differ, f"{name}: the reader and pydicom differ at {list(differ)[:5]}: {list(differ.values())[:2]}"


def test_the_corpus_covers_the_encodings_that_matter():
    assert set(MUST_COMPARE) <= set(FILES), sorted(set(MUST_COMPARE) - set(FILES))
    assert not set(MUST_COMPARE) & set(REFUSED), "an encoding the reader must read is listed as refused"
    assert len(FILES) - len(REFUSED) >= 60, "most of pydicom's corpus is compared, not refused"
