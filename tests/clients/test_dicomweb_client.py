"""dicomweb-client (PyPI `dicomweb-client`, unmodified), its Python API and its `dicomweb_client`
command line, against the emulator over real HTTP, pointed at it the way its documentation says:
`DICOMwebClient(url=<DICOMweb base URL>)` / `dicomweb_client --url <base URL> ...`.

Every retrieve media type the client offers is asked for. Where Google serves a type, the scenario
must pass, the pixels decoded by pydicom's own decoders (pylibjpeg-libjpeg for JPEG Lossless and
12-bit JPEG, a decoder independent of the libjpeg-turbo that encoded them); where Google's
conformance statement leaves a type out, the test asserts Google's refusal (406). A type Google
serves and this emulator could not encode would be a strict xfail, failing the day the emulator
learns it; every type this client offers is served now (JPEG Extended and Lossless were the last)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from requests import HTTPError

import dicom_factory as f
import dicomweb_samples as smp
from emulator_helpers import ready_store
from provision.emulator.server import EmulatorServer
from provision.emulator.world import Options

CT = f.ct_series("dwc-ct", slices=3, size=32)            # int16: 16 bits stored, signed
MR = f.mr_series("dwc-mr", slices=2, size=32)            # uint16, 12 bits stored
MONO = smp.mono8("dwc-mono", size=32, frames=3)          # 8-bit grey, 3 frames
RGB = smp.rgb8("dwc-rgb", size=32)
JPEG = smp.jpeg_baseline_stored("dwc-jpeg")
RLE_STORED = smp.rle_stored("dwc-rle")
BULK = smp.bulk_rich("dwc-bulk")
SEEDED = CT + MR + [MONO, RGB, JPEG, RLE_STORED, BULK]

EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1 = ("1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                                                   "1.2.840.10008.1.2.4.70")
LOSSLESS = (EXPLICIT_LE, smp.RLE, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1, "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90")
LOSSY = (smp.JPEG_BASELINE, JPEG_EXTENDED, "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91")
# Offered by dicomweb-client, absent from Google's retrieve table: Google refuses them.
NOT_GOOGLE = ("1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101",
              "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.104",
              "1.2.840.10008.1.2.4.105", "1.2.840.10008.1.2.4.106")


@pytest.fixture(scope="module")
def env():
    emu = EmulatorServer(Options(host="127.0.0.1", port=0)).start()
    try:
        e = ready_store(emu, project="dwc-client")
        # as a user stores files from disk: pydicom.dcmread keeps each file's preamble
        e.dicomweb.store_instances([pydicom.dcmread(io.BytesIO(smp.to_bytes(d))) for d in SEEDED])
        yield e
    finally:
        emu.stop()


@pytest.fixture
def fresh(emulator):
    return ready_store(emulator, project="dwc-client-w")


def ids(ds) -> tuple[str, str, str]:
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def status(exc: pytest.ExceptionInfo) -> int:
    return exc.value.response.status_code


# ---- STOW-RS -------------------------------------------------------------------------------------
def test_store_instances_returns_the_references(fresh):
    files = [pydicom.dcmread(io.BytesIO(smp.to_bytes(d))) for d in CT]
    result = fresh.dicomweb.store_instances(files)                   # Google's default XML, parsed by the client
    assert [r.ReferencedSOPInstanceUID for r in result.ReferencedSOPSequence] == [d.SOPInstanceUID for d in CT]
    assert result.RetrieveURL == f"{fresh.dicomweb_url}/studies/{CT[0].StudyInstanceUID}"
    again = fresh.dicomweb.store_instances(files[:1], study_instance_uid=CT[0].StudyInstanceUID)   # identical: 200
    assert again.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == CT[0].SOPInstanceUID


def test_store_instances_of_a_data_set_built_in_memory_is_refused_as_google_would(fresh):
    """pydicom 3 writes a data set built in memory without the PS3.10 preamble; the emulator refuses
    it as an invalid DICOM file: 409 with a FailureDetail (see dicomweb.py for the evidence)."""
    built = smp.mono8("dwc-inmem", size=4)
    built.preamble = None
    with pytest.raises(HTTPError) as refused:
        fresh.dicomweb.store_instances([built])
    assert status(refused) == 409 and "preamble" in refused.value.response.text
    built.preamble = b"\0" * 128                                    # the fix the FailureDetail names
    assert fresh.dicomweb.store_instances([built]).ReferencedSOPSequence


# ---- QIDO-RS -------------------------------------------------------------------------------------
def test_search_studies_series_instances(env):
    dw = env.dicomweb
    studies = dw.search_for_studies(search_filters={"PatientID": "PID-CT1"}, fields=["StudyDescription"])
    assert [s["0020000D"]["Value"][0] for s in studies] == [CT[0].StudyInstanceUID]
    assert studies[0]["00081030"]["Value"] == ["CT chest phantom"] and "00201208" not in studies[0]
    assert dw.search_for_studies(search_filters={"PatientName": "phan"}, fuzzymatching=True)
    assert dw.search_for_studies(search_filters={"PatientID": "nobody"}) == []          # Google's 204
    series = dw.search_for_series(CT[0].StudyInstanceUID, search_filters={"Modality": "CT"})
    assert series[0]["0020000E"]["Value"] == [CT[0].SeriesInstanceUID]
    inst = dw.search_for_instances(*ids(MONO)[:2], fields=["00020010"])
    assert inst[0]["00020010"]["Value"] == [EXPLICIT_LE] and inst[0]["00280008"]["Value"] == [3]
    with pytest.raises(HTTPError) as bad:
        dw.search_for_instances(search_filters={"SOPClassUID": f.CT_IMAGE})             # not searchable on Google
    assert status(bad) == 400


def test_search_pages_with_get_remaining(env):
    dw = env.dicomweb
    every = dw.search_for_instances(limit=2, get_remaining=True)
    assert len(every) == len(SEEDED) and len({i["00080018"]["Value"][0] for i in every}) == len(SEEDED)
    assert len(dw.search_for_instances(limit=2, offset=2)) == 2


# ---- WADO-RS: instances, series, studies ---------------------------------------------------------
@pytest.mark.parametrize("ts", [None, "*", *LOSSLESS, *LOSSY])
def test_retrieve_instance_in_each_transfer_syntax(env, ts):
    if ts in (JPEG_LOSSLESS, JPEG_LOSSLESS_SV1):
        smp.need_jpeg_decoder()
    media = None if ts is None else (("application/dicom", ts),)
    for ds in (MONO, RGB, JPEG):
        got = env.dicomweb.retrieve_instance(*ids(ds), media_types=media)
        # the client's default for one instance is transfer-syntax=*: the stored encoding
        want = ds.file_meta.TransferSyntaxUID if ts in (None, "*") else ts
        assert got.file_meta.TransferSyntaxUID == want and got.SOPInstanceUID == ds.SOPInstanceUID
        tolerance = 12 if want in LOSSY or ds.file_meta.TransferSyntaxUID in LOSSY else 0
        assert np.abs(got.pixel_array.astype(int) - ds.pixel_array.astype(int)).mean() <= tolerance


@pytest.mark.parametrize("ts", NOT_GOOGLE)
def test_retrieve_instance_in_a_syntax_google_does_not_serve_is_406(env, ts):
    with pytest.raises(HTTPError) as refused:
        env.dicomweb.retrieve_instance(*ids(MONO), media_types=(("application/dicom", ts),))
    assert status(refused) == 406


def test_retrieve_series_and_study_default_star_and_rle(env):
    dw = env.dicomweb
    series = dw.retrieve_series(*ids(CT[0])[:2])
    assert sorted(d.SOPInstanceUID for d in series) == sorted(d.SOPInstanceUID for d in CT)
    assert {d.file_meta.TransferSyntaxUID for d in series} == {EXPLICIT_LE}
    study = list(dw.iter_study(RLE_STORED.StudyInstanceUID, media_types=(("application/dicom", "*"),)))
    assert study[0].file_meta.TransferSyntaxUID == smp.RLE
    as_rle = dw.retrieve_series(*ids(CT[0])[:2], media_types=(("application/dicom", smp.RLE),))
    assert all(np.array_equal(d.pixel_array, src.pixel_array) for d, src in
               zip(sorted(as_rle, key=lambda d: d.InstanceNumber), CT, strict=True))


def test_retrieve_metadata_at_each_level(env):
    dw = env.dicomweb
    inst = dw.retrieve_instance_metadata(*ids(JPEG))
    assert inst["00020010"]["Value"] == [smp.JPEG_BASELINE] and "BulkDataURI" in inst["7FE00010"]
    assert len(dw.retrieve_series_metadata(*ids(CT[0])[:2])) == len(CT)
    assert dw.retrieve_study_metadata(MONO.StudyInstanceUID)[0]["00280008"]["Value"] == [3]
    with pytest.raises(HTTPError) as missing:
        dw.retrieve_study_metadata("1.2.3.4.5")
    assert status(missing) == 403                       # Google: "no access or the resource doesn't exist"


# ---- WADO-RS: frames, bulk data, rendered --------------------------------------------------------
def test_retrieve_frames_uncompressed(env):
    dw = env.dicomweb
    frames = dw.retrieve_instance_frames(*ids(MONO), [1, 3])           # the client's default Accept
    assert frames == [MONO.pixel_array[0].tobytes(), MONO.pixel_array[2].tobytes()]
    for media in ((("application/octet-stream", EXPLICIT_LE),), (("application/octet-stream", "*"),)):
        assert dw.retrieve_instance_frames(*ids(CT[1]), [1], media_types=media) == [bytes(CT[1].PixelData)]
    stored = dw.retrieve_instance_frames(*ids(RLE_STORED), [1], media_types=(("application/octet-stream", "*"),))
    assert stored[0] == next(pydicom.encaps.generate_frames(RLE_STORED.PixelData, number_of_frames=1))
    decoded = dw.retrieve_instance_frames(*ids(RLE_STORED), [1])
    assert decoded[0] == RLE_STORED.pixel_array.astype("<u2").tobytes()


def test_retrieve_frames_as_jpeg_and_rle(env):
    dw = env.dicomweb
    jpegs = dw.retrieve_instance_frames(*ids(MONO), [2], media_types=(("image/jpeg", smp.JPEG_BASELINE),))
    img = np.asarray(Image.open(io.BytesIO(jpegs[0])))
    assert np.abs(img.astype(int) - MONO.pixel_array[1].astype(int)).mean() < 6
    assert dw.retrieve_instance_frames(*ids(JPEG), [1], media_types=("image/jpeg",))[0] == \
        next(pydicom.encaps.generate_frames(JPEG.PixelData, number_of_frames=1))       # as stored
    rle = dw.retrieve_instance_frames(*ids(CT[0]), [1], media_types=(("image/dicom-rle", smp.RLE),))
    from pydicom.pixels.decoders import RLELosslessDecoder

    back = RLELosslessDecoder.as_array(pydicom.encaps.encapsulate(rle), rows=32, columns=32, samples_per_pixel=1,
                                       bits_allocated=16, bits_stored=16, pixel_representation=1,
                                       number_of_frames=1, photometric_interpretation="MONOCHROME2")[0]
    assert np.array_equal(back, CT[0].pixel_array)
    with pytest.raises(HTTPError) as deep:                       # JPEG Baseline holds 8 bits; CT has 16
        dw.retrieve_instance_frames(*ids(CT[0]), [1], media_types=(("image/jpeg", smp.JPEG_BASELINE),))
    assert status(deep) == 406


@pytest.mark.parametrize("media", [("image/jls", "1.2.840.10008.1.2.4.80"), ("image/jls", "1.2.840.10008.1.2.4.81"),
                                   ("image/jp2", "1.2.840.10008.1.2.4.90"), ("image/jp2", "1.2.840.10008.1.2.4.91")])
def test_retrieve_frames_as_jpeg_ls_and_jpeg_2000(env, media):
    from pydicom.pixels import get_decoder

    got = env.dicomweb.retrieve_instance_frames(*ids(MR[1]), [1], media_types=(media,))
    back = get_decoder(media[1]).as_array(pydicom.encaps.encapsulate(got), rows=32, columns=32, samples_per_pixel=1,
                                          bits_allocated=16, bits_stored=12, pixel_representation=0,
                                          number_of_frames=1, photometric_interpretation="MONOCHROME2")[0]
    assert np.abs(back.astype(int) - MR[1].pixel_array.astype(int)).mean() <= (0 if media[1].endswith(("80", "90")) else 64)


@pytest.mark.parametrize("ts", [JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1])
def test_retrieve_frames_as_jpeg_extended_and_lossless(env, ts):
    """image/jpeg frames in the JPEG syntaxes beyond Baseline: 8-bit grey (MONO, frame 3), 12-bit
    grey (MR) and, lossless only, 16-bit signed (CT); decoded by pydicom (pylibjpeg-libjpeg)."""
    from pydicom.pixels import get_decoder

    smp.need_jpeg_decoder()
    lossless = ts != JPEG_EXTENDED
    for ds, frame in ((MONO, 3), (MR[1], 1), (CT[2], 1)):
        media = (("image/jpeg", ts),)
        if ds is CT[2] and not lossless:                       # 16 bits: more than lossy JPEG holds
            with pytest.raises(HTTPError) as deep:
                env.dicomweb.retrieve_instance_frames(*ids(ds), [frame], media_types=media)
            assert status(deep) == 406
            continue
        got = env.dicomweb.retrieve_instance_frames(*ids(ds), [frame], media_types=media)
        precision = ds.BitsStored if lossless else 8 if ds.BitsAllocated == 8 else 12
        back = get_decoder(ts).as_array(
            pydicom.encaps.encapsulate(got), rows=ds.Rows, columns=ds.Columns, samples_per_pixel=1,
            bits_allocated=ds.BitsAllocated, bits_stored=precision,
            pixel_representation=ds.PixelRepresentation, number_of_frames=1,
            photometric_interpretation="MONOCHROME2", decoding_plugin="pylibjpeg")[0]
        want = ds.pixel_array[frame - 1] if ds is MONO else ds.pixel_array
        diff = np.abs(back.astype(int) - want.astype(int))
        if lossless:
            assert diff.max() == 0, (ts, ds.SOPInstanceUID)
        else:                                                  # lossy: within 1/64 of the range on average
            assert diff.mean() <= 2 ** ds.BitsStored / 64, (ts, ds.SOPInstanceUID, diff.mean())


@pytest.mark.parametrize("media", [("image/jpx", "1.2.840.10008.1.2.4.92"), ("image/jpx", "1.2.840.10008.1.2.4.93")])
def test_retrieve_frames_in_a_type_google_does_not_serve_is_406(env, media):
    with pytest.raises(HTTPError) as refused:
        env.dicomweb.retrieve_instance_frames(*ids(MONO), [1], media_types=(media,))
    assert status(refused) == 406


def test_retrieve_bulkdata(env):
    dw = env.dicomweb
    meta = dw.retrieve_instance_metadata(*ids(BULK))
    assert dw.retrieve_bulkdata(meta["00091011"]["BulkDataURI"]) == [b"\x01\x02\x03\x04"]
    px = dw.retrieve_bulkdata(meta["7FE00010"]["BulkDataURI"], media_types=(("application/octet-stream", "*"),))
    assert px == [bytes(BULK.PixelData)]


def test_retrieve_rendered(env):
    dw = env.dicomweb
    jpeg = dw.retrieve_instance_rendered(*ids(CT[1]), media_types=("image/jpeg",), params={"viewport": "16,16"})
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG" and Image.open(io.BytesIO(jpeg)).size == (16, 16)
    png = dw.retrieve_instance_rendered(*ids(RGB), media_types=("image/png",))
    assert Image.open(io.BytesIO(png)).format == "PNG"
    frame = dw.retrieve_instance_frames_rendered(*ids(MONO), [3], media_types=("image/png",))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(frame))).shape, (32, 32))
    # Google renders only image/jpeg and image/png, for instances and frames (CONF §1.1, §1.2)
    for media in ("image/gif", "image/jp2"):
        with pytest.raises(HTTPError) as refused:
            dw.retrieve_instance_rendered(*ids(CT[1]), media_types=(media,))
        assert status(refused) == 406, media
    with pytest.raises(HTTPError) as series_level:
        dw.retrieve_series_rendered(*ids(CT[1])[:2])
    assert status(series_level) == 404


# ---- DELETE --------------------------------------------------------------------------------------
def test_delete_instance_series_study(fresh):
    dw = fresh.dicomweb
    dw.store_instances([pydicom.dcmread(io.BytesIO(smp.to_bytes(d))) for d in CT + MR])
    dw.delete_instance(*ids(CT[0]))
    assert len(dw.search_for_instances(CT[0].StudyInstanceUID)) == len(CT) - 1
    dw.delete_series(*ids(CT[1])[:2])
    dw.delete_study(MR[0].StudyInstanceUID)
    assert dw.search_for_studies() == []


# ---- the `dicomweb_client` command line ------------------------------------------------------------
def cli(env, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("dicomweb_client")
    proc = subprocess.run([str(exe), "--url", env.dicomweb_url, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_cli_store_search_retrieve(fresh, tmp_path):
    paths = f.write_all([MONO, RGB, JPEG], tmp_path / "in")
    cli(fresh, "store", "instances", *map(str, paths))
    found = json.loads(cli(fresh, "search", "studies", "--filter", "PatientID=PID-dwc-mono").stdout)
    assert [s["0020000D"]["Value"][0] for s in found] == [MONO.StudyInstanceUID]
    assert json.loads(cli(fresh, "search", "studies", "--filter", "PatientID=nobody").stdout) == []     # 204
    assert json.loads(cli(fresh, "search", "instances", "--study", MONO.StudyInstanceUID).stdout)[0][
        "00080018"]["Value"] == [MONO.SOPInstanceUID]
    meta = json.loads(cli(fresh, "retrieve", "studies", "--study", JPEG.StudyInstanceUID, "metadata").stdout)
    assert meta[0]["00020010"]["Value"] == [smp.JPEG_BASELINE]
    out = tmp_path / "out"
    out.mkdir()
    st, se, sop = ids(RGB)
    cli(fresh, "retrieve", "instances", "--study", st, "--series", se, "--instance", sop, "full", "--save",
        "--output-dir", str(out), "--media-type", "application/dicom", smp.RLE)
    back = pydicom.dcmread(out / f"{sop}.dcm")
    assert back.file_meta.TransferSyntaxUID == smp.RLE and np.array_equal(back.pixel_array, RGB.pixel_array)
    st, se, sop = ids(MONO)
    cli(fresh, "retrieve", "instances", "--study", st, "--series", se, "--instance", sop, "frames", "--numbers", "1",
        "2", "--save", "--output-dir", str(out), "--media-type", "image/jpeg", smp.JPEG_BASELINE)
    for n in (1, 2):
        img = np.asarray(Image.open(out / f"{sop}_{n}.jpg"))
        assert np.abs(img.astype(int) - MONO.pixel_array[n - 1].astype(int)).mean() < 6
    refused = cli(fresh, "retrieve", "instances", "--study", st, "--series", se, "--instance", sop, "full",
                  "--media-type", "application/dicom", "1.2.840.10008.1.2.4.100", check=False)
    assert refused.returncode == 1 and "406" in refused.stderr
