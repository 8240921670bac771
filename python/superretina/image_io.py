"""Reading fundus photographs as users have them.

JPEG (EXIF orientation applied), PNG (8 or 16 bit), TIFF, BMP (also WebP, PNM), DICOM
(uncompressed, JPEG baseline or JPEG 2000, one frame: :mod:`superretina.dicom`); grayscale or
colour; any size up to ``max_pixels`` (``input.max_pixels`` in configs/default.yaml, default
64 million: about 8000x8000). The size is read from the file's header and checked *before*
decoding, since a decoder allocates whatever the header announces (an 878 KB PNG can announce
30000x30000 pixels). Every failure is an ``ImageReadError`` whose message starts with the file name.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from mxlocal.image_header import HeaderError, image_size

from .dicom import PREAMBLE, DicomError, decode_dicom, is_dicom
from .files import FileTooLarge, InputFileError, read_regular

# OpenCV refuses images above 2^30 pixels by default; fundus photographs are far below.
_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH   # 3 channels, keeps 16 bit, applies EXIF orientation
MIN_SIDE = 16                    # pixels; smaller photographs cannot be registered
DEFAULT_MAX_PIXELS = 64_000_000  # configs/default.yaml input.max_pixels
# Encoded bytes per pixel above which a file cannot be an image of at most max_pixels (an
# uncompressed 16-bit RGBA TIFF holds 8), plus room for metadata: files beyond are refused unread.
_MAX_BYTES_PER_PIXEL, _MAX_METADATA_BYTES = 8, 64 << 20


class ImageReadError(ValueError):
    pass


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a photograph as (H, W, 3) BGR, uint8 or uint16 (16-bit files keep their depth).

    Parameters
    ----------
    path : str | Path
        The image file.
    max_pixels : int
        Largest width x height accepted, checked from the header before decoding.

    Raises
    ------
    ImageReadError
        One line starting with the file name: missing, unreadable, not a regular file (a FIFO,
        a device), not an image, corrupt header, larger than ``max_pixels``, or smaller than 16
        pixels a side.
    """
    return read_image_file(path, max_pixels)[0]


def read_image_file(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, os.stat_result]:
    """:func:`read_image`, and the ``fstat`` of the bytes that were decoded (size, mtime, inode).

    The stat is taken on the opened file, so it describes the bytes decoded even when the path
    is replaced meanwhile: a batch keys its rows with it (``batch.fingerprint.inputs_sha``).
    """
    path = Path(path)
    raw, fmt, _, _, st = _checked_bytes(path, max_pixels)
    if fmt == "dicom":
        try:
            return _check_size(decode_dicom(raw.tobytes(), max_pixels), path), st
        except DicomError as exc:
            raise ImageReadError(f"{path}: {exc}") from None
    image = cv2.imdecode(raw, _FLAGS)
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (expected JPEG, PNG, TIFF or BMP)")
    if image.dtype not in (np.uint8, np.uint16):
        image = cv2.normalize(image, None, 0, 65535, cv2.NORM_MINMAX).astype(np.uint16)
    return _check_size(image, path), st


def read_encoded(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bytes, str, int, int, os.stat_result]:
    """A photograph's file bytes and header, checked as :func:`read_image` checks them, not decoded.

    Returns
    -------
    (data, format, width, height, stat)
        ``format`` as ``mxlocal.image_header.image_size`` names it ("jpeg", "png", ...), or
        "dicom" (width and height 0: known once decoded); ``stat``: ``fstat`` of the bytes read.

    Raises
    ------
    ImageReadError
        As :func:`read_image`, for everything found before decoding.
    """
    raw, fmt, width, height, st = _checked_bytes(Path(path), max_pixels)
    return raw.tobytes(), fmt, width, height, st


