"""Fundus image enhancement and model-input preparation (method §2, steps 1-3).

The reference pipeline works on the green channel: global z-score, min-max rescale to 0..255,
truncation to uint8, CLAHE (clip 2.0, 8x8 tiles), gamma LUT with gamma 1.2, division by 255.
This module evaluates every per-pixel step as a lookup table over the integer grey levels
instead of on float64 images, which is several times faster and allocates no full-size float
temporaries. For integer images the result is the reference's bit for bit, except that a grey
level whose rescaled value lies within float rounding of a whole number (the mean and standard
deviation come from the histogram, summed in another order than np.std) may truncate one
level apart (tests/test_enhance.py).

Two ways in: :func:`enhance` + :func:`to_model_input` are the reference's steps one by one (a
float enhanced image, then its uint8 truncation resized). The driver uses :func:`equalise` +
:func:`model_input`: the CLAHE output stays uint8, and gamma, "/ 255", the float32 "* 255" and
the uint8 truncation of ``to_model_input`` collapse into one 256-entry uint8 table, so the model
input is bit-identical without a full-size float image (~5x less time at 2912x2912).

:class:`EnhanceSettings` (config ``enhance.*``) varies the steps for the A-category study
(docs/registration-models.md, "A-category robustness"): CLAHE clip and tiles, gamma, an
illumination flattening before the z-score and the channel read. Its defaults are the
reference's, and every function here gives the reference's result without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

__all__ = ["green_channel", "equalise", "enhance", "gamma", "to_model_input", "model_input",
           "EnhanceSettings", "REFERENCE", "flatten_illumination", "GAMMA", "CLAHE_CLIP", "CLAHE_TILES"]

GAMMA = 1.2
CLAHE_CLIP = 2.0
CLAHE_TILES = (8, 8)
# The reference adds this to the standard deviation before dividing.
_STD_EPS = 1e-6


def _gamma_table(gamma: float) -> np.ndarray:
    # Built from float64 *scalars* like the reference (a vectorised np.power may round the last
    # bit differently), then truncated to uint8 by the cast, as the reference does.
    inv = 1.0 / gamma
    return np.array([((np.float64(i) / 255.0) ** inv) * 255 for i in range(256)]).astype(np.uint8)


@lru_cache(maxsize=8)
def _gamma_tables(value: float) -> tuple[np.ndarray, np.ndarray]:
    """(float32 table, uint8 model-input table) of one gamma."""
    # Gamma followed by "/ 255." in float64 and the final cast to float32, as one 256-entry table ...
    f32 = (_gamma_table(value).astype(np.float64) / 255.0).astype(np.float32)
    # ... and then to_model_input's float32 "* 255" truncated to uint8, as one table.
    return f32, np.clip(f32 * np.float32(255), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class EnhanceSettings:
    """The enhancement's parameters; the defaults are the reference's (method §2).

    Attributes
    ----------
    clahe_clip : float
        CLAHE clip limit.
    clahe_tiles : int
        CLAHE tiles per side.
    gamma : float
        Gamma of the final lookup table (the image is raised to 1 / gamma).
    flatten : float
        0: off. > 0: before the z-score, divide the channel by its Gaussian blur inside the field
        of view, sigma = ``flatten`` x the shorter image side (fundus background normalisation).
    channel : str
        ``green`` (the reference) or ``luminance`` (OpenCV's BGR to grey: 0.299 R + 0.587 G + 0.114 B).
    """

    clahe_clip: float = CLAHE_CLIP
    clahe_tiles: int = CLAHE_TILES[0]
    gamma: float = GAMMA
    flatten: float = 0.0
    channel: str = "green"

    @classmethod
    def from_config(cls, section: dict | None) -> "EnhanceSettings":
        """From the config's ``enhance`` mapping (missing keys: the reference's values)."""
        s = section or {}
        d = cls()
        return cls(float(s.get("clahe_clip", d.clahe_clip)), int(s.get("clahe_tiles", d.clahe_tiles)),
                   float(s.get("gamma", d.gamma)), float(s.get("flatten", d.flatten)),
                   str(s.get("channel", d.channel)).lower())

    @classmethod
    def from_props(cls, props: dict) -> "EnhanceSettings":
        """From ``superretina_enhance``'s element properties (strings as in a pipeline file, or
        parsed values; see :data:`PROPS`); ValueError for a value that is not a number."""
        return cls.from_config({key: props[prop] for prop, key in PROPS.items() if prop in props})


# superretina_enhance's property → EnhanceSettings field (plugins/superretina_enhance.py).
PROPS = {"claheClip": "clahe_clip", "claheTiles": "clahe_tiles", "gamma": "gamma",
         "flatten": "flatten", "channel": "channel"}


REFERENCE = EnhanceSettings()
_GAMMA_U8 = _gamma_table(GAMMA)


def green_channel(image: np.ndarray) -> np.ndarray:
    """Return the green channel of a BGR(A) image; a grey image passes through.

    Parameters
    ----------
    image : np.ndarray
        (H, W) grey, or (H, W, 3) BGR / (H, W, 4) BGRA as OpenCV reads them; any dtype
        (uint8 and uint16 in practice).

    Returns
    -------
    np.ndarray
        (H, W), same dtype, C-contiguous.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        if image.dtype in (np.uint8, np.uint16, np.float32) and image.flags.c_contiguous:
            return cv2.extractChannel(image, 1)  # ~5x faster than a strided numpy copy
        return np.ascontiguousarray(image[:, :, 1])
    if image.ndim == 3 and image.shape[2] == 1:
        return np.ascontiguousarray(image[:, :, 0])
    raise ValueError(f"expected an HxW grey or HxWx3 BGR image, got shape {image.shape}")


