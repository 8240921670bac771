"""DICOM fundus photographs (issue 20, item 10): files written here with pydicom, read wherever
an image is read, their header's identifiers in result.json and summary.csv.

Uncompressed (colour 8 bit, monochrome 16 bit with 12 bits stored, MONOCHROME1) and JPEG
baseline (the JPEG bytes OpenCV encodes, encapsulated by pydicom) files; multi-frame, oversized
and pixel-less files are refused with one line naming the file.
"""
import csv
import json

import cv2
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="DICOM input needs pydicom")
from pydicom.dataset import FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid  # noqa: E402

from superretina.api import Session, load_result  # noqa: E402
from superretina.dicom import dicom_fields  # noqa: E402
from superretina.image_io import ImageReadError, read_image  # noqa: E402
from tests.model_fixtures import assert_one_line_error, random_superretina, run_cli  # noqa: E402,F401

OP_8BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.1"    # Ophthalmic Photography 8 Bit Image Storage
OP_16BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.2"


def write_dicom(path, pixels, photometric, *, syntax=ExplicitVRLittleEndian, encoded=None, bits_stored=None,
                frames=1, sop_uid=None, study_date="20240131", laterality="R", rows_cols=None):
    """A DICOM Part 10 file of one photograph (``pixels``: (H, W) or (H, W, 3) RGB, uint8/uint16)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = OP_8BIT if pixels.dtype == np.uint8 else OP_16BIT
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StudyDate, ds.ImageLaterality = "OP", study_date, laterality
    ds.Rows, ds.Columns = rows_cols or pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    ds.PhotometricInterpretation = photometric
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    bits = 8 * pixels.dtype.itemsize
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits_stored or bits, (bits_stored or bits) - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if encoded is not None:
        ds.PixelData = encapsulate([encoded])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = np.ascontiguousarray(np.concatenate([pixels] * frames)).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def photo(retina_bgr):
    return cv2.resize(retina_bgr, (400, 400), interpolation=cv2.INTER_AREA)


def test_uncompressed_colour_reads_exactly(tmp_path, photo):
    path = write_dicom(tmp_path / "colour.dcm", photo[:, :, ::-1], "RGB")
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == photo.shape
    np.testing.assert_array_equal(image, photo)      # BGR, as cv2.imread gives


def test_jpeg_baseline_reads_like_the_jpeg_itself(tmp_path, photo):
    ok, jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    path = write_dicom(tmp_path / "jpeg.dcm", photo[:, :, ::-1], "YBR_FULL_422", syntax=JPEGBaseline8Bit,
                       encoded=jpeg.tobytes())
    image = read_image(path)
    direct = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    assert image.shape == photo.shape and image.dtype == np.uint8
    diff = np.abs(image.astype(int) - direct.astype(int))
    # Two JPEG decoders (Pillow's libjpeg, OpenCV's) may round chroma up-sampling differently.
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 4, (diff.mean(), diff.max())
    # Colour order: a channel swap would be tens of grey levels off on this reddish fundus.
    assert np.abs(image.astype(int) - photo.astype(int)).mean() < 3.0


def test_jpeg2000_and_rle_lossless_read_exactly(tmp_path, photo):
    """Fundus cameras often export JPEG 2000; Pillow's decoder reads it (no extra package)."""
    import io

    from PIL import Image
    from pydicom.uid import JPEG2000Lossless

    buf = io.BytesIO()
    Image.fromarray(photo[:, :, ::-1]).save(buf, format="JPEG2000", irreversible=False, no_jp2=True)
    path = write_dicom(tmp_path / "j2k.dcm", photo[:, :, ::-1], "YBR_RCT", syntax=JPEG2000Lossless,
                       encoded=buf.getvalue())
    np.testing.assert_array_equal(read_image(path), photo)
    # RLE Lossless, compressed by pydicom's own encoder.
    from pydicom.uid import RLELossless

    rle = write_dicom(tmp_path / "rle.dcm", photo[:, :, ::-1], "RGB")
    ds = pydicom.dcmread(rle)
    ds.compress(RLELossless)
    ds.save_as(rle)
    np.testing.assert_array_equal(read_image(rle), photo)