def _checked_bytes(path: Path, max_pixels: int) -> tuple[np.ndarray, str, int, int, os.stat_result]:
    if not path.exists():
        raise ImageReadError(f"{path}: file not found")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, expected an image file")
    limit = max_pixels * _MAX_BYTES_PER_PIXEL + _MAX_METADATA_BYTES
    try:  # a regular file only (a FIFO would block), its size checked before reading
        data, st = read_regular(path, limit, "file")
        raw = np.frombuffer(data, dtype=np.uint8)
    except FileTooLarge as exc:  # the limit: what an image of input.max_pixels pixels can take
        raise ImageReadError(f"{path}: {exc}, more than an image of input.max_pixels = {max_pixels} "
                             "pixels can be") from None
    except InputFileError as exc:
        raise ImageReadError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc.strerror})") from None
    if raw.size == 0:
        raise ImageReadError(f"{path}: empty file, expected an image (JPEG, PNG, TIFF or BMP)")
    if is_dicom(raw[:PREAMBLE + 4].tobytes()):
        return raw, "dicom", 0, 0, st   # its size is checked from the DICOM header when decoded
    try:
        fmt, width, height = image_size(data)
    except HeaderError as exc:
        raise ImageReadError(f"{path}: not a readable image: {exc} (expected JPEG, PNG, TIFF or BMP)") from None
    if width * height > max_pixels:
        raise ImageReadError(f"{path}: {fmt.upper()} header says {width}x{height} = {width * height} pixels; at most"
                             f" {max_pixels} are accepted (input.max_pixels in the --config file)")
    return raw, fmt, width, height, st


def to_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit view of a uint8/uint16 image for drawing (16 bit scaled by 1/257)."""
    if image.dtype == np.uint8:
        return image
    return (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)


def read_pair(query_path: str | Path, refer_path: str | Path,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Both photographs of a pair, decoded at once (two threads); errors as :func:`read_image`."""
    from .parallel import pair_map

    return pair_map(lambda p: read_image(p, max_pixels), query_path, refer_path)


@contextmanager
def decoder_messages_silenced():
    """Silence what the C decoders print straight to the process's stderr while reading.

    libjpeg ("Corrupt JPEG data: ..."), libpng ("libpng error: ...") and OpenCV's own log
    write to file descriptor 2, around the one-line :class:`ImageReadError` that already says
    what is wrong. For a command line's reading step only: it silences every thread's stderr
    while it lasts.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def check_image_array(image, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A photograph given as an array: (H, W) gray or (H, W, 3) BGR (also (H, W, 1), (H, W, 4) BGRA),
    uint8 or uint16, of at most ``max_pixels`` (``input.max_pixels``, as files are held to).
    Returns it as (H, W) or (H, W, 3); anything else is an ``ImageReadError`` naming ``name`` and
    what was expected."""
    if not isinstance(image, np.ndarray):
        raise ImageReadError(f"{name}: expected a file path or a numpy array, got {type(image).__name__}")
    if image.ndim >= 2 and image.shape[0] * image.shape[1] > max_pixels:
        raise ImageReadError(f"{name}: array of {image.shape[1]}x{image.shape[0]} = {image.shape[0] * image.shape[1]}"
                             f" pixels; at most {max_pixels} are accepted (input.max_pixels)")
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{name}: array of {image.dtype}, expected uint8 or uint16 (8- or 16-bit pixels)")
    if image.ndim == 3 and image.shape[2] in (1, 4):
        image = image[:, :, 0] if image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ImageReadError(f"{name}: array of shape {image.shape}, expected (H, W) gray or (H, W, 3) BGR")
    return np.ascontiguousarray(_check_size(image, name))


def _check_size(image: np.ndarray, name) -> np.ndarray:
    """``image`` if both sides reach MIN_SIDE pixels, else an ``ImageReadError`` naming ``name``."""
    if min(image.shape[:2]) < MIN_SIDE:
        raise ImageReadError(f"{name}: image is {image.shape[1]}x{image.shape[0]} px, too small to register")
    return image
