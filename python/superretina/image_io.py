"""Reading fundus photographs as users have them.

JPEG (EXIF orientation applied), PNG (8 or 16 bit), TIFF, BMP; grayscale or colour; any size.
Every failure is an ``ImageReadError`` whose message starts with the file name.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# OpenCV refuses images above 2^30 pixels by default; fundus photographs are far below.
_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH   # 3 channels, keeps 16 bit, applies EXIF orientation


class ImageReadError(ValueError):
    pass


def read_image(path: str | Path) -> np.ndarray:
    """Read a photograph as (H, W, 3) BGR, uint8 or uint16 (16-bit files keep their depth)."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: file not found")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, expected an image file")
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc.strerror})") from exc
    if raw.size == 0:
        raise ImageReadError(f"{path}: empty file, expected an image (JPEG, PNG, TIFF or BMP)")
    image = cv2.imdecode(raw, _FLAGS)
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (expected JPEG, PNG, TIFF or BMP)")
    if image.dtype not in (np.uint8, np.uint16):
        image = cv2.normalize(image, None, 0, 65535, cv2.NORM_MINMAX).astype(np.uint16)
    if min(image.shape[:2]) < 16:
        raise ImageReadError(f"{path}: image is {image.shape[1]}x{image.shape[0]} px, too small to register")
    return image


def to_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit view of a uint8/uint16 image for drawing (16 bit scaled by 1/257)."""
    if image.dtype == np.uint8:
        return image
    return (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)


def read_pair(query_path: str | Path, refer_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Both photographs of a pair, decoded at once (two threads); errors as :func:`read_image`."""
    from .parallel import pair_map

    return pair_map(read_image, query_path, refer_path)


def check_image_array(image, name: str = "image") -> np.ndarray:
    """A photograph given as an array: (H, W) gray or (H, W, 3) BGR (also (H, W, 1), (H, W, 4) BGRA),
    uint8 or uint16. Returns it as (H, W) or (H, W, 3); anything else is an ``ImageReadError``
    naming ``name`` and what was expected."""
    if not isinstance(image, np.ndarray):
        raise ImageReadError(f"{name}: expected a file path or a numpy array, got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{name}: array of {image.dtype}, expected uint8 or uint16 (8- or 16-bit pixels)")
    if image.ndim == 3 and image.shape[2] in (1, 4):
        image = image[:, :, 0] if image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ImageReadError(f"{name}: array of shape {image.shape}, expected (H, W) gray or (H, W, 3) BGR")
    if min(image.shape[:2]) < 16:
        raise ImageReadError(f"{name}: image is {image.shape[1]}x{image.shape[0]} px, too small to register")
    return np.ascontiguousarray(image)
