"""DICOM fundus photographs (Ophthalmic Photography 8/16-bit Image Storage and the like).

Clinics export fundus photographs as DICOM; :func:`superretina.image_io.read_image` hands any
file that starts like one (``DICM`` after the 128-byte preamble) to :func:`decode_dicom`.
Uncompressed, RLE, JPEG baseline and JPEG 2000 pixel data are decoded (pydicom, with Pillow
for JPEG and JPEG 2000; JPEG lossless and JPEG-LS would need pylibjpeg), colour
(RGB, YBR) and monochrome (MONOCHROME1 is inverted so that vessels stay dark); one photograph
per file: a multi-frame file is refused in one line, as is anything larger than ``max_pixels``,
checked from ``Rows`` x ``Columns`` before the pixel data is decoded.

:func:`dicom_fields` reads the identifying header entries a result records (SOP Instance UID,
study date, laterality), without the pixel data.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

PREAMBLE = 128           # bytes before the "DICM" marker of a DICOM Part 10 file
MARKER = b"DICM"
# What result.json (``dicom``) and summary.csv record of each photograph's header, when present:
# result key -> DICOM keyword(s), first present wins (ImageLaterality is the image's own,
# Laterality the series').
FIELDS = {"sop_instance_uid": ("SOPInstanceUID",), "study_date": ("StudyDate",),
          "laterality": ("ImageLaterality", "Laterality")}
# The forms the standard allows (UI, DA, CS of the laterality terms): a value of another form is
# not recorded, so that nothing a header holds reaches summary.csv unchecked (formula cells).
_FORMS = {"sop_instance_uid": re.compile(r"[0-9.]{1,64}"), "study_date": re.compile(r"[0-9]{8}"),
          "laterality": re.compile(r"[LRBU]")}


class DicomError(ValueError):
    """A DICOM file that cannot be used as one photograph (message without the file name)."""


def is_dicom(data: bytes) -> bool:
    """Whether ``data`` (the file's first bytes at least) is a DICOM Part 10 file."""
    return data[PREAMBLE:PREAMBLE + 4] == MARKER


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise DicomError("DICOM file, but pydicom is not installed (pip install pydicom)") from None
    return pydicom


def _dataset(data: bytes, pixels: bool):
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError
    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=not pixels)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DicomError(f"corrupt DICOM header ({exc})") from None


def decode_dicom(data: bytes, max_pixels: int) -> np.ndarray:
    """One DICOM photograph's pixels as (H, W, 3) BGR, uint8 or uint16.

    Parameters
    ----------
    data : bytes
        The whole file.
    max_pixels : int
        Largest ``Rows`` x ``Columns`` accepted, checked before decoding.

    Returns
    -------
    ndarray (H, W, 3) uint8 or uint16
        BGR (OpenCV's order); monochrome is repeated in the three channels; 16-bit data whose
        ``BitsStored`` is below 16 is shifted up to the full range, so that pictures drawn
        from it (``image_io.to_uint8``) are not dark.

    Raises
    ------
    DicomError
        No pixel data, several frames, too large, signed or floating-point pixels, an
        unsupported photometric interpretation or a transfer syntax no installed decoder reads.
    """
    ds = _dataset(data, pixels=True)
    if "PixelData" not in ds:
        raise DicomError("DICOM file without pixel data (PixelData), expected a photograph")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DicomError(f"multi-frame DICOM ({frames} frames); expected one photograph per file")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols > max_pixels:
        raise DicomError(f"DICOM header says {cols}x{rows} = {rows * cols} pixels; at most {max_pixels} are"
                         " accepted (input.max_pixels in the --config file)")
    if int(ds.get("PixelRepresentation", 0) or 0) != 0:
        raise DicomError("DICOM pixels are signed (PixelRepresentation 1); expected an unsigned photograph")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        pixels = ds.pixel_array   # YBR is converted to RGB by pydicom
    except Exception as exc:  # noqa: BLE001 - pydicom's decoders raise many types; all mean "cannot decode"
        name = getattr(syntax, "name", None) or syntax or "unknown"
        raise DicomError(f"cannot decode the DICOM pixel data (transfer syntax {name}: {str(exc).splitlines()[0]});"
                         " uncompressed, RLE, JPEG baseline and JPEG 2000 photographs are read") from None
    if pixels.dtype.kind not in "ui" or pixels.dtype.itemsize > 2:
        raise DicomError(f"DICOM pixels of type {pixels.dtype}; expected 8- or 16-bit unsigned")
    pixels = pixels.astype(np.uint8 if pixels.dtype.itemsize == 1 else np.uint16, copy=False)
    if pixels.dtype == np.uint16:
        stored = int(ds.get("BitsStored", 16) or 16)
        if 8 <= stored < 16:
            pixels = np.left_shift(np.minimum(pixels, (1 << stored) - 1), 16 - stored).astype(np.uint16)
    if pixels.ndim == 2:
        if photometric == "MONOCHROME1":   # 0 is white there: invert, so vessels stay dark as on a photograph
            pixels = np.iinfo(pixels.dtype).max - pixels
        return np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2))
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return np.ascontiguousarray(pixels[:, :, ::-1])   # RGB -> BGR
    raise DicomError(f"DICOM pixel array of shape {pixels.shape} ({photometric or 'no photometric interpretation'}); "
                     "expected one monochrome or colour photograph")


def dicom_fields(path: str | Path) -> dict | None:
    """The header entries a result records (keys of :data:`FIELDS`, values as text; absent
    entries, and values not of the standard's form, are left out), or None when ``path`` is not
    a readable DICOM file.

    Reads the header only (stops before the pixel data).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(PREAMBLE + 4)
            if not is_dicom(head):
                return None
            pydicom = _pydicom()
            fh.seek(0)
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
    except (OSError, DicomError):
        return None
    except Exception:  # noqa: BLE001 - a corrupt header here only means nothing to record
        return None
    out = {}
    for key, keywords in FIELDS.items():
        for kw in keywords:
            value = str(ds.get(kw) or "").strip()
            if _FORMS[key].fullmatch(value):
                out[key] = value
                break
    return out