def _channel(image: np.ndarray, settings: EnhanceSettings) -> np.ndarray:
    if settings.channel == "luminance" and image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        return cv2.cvtColor(np.ascontiguousarray(image), code)
    return green_channel(image)


def flatten_illumination(channel: np.ndarray, sigma_fraction: float) -> np.ndarray:
    """Divide a channel by its smooth background inside the field of view.

    The background is a normalised convolution (blur of the masked channel over blur of the
    mask), so the black surround does not darken it near the rim; it is computed at 1/8 scale
    (a blur this wide has nothing finer) and enlarged back.

    Parameters
    ----------
    channel : np.ndarray
        (H, W) uint8 or uint16.
    sigma_fraction : float
        Gaussian sigma as a fraction of min(H, W).

    Returns
    -------
    np.ndarray
        (H, W) float32: channel / background inside the field of view (clipped to [0, 4]: a few
        bright specks must not squeeze the rest of the range in the min-max rescale), 0 outside.
    """
    from .fov import fov_mask

    h, w = channel.shape
    mask = fov_mask(channel)
    if not mask.any():
        mask = np.ones((h, w), bool)
    small_hw = (max(1, w // 8), max(1, h // 8))
    value = cv2.resize(channel.astype(np.float32) * mask, small_hw, interpolation=cv2.INTER_AREA)
    weight = cv2.resize(mask.astype(np.float32), small_hw, interpolation=cv2.INTER_AREA)
    sigma = max(0.5, sigma_fraction * min(h, w) / 8)
    value = cv2.GaussianBlur(value, (0, 0), sigma)
    weight = cv2.GaussianBlur(weight, (0, 0), sigma)
    background = cv2.resize(value / np.maximum(weight, 1e-6), (w, h), interpolation=cv2.INTER_LINEAR)
    out = channel.astype(np.float32) / np.maximum(background, 1.0)
    out[~mask] = 0
    return np.clip(out, 0, 4, out=out)


def _rescale_to_u8(green: np.ndarray) -> np.ndarray | None:
    """Global z-score then min-max to 0..255, truncated to uint8; None for a constant image.

    For integer images the arithmetic is done once per grey level (identical float64 operations
    to the reference, so identical truncation), then applied as a table.
    """
    if np.issubdtype(green.dtype, np.integer) and green.dtype.itemsize <= 2:
        # Mean and std from the histogram: no full-size float64 copy (512 MB for an 8000² image).
        # OpenCV's histogram is ~4x faster than bincount, but counts in float32: exact below 2^24.
        if green.dtype == np.uint8 and green.size < 2 ** 24:
            hist = cv2.calcHist([green], [0], None, [256], [0, 256]).ravel().astype(np.float64)
            # bincount's length (max + 1): the dot products below then sum in the same order.
            hist = hist[: np.flatnonzero(hist)[-1] + 1]
        else:
            hist = np.bincount(green.ravel(), minlength=1).astype(np.float64)
        levels_all = np.arange(hist.size, dtype=np.float64)
        mean = (hist @ levels_all) / green.size
        std = np.sqrt((hist @ (levels_all - mean) ** 2) / green.size)
    else:
        mean, std = np.mean(green), np.std(green)
    denom = std + _STD_EPS
    if np.issubdtype(green.dtype, np.integer) and green.dtype.itemsize <= 2:
        present = np.flatnonzero(hist)
        lo, hi = int(present[0]), int(present[-1])
        if lo == hi:
            return None
        levels = np.arange(lo, hi + 1, dtype=np.float64)
        z = (levels - mean) / denom
        zmin, zmax = z[0], z[-1]  # z is monotone in the level, so the extremes are the ends
        table = (((z - zmin) / (zmax - zmin)) * 255).astype(np.uint8)
        if green.dtype == np.uint8 and lo == 0 and hi == 255:
            return cv2.LUT(green, table)
        if green.dtype == np.uint8:
            full = np.zeros(256, np.uint8)
            full[lo:hi + 1] = table
            return cv2.LUT(green, full)
        return table[(green.astype(np.int32) - lo)] if lo else table[green]
    # Generic path (float images): the reference formula on the whole array.
    z = (green.astype(np.float64) - mean) / denom
    zmin, zmax = z.min(), z.max()
    if not zmax > zmin:  # constant (or all-NaN) image: the reference would divide 0 by 0
        return None
    return (((z - zmin) / (zmax - zmin)) * 255).astype(np.uint8)


def equalise(image: np.ndarray, settings: EnhanceSettings = REFERENCE) -> np.ndarray:
    """The enhancement up to CLAHE (§2 steps 1-2 without the gamma), as uint8.

    Parameters
    ----------
    image : np.ndarray
        (H, W) grey or (H, W, 3) BGR, uint8 or uint16 (float is accepted too). The z-score
        makes the result independent of the bit depth.
    settings : EnhanceSettings
        Channel, flattening and CLAHE parameters (default: the reference's).

    Returns
    -------
    np.ndarray
        (H, W) uint8; all zeros for a constant image (the reference would produce NaN from 0/0).
        :func:`gamma` of it is :func:`enhance`; :func:`model_input` of it is the network input.
    """
    green = _channel(np.asarray(image), settings)
    if green.size == 0:
        raise ValueError("enhance: empty image")
    if settings.flatten > 0 and np.issubdtype(green.dtype, np.integer):
        green = flatten_illumination(green, settings.flatten)
    u8 = _rescale_to_u8(green)
    if u8 is None:
        return np.zeros(green.shape, np.uint8)
    tiles = (settings.clahe_tiles, settings.clahe_tiles)
    return cv2.createCLAHE(clipLimit=settings.clahe_clip, tileGridSize=tiles).apply(u8)


def gamma(equalised: np.ndarray, value: float = GAMMA) -> np.ndarray:
    """Gamma (1.2, the reference's) and "/ 255" of an :func:`equalise` output: (H, W) float32 in [0, 1]."""
    return cv2.LUT(equalised, _gamma_tables(float(value))[0])


def enhance(image: np.ndarray, settings: EnhanceSettings = REFERENCE) -> np.ndarray:
    """Enhance a fundus photograph as SuperRetina does before inference (§2 steps 1-2).

    Returns (H, W) float32 in [0, 1] (all zeros for a constant image); see :func:`equalise`
    for the accepted images.
    """
    return gamma(equalise(image, settings), settings.gamma)


def _resize_u8(u8: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize like PIL's antialiased bilinear: INTER_AREA when shrinking, INTER_LINEAR when
    enlarging, one axis at a time when the two axes go in different directions."""
    h, w = u8.shape
    if (h, w) == (height, width):
        return u8.copy()
    shrink_x, shrink_y = width < w, height < h
    if shrink_x == shrink_y or h == height or w == width:
        interp = cv2.INTER_AREA if (shrink_x or shrink_y) else cv2.INTER_LINEAR
        return cv2.resize(u8, (width, height), interpolation=interp)
    # Mixed: shrink one axis with INTER_AREA, enlarge the other with INTER_LINEAR.
    if shrink_x:
        tmp = cv2.resize(u8, (width, h), interpolation=cv2.INTER_AREA)
    else:
        tmp = cv2.resize(u8, (w, height), interpolation=cv2.INTER_AREA)
    return cv2.resize(tmp, (width, height), interpolation=cv2.INTER_LINEAR)


def to_model_input(enhanced: np.ndarray, size: tuple[int, int] = (768, 768)) -> np.ndarray:
    """Quantise and resize an enhanced image into the network's input (§2 step 3).

    The reference converts the float image to uint8 (``(x * 255).astype(uint8)``, a
    truncation), resizes it with PIL's bilinear filter and divides by 255. PIL's bilinear
    filter is antialiased when shrinking (its kernel widens with the scale factor); the
    deliberate OpenCV equivalent used here is ``INTER_AREA`` when shrinking and
    ``INTER_LINEAR`` when enlarging (tests/test_enhance.py measures the difference to PIL:
    a mean absolute difference well below one grey level).

    Parameters
    ----------
    enhanced : np.ndarray
        (H, W) float in [0, 1], as returned by :func:`enhance`.
    size : tuple of int
        (height, width) of the model input, (768, 768) by default (torchvision's
        ``Resize((h, w))`` order, and the order of the returned shape).

    Returns
    -------
    np.ndarray
        (height, width) float32 in [0, 1], multiples of 1/255.
    """
    enhanced = np.asarray(enhanced)
    if enhanced.ndim != 2:
        raise ValueError(f"to_model_input: expected an HxW image, got shape {enhanced.shape}")
    height, width = _checked_size(size, "to_model_input")
    # float32 multiply like the reference (its input is float32); the clip only guards
    # out-of-range input from wrapping around in the uint8 cast.
    scaled = np.clip(enhanced.astype(np.float32, copy=False) * np.float32(255), 0, 255)
    return _resized_input(scaled.astype(np.uint8), height, width)


def model_input(equalised: np.ndarray, size: tuple[int, int] = (768, 768), gamma_value: float = GAMMA) -> np.ndarray:
    """``to_model_input(gamma(equalised, gamma_value), size)``, bit for bit, without the float image.

    Parameters
    ----------
    equalised : np.ndarray
        (H, W) uint8, as returned by :func:`equalise`.
    size : tuple of int
        (height, width) of the model input.
    gamma_value : float
        The gamma (``EnhanceSettings.gamma``; the reference's 1.2 by default).

    Returns
    -------
    np.ndarray
        (height, width) float32 in [0, 1], multiples of 1/255.
    """
    if equalised.dtype != np.uint8 or equalised.ndim != 2:
        raise ValueError(f"model_input: expected an HxW uint8 image from equalise(), got {equalised.dtype}"
                         f" {equalised.shape}")
    height, width = _checked_size(size, "model_input")
    return _resized_input(cv2.LUT(equalised, _gamma_tables(float(gamma_value))[1]), height, width)


def _checked_size(size, who: str) -> tuple[int, int]:
    height, width = (int(s) for s in size)
    if height <= 0 or width <= 0:
        raise ValueError(f"{who}: size must be positive (height, width), got {size}")
    return height, width


def _resized_input(u8: np.ndarray, height: int, width: int) -> np.ndarray:
    return _resize_u8(u8, height, width).astype(np.float32) / np.float32(255)
