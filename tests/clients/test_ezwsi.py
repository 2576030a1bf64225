"""Google's own EZ-WSI DICOMweb library (PyPI `ez-wsi-dicomweb`, unmodified) against the emulator:
open a whole-slide image and read patches from it, over real HTTP.

EZ-WSI addresses any DICOMweb server by URL (`dicom_path.FromString` keeps a non-Google host's path
as the DICOMweb prefix) and talks to it without credentials through `NoAuthCredentialsFactory`.
It finds a slide's instances by QIDO with one `includefield` per attribute, TransferSyntaxUID
(0002,0010) among them - on Google stores that attribute comes back (google-evidence.md / issue 10),
and without it EZ-WSI cannot build the slide's level map."""
from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

import dicom_factory as f
from emulator_helpers import ready_store
from provision.demo.studies import set_file_meta
from provision.emulator.server import EmulatorServer
from provision.emulator.world import Options

WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"   # VL Whole Slide Microscopy Image Storage
SIZE, TILE = 256, 64


def picture(size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([(x * 255) // (size - 1), (y * 255) // (size - 1), ((x // 16 + y // 16) % 2) * 200 + 20],
                    axis=-1).astype(np.uint8)


def slide(key: str, full: np.ndarray, *, jpeg: bool = False) -> Dataset:
    """A TILED_FULL single-level slide of `full` (RGB), tiles TILE x TILE, native or JPEG Baseline."""
    size = full.shape[0]
    ds = Dataset()
    ds.SOPClassUID = WSI
    ds.SOPInstanceUID = f.uid("wsi-instance", key)
    ds.StudyInstanceUID = f.uid("wsi-study", key)
    ds.SeriesInstanceUID = f.uid("wsi-series", key)
    ds.PatientID, ds.PatientName, ds.Modality = f"WSI-{key}", "Slide^Sample", "SM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.SeriesNumber = ds.InstanceNumber = 1
    ds.Rows = ds.Columns = TILE
    ds.TotalPixelMatrixColumns = ds.TotalPixelMatrixRows = size
    ds.NumberOfFrames = (size // TILE) ** 2
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.ImagedVolumeWidth = ds.ImagedVolumeHeight = size * 0.0005
    ds.ImagedVolumeDepth = 0.001
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.0005, 0.0005], 0.001
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem = origin.YOffsetInSlideCoordinateSystem = 0
    ds.TotalPixelMatrixOriginSequence = [origin]
    tiles = [full[r:r + TILE, c:c + TILE] for r in range(0, size, TILE) for c in range(0, size, TILE)]
    set_file_meta(ds)
    if jpeg:
        from PIL import Image

        encoded = []
        for t in tiles:
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(t)).save(buf, "JPEG", quality=95, subsampling="4:4:4")
            encoded.append(buf.getvalue())
        ds.PhotometricInterpretation = "YBR_FULL"
        ds.PixelData = encapsulate(encoded, has_bot=True)
        ds["PixelData"].is_undefined_length = True
        ds.LossyImageCompression = "01"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    else:
        ds.PhotometricInterpretation = "RGB"
        ds.PixelData = np.stack(tiles).tobytes()
    ds["PixelData"].VR = "OB"
    return ds


FULL = picture(SIZE)
NATIVE = slide("native", FULL)
JPEG = slide("jpeg", FULL, jpeg=True)


@pytest.fixture(scope="module")
def env():
    emu = EmulatorServer(Options(host="127.0.0.1", port=0)).start()
    try:
        e = ready_store(emu, project="ezwsi-slides")
        e.dicomweb.store_instances([NATIVE, JPEG])
        yield e
    finally:
        emu.stop()


def open_slide(env, ds):
    from ez_wsi_dicomweb import credential_factory, dicom_slide, dicom_web_interface
    from ez_wsi_dicomweb.ml_toolkit import dicom_path

    dwi = dicom_web_interface.DicomWebInterface(credential_factory.NoAuthCredentialsFactory())
    path = dicom_path.FromString(f"{env.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}")
    return dwi, dicom_slide.DicomSlide(dwi, path)


def test_open_a_native_slide_and_read_patches_exactly(env):
    _, s = open_slide(env, NATIVE)
    level = s.native_level
    assert (level.width, level.height, level.frame_width, level.transfer_syntax_uid) == (SIZE, SIZE, TILE, "1.2.840.10008.1.2.1")
    patch = s.get_patch(level, 50, 70, 100, 80).image_bytes()            # spans six tiles
    assert patch.shape == (80, 100, 3) and np.array_equal(patch, FULL[70:150, 50:150])
    edge = s.get_patch(level, 200, 220, 64, 64).image_bytes()             # runs off the slide: padded
    assert np.array_equal(edge[:36, :56], FULL[220:, 200:])


def test_open_a_jpeg_slide_and_read_a_patch_decoded_client_side(env):
    _, s = open_slide(env, JPEG)
    level = s.native_level
    assert level.transfer_syntax_uid == str(JPEGBaseline8Bit)
    patch = s.get_patch(level, 10, 20, 120, 90).image_bytes()
    assert patch.shape == (90, 120, 3)
    assert np.abs(patch.astype(int) - FULL[20:110, 10:130].astype(int)).mean() < 4   # JPEG, quality 95


def test_the_interface_lists_studies_series_and_instances(env):
    from ez_wsi_dicomweb.ml_toolkit import dicom_path

    dwi, _ = open_slide(env, NATIVE)
    store = dicom_path.FromString(f"{env.dicomweb_url}")
    studies = dwi.get_studies(store)
    assert {s.path.study_uid for s in studies} == {NATIVE.StudyInstanceUID, JPEG.StudyInstanceUID}
    series = dwi.get_series(studies[0].path)
    assert len(series) == 1
    instances = dwi.get_instances(series[0].path)
    assert instances[0].dicom_tags["00020010"]["Value"][0] in ("1.2.840.10008.1.2.1", str(JPEGBaseline8Bit))
    # a search with no match is Google's 204, which EZ-WSI reads as an empty list
    assert dwi.get_series(store, {"PatientID": "nobody"}) == []
