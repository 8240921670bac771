"""Field-of-view (the bright fundus disc inside the black surround) of a fundus photograph.

:func:`fov_mask` finds the disc; :func:`model_fov` gives it in the network's input frame, eroded
by a margin, and :func:`inside` tells which keypoints lie in it. The registrar drops keypoints on
or outside the disc's rim: the rim is a strong, featureless edge on which the detector fires and
whose descriptors match the rim of any other photograph (issue 17: 9 of the 10 inliers of a
different-subject pair lay on the reference's rim).
"""
from __future__ import annotations

import cv2
import numpy as np


def fov_mask(image: np.ndarray, rel_threshold: float = 0.06, min_threshold: float = 8.0) -> np.ndarray:
    """Binary mask of the fundus disc.

    Threshold the smoothed per-pixel channel maximum, keep the largest connected component and
    fill its holes (dark lesions, the fovea).

    Parameters
    ----------
    image : ndarray, HxW or HxWx3, uint8 or uint16
        Fundus photograph (BGR when colour).
    rel_threshold : float
        Threshold as a fraction of the 99th percentile of the channel maximum.
    min_threshold : float
        Lower bound of the threshold, in 8-bit grey levels.

    Returns
    -------
    ndarray of shape (H, W), bool
    """
    img = np.asarray(image)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ValueError(f"fov_mask: expected uint8 or uint16 image, got {img.dtype}")
    # cv2.max: ~20x faster than numpy's max over the channel axis of an interleaved image
    v = cv2.max(cv2.max(img[..., 0], img[..., 1]), img[..., 2]) if img.ndim == 3 else img
    h, w = v.shape
    v = cv2.medianBlur(np.ascontiguousarray(v), 5)
    thr = max(min_threshold, rel_threshold * float(np.percentile(v, 99)))
    m = (v > thr).astype(np.uint8)
    k = max(3, int(round(min(h, w) * 0.01)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros((h, w), bool)
    keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    m = (labels == keep).astype(np.uint8)
    # Fill holes: background = what a flood fill from outside reaches.
    padded = np.pad(m, 1)
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    holes = (flood == 0)[1:-1, 1:-1]
    return (m > 0) | holes


# A disc smaller than this share of the frame is not a fundus field of view (a dark or flat
# image, a close-up): the mask is then the whole frame, and keypoints are kept as they are.
MIN_FOV_SHARE = 0.10


def model_fov(image: np.ndarray, model_hw: tuple[int, int], margin: int) -> np.ndarray:
    """The field of view in the model frame, eroded by ``margin`` model pixels.

    ``erode_fov(half_fov(image, model_hw), model_hw, margin)``: the decode stream's enhance
    element computes ``half_fov`` where it has the photograph and sends only that back.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3), uint8 or uint16
        The photograph as read (BGR when colour).
    model_hw : (int, int)
        (height, width) of the network input.
    margin : int
        Erosion in model pixels (>= 0): keypoints within it of the rim are dropped too, since
        the detector's response and the descriptor's cell reach across the edge.

    Returns
    -------
    ndarray (H_m, W_m), bool
        True inside the (eroded) disc; all True when no disc is found (``MIN_FOV_SHARE``).
    """
    return erode_fov(half_fov(image, model_hw), model_hw, margin)


def half_fov_hw(model_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the frame :func:`half_fov` works in: half the model frame, at least 16."""
    return max(model_hw[0] // 2, 16), max(model_hw[1] // 2, 16)


def half_fov(image: np.ndarray, model_hw: tuple[int, int]) -> np.ndarray:
    """The field of view at half the model frame, before any margin.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3), uint8 or uint16
        The photograph as read (BGR when colour).
    model_hw : (int, int)
        (height, width) of the network input.

    Returns
    -------
    ndarray (h, w) uint8, :func:`half_fov_hw`
        1 inside the disc, 0 outside; all 1 when no disc is found (``MIN_FOV_SHARE``).
    """
    h2, w2 = half_fov_hw(model_hw)
    # Found at half the model frame, bilinear straight from the photograph (a mask needs no
    # anti-aliasing, fov_mask smooths; INTER_AREA over a FIRE image alone costs ~40 ms), and
    # eroded there: a few milliseconds, next to the network's hundreds.
    mask = fov_mask(cv2.resize(np.asarray(image), (w2, h2), interpolation=cv2.INTER_LINEAR))
    if mask.mean() < MIN_FOV_SHARE:
        return np.ones((h2, w2), np.uint8)
    return mask.astype(np.uint8)


def erode_fov(half: np.ndarray, model_hw: tuple[int, int], margin: int) -> np.ndarray:
    """A :func:`half_fov` mask (h, w) uint8 eroded by ``margin`` model pixels, in the model frame:
    (H_m, W_m) bool."""
    hm, wm = model_hw
    mask = np.asarray(half, np.uint8)
    r = int(round(margin * mask.shape[1] / wm))
    if r > 0 and not mask.all():
        # OpenCV's erosion treats the outside of the frame as inside the mask: a disc cut by the
        # frame keeps its keypoints near the frame (keypoints.border handles those).
        mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return cv2.resize(mask, (wm, hm), interpolation=cv2.INTER_NEAREST).astype(bool)


def inside(mask: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(K,) bool: which (K, 2) (x, y) points of ``mask``'s frame fall on a True pixel (nearest)."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    h, w = mask.shape
    x = np.clip(np.rint(xy[:, 0]), 0, w - 1).astype(np.intp)
    y = np.clip(np.rint(xy[:, 1]), 0, h - 1).astype(np.intp)
    return mask[y, x]