def test_unreadable_transfer_syntax_is_one_line(tmp_path, photo):
    from pydicom.uid import RLELossless

    path = write_dicom(tmp_path / "rle.dcm", photo[:, :, ::-1], "RGB", syntax=RLELossless, encoded=b"\0" * 64)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot decode the DICOM pixel data (transfer syntax RLE Lossless")
    assert "\n" not in message


def test_monochrome_16bit_is_scaled_to_the_full_range(tmp_path, photo):
    grey12 = (cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 16)  # 12 bits stored
    image = read_image(write_dicom(tmp_path / "mono16.dcm", grey12, "MONOCHROME2", bits_stored=12))
    assert image.dtype == np.uint16 and image.shape == (400, 400, 3)
    np.testing.assert_array_equal(image[:, :, 0], grey12 << 4)
    np.testing.assert_array_equal(image[:, :, 0], image[:, :, 2])


def test_monochrome1_is_inverted(tmp_path, photo):
    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    image = read_image(write_dicom(tmp_path / "mono1.dcm", 255 - grey, "MONOCHROME1"))
    np.testing.assert_array_equal(image[:, :, 1], grey)


@pytest.mark.parametrize("case, fragment", [
    ("multiframe", "multi-frame DICOM (2 frames); expected one photograph per file"),
    ("too_large", "DICOM header says 5000x4000 = 20000000 pixels; at most 1000000"),
    ("no_pixels", "DICOM file without pixel data"),
])
def test_refused_in_one_line_naming_the_file(tmp_path, photo, case, fragment):
    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    path = tmp_path / f"{case}.dcm"
    if case == "multiframe":
        write_dicom(path, grey, "MONOCHROME2", frames=2)
    elif case == "too_large":
        write_dicom(path, grey, "MONOCHROME2", rows_cols=(4000, 5000))
    else:
        write_dicom(path, grey, "MONOCHROME2")
        ds = pydicom.dcmread(path)
        del ds.PixelData
        ds.save_as(path)
    with pytest.raises(ImageReadError) as err:
        read_image(path, max_pixels=1_000_000)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message, message


def test_header_fields_and_unsafe_values(tmp_path, photo):
    path = write_dicom(tmp_path / "a.dcm", photo[:, :, ::-1], "RGB", sop_uid="1.2.826.0.1.3680043.8.498.1",
                       study_date="20240131", laterality="L")
    assert dicom_fields(path) == {"sop_instance_uid": "1.2.826.0.1.3680043.8.498.1", "study_date": "20240131",
                                  "laterality": "L"}
    # Values not of the standard's form (here a spreadsheet formula) are not recorded.
    bad = write_dicom(tmp_path / "b.dcm", photo[:, :, ::-1], "RGB", study_date="=1+1", laterality="R")
    assert dicom_fields(bad) == {"sop_instance_uid": pydicom.dcmread(bad).SOPInstanceUID, "laterality": "R"}
    png = tmp_path / "c.png"
    cv2.imwrite(str(png), photo)
    assert dicom_fields(png) is None


@pytest.fixture(scope="module")
def dicom_pair(tmp_path_factory, retina_bgr):
    from superretina.demo import make_pair

    folder = tmp_path_factory.mktemp("dicom_pair")
    refer = cv2.resize(retina_bgr, (512, 512), interpolation=cv2.INTER_AREA)
    query, _, _ = make_pair(refer)
    ok, jpeg = cv2.imencode(".jpg", query, [cv2.IMWRITE_JPEG_QUALITY, 95])
    q = write_dicom(folder / "visit2.dcm", query[:, :, ::-1], "YBR_FULL_422", syntax=JPEGBaseline8Bit,
                    encoded=jpeg.tobytes(), sop_uid="1.2.3.4.2", study_date="20240601", laterality="R")
    r = write_dicom(folder / "visit1.dcm", refer[:, :, ::-1], "RGB", sop_uid="1.2.3.4.1", study_date="20230601",
                    laterality="R")
    return q, r


def test_result_json_records_both_headers(dicom_pair, random_superretina, tmp_path):
    q, r = dicom_pair
    with Session(random_superretina.fast_config, random_superretina.pipeline, "local") as session:
        reg = session.register(q, r)
    assert reg.to_json()["dicom"] == {
        "query": {"sop_instance_uid": "1.2.3.4.2", "study_date": "20240601", "laterality": "R"},
        "refer": {"sop_instance_uid": "1.2.3.4.1", "study_date": "20230601", "laterality": "R"}}
    reg.save(tmp_path / "out")
    assert load_result(tmp_path / "out").to_json()["dicom"]["query"]["study_date"] == "20240601"


def test_cli_register_and_batch_with_dicom(dicom_pair, random_superretina, tmp_path, photo):
    q, r = dicom_pair
    common = ["--config", random_superretina.fast_config, "--pipeline", random_superretina.pipeline,
              "--runtime", "local"]
    proc = run_cli(q, r, "--out", tmp_path / "pair", *common)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    info = json.loads((tmp_path / "pair" / "result.json").read_text())
    assert info["dicom"]["refer"]["sop_instance_uid"] == "1.2.3.4.1"
    # A multi-frame file: one line, exit 2.
    multi = write_dicom(tmp_path / "cine.dcm", cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY), "MONOCHROME2", frames=3)
    assert_one_line_error(run_cli(multi, r, "--out", tmp_path / "multi", *common), str(multi), "multi-frame")
    # batch: the header's identifiers as summary.csv columns, empty for a non-DICOM photograph.
    png = tmp_path / "refer.png"
    cv2.imwrite(str(png), photo)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"id,query,refer\nd,{q},{r}\np,{q},{png}\n")
    proc = run_cli("batch", pairs, "--out", tmp_path / "cohort", *common, "--no-progress", "--no-pictures")
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "cohort" / "summary.csv", newline="") as f:
        rows = {row["id"]: row for row in csv.DictReader(f)}
    assert rows["d"]["query_study_date"] == "20240601" and rows["d"]["refer_sop_instance_uid"] == "1.2.3.4.1"
    assert rows["d"]["refer_laterality"] == "R"
    assert rows["p"]["query_sop_instance_uid"] == "1.2.3.4.2" and rows["p"]["refer_sop_instance_uid"] == ""
