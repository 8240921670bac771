"""Keypoint extraction from the detector map (method §2, steps 5 and 7).

``simple_nms`` is SuperPoint's max-pool based non-maximum suppression, reimplemented with
OpenCV dilation: a grey dilation with a (2r+1)x(2r+1) rectangle is exactly a stride-1 max-pool
with padding r, and OpenCV's default dilation border acts as -inf padding, like
``torch.nn.functional.max_pool2d``. Maxima are exact (no arithmetic), so every equality test,
tie and plateau resolves exactly as in the PyTorch version.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["simple_nms", "detect", "refine_subpixel", "to_original"]


def _max_pool(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # BORDER_CONSTANT with OpenCV's default morphology border value means "ignore the outside"
    # (the lowest value of the type for dilation), i.e. -inf padding.
    return cv2.dilate(x, kernel)


def _nms_keep_mask(scores: np.ndarray, radius: int) -> np.ndarray:
    """Boolean (H, W) mask of the pixels simple NMS keeps (scores: C-contiguous float32)."""
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    max_mask = scores == _max_pool(scores, kernel)
    for _ in range(2):
        # Masks are handled as 0/1 uint8 views: dilating uint8 is 4x cheaper than float, and
        # cv2.copyTo(src, mask) zero-fills outside the mask faster than np.where.
        not_supp = _max_pool(max_mask.view(np.uint8), kernel) == 0
        supp_scores = cv2.copyTo(scores, not_supp.view(np.uint8))
        new_max_mask = supp_scores == _max_pool(supp_scores, kernel)
        max_mask |= new_max_mask & not_supp
    return max_mask


def simple_nms(scores: np.ndarray, radius: int) -> np.ndarray:
    """SuperPoint's "simple NMS": keep local maxima of a score map, zero the rest.

    A pixel is kept when it equals the maximum of its (2r+1)x(2r+1) window; then, twice,
    pixels outside the windows of the kept maxima that are maxima of the map with those
    windows zeroed are added. Plateaus keep all their equal pixels, as in PyTorch.

    Parameters
    ----------
    scores : np.ndarray
        (H, W) finite scores (float32; other dtypes are converted; NaN is never a maximum).
    radius : int
        Suppression radius r >= 0 (window 2r+1).

    Returns
    -------
    np.ndarray
        (H, W) float32: the kept scores, 0 elsewhere.
    """
    scores = _as_map(scores, "simple_nms")
    if radius < 0:
        raise ValueError(f"simple_nms: radius must be >= 0, got {radius}")
    keep = _nms_keep_mask(scores, int(radius))
    return cv2.copyTo(scores, keep.view(np.uint8))


def _as_map(scores: np.ndarray, who: str) -> np.ndarray:
    heat = np.asarray(scores)
    while heat.ndim > 2 and heat.shape[0] == 1:  # accept (1, 1, H, W) / (1, H, W)
        heat = heat[0]
    if heat.ndim != 2 or heat.size == 0:
        raise ValueError(f"{who}: expected a non-empty (H, W) map, got shape {np.shape(scores)}")
    return np.ascontiguousarray(heat, dtype=np.float32)


def detect(detector_map: np.ndarray, nms_size: int = 10, nms_thresh: float = 0.01,
           border: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of a detector map: simple NMS, threshold, border removal.

    Parameters
    ----------
    detector_map : np.ndarray
        (H, W) keypoint probabilities (leading singleton axes, e.g. (1, 1, H, W), are allowed).
    nms_size : int
        NMS radius (window 2*nms_size+1).
    nms_thresh : float
        Keep scores strictly greater than this (compared in float32, like a float32 tensor).
    border : int
        Drop keypoints with y < border or y >= H - border (same for x), as SuperPoint's
        ``remove_borders``.

    Returns
    -------
    keypoints : np.ndarray
        (K, 2) float32 (x, y) in detector-map pixels, row-major order (by y, then x), as
        ``torch.nonzero`` lists them.
    scores : np.ndarray
        (K,) float32.
    """
    heat = _as_map(detector_map, "detect")
    if nms_size < 0:
        raise ValueError(f"detect: nms_size must be >= 0, got {nms_size}")
    h, w = heat.shape
    keep = _nms_keep_mask(heat, int(nms_size))
    # Threshold and border on the interior only: the same set, in the same row-major order,
    # as thresholding the whole map and filtering by border afterwards.
    b = max(int(border), 0)
    if h - 2 * b <= 0 or w - 2 * b <= 0:
        return np.empty((0, 2), np.float32), np.empty(0, np.float32)
    inner = heat[b:h - b, b:w - b]
    flat = np.flatnonzero(keep[b:h - b, b:w - b] & (inner > np.float32(nms_thresh)))
    ys, xs = np.divmod(flat, w - 2 * b)
    keypoints = np.empty((flat.size, 2), np.float32)
    keypoints[:, 0] = xs + b
    keypoints[:, 1] = ys + b
    return keypoints, inner[ys, xs]


def refine_subpixel(detector_map: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Move each keypoint to the peak of a parabola through its score and its two neighbours,
    per axis (an extension: the reference keeps whole detector pixels).

    A model pixel is ~3.8 original pixels on a FIRE image, and two neighbouring pixels of a
    detector blob often score within rounding of each other, so which one NMS keeps can flip
    with the arithmetic (fp32 vs bf16): the parabola's peak lies between them either way.
    Offsets are clipped to +-0.5 px; a keypoint whose neighbours do not bend down, or that lies
    on the map's edge, stays where it is.

    Parameters
    ----------
    detector_map : np.ndarray
        (H, W) keypoint probabilities (leading singleton axes allowed).
    keypoints : np.ndarray
        (K, 2) whole-pixel (x, y), as :func:`detect` returns them.

    Returns
    -------
    np.ndarray
        (K, 2) float32 (x, y).
    """
    heat = _as_map(detector_map, "refine_subpixel")
    kp = np.asarray(keypoints, np.float32).reshape(-1, 2)
    out = kp.copy()
    h, w = heat.shape
    x, y = kp[:, 0].astype(np.intp), kp[:, 1].astype(np.intp)
    inside = (x >= 1) & (x <= w - 2) & (y >= 1) & (y <= h - 2)
    x, y = x[inside], y[inside]
    centre = heat[y, x]
    for axis, (prev, nxt) in enumerate(((heat[y, x - 1], heat[y, x + 1]), (heat[y - 1, x], heat[y + 1, x]))):
        curvature = prev - 2 * centre + nxt
        with np.errstate(divide="ignore", invalid="ignore"):
            offset = np.where(curvature < 0, 0.5 * (prev - nxt) / curvature, 0.0)
        out[inside, axis] += np.clip(offset, -0.5, 0.5).astype(np.float32)
    return out


def to_original(keypoints: np.ndarray, model_size: tuple[int, int], image_size: tuple[int, int],
                truncate: bool = False) -> np.ndarray:
    """Scale keypoints from model-input pixels to original-image pixels (§2 step 7).

    Parameters
    ----------
    keypoints : np.ndarray
        (K, 2) (x, y) in model pixels.
    model_size, image_size : tuple of int
        (height, width) of the model input and of the original image.
    truncate : bool
        False (this project's default): float64 ``x * (W / W_m)``, no precision lost.
        True: the reference's convention, ``int(x / W_m * W)`` evaluated in float32 and
        truncated toward zero, returned as float64 whole numbers.

    Returns
    -------
    np.ndarray
        (K, 2) float64 (x, y) in original pixels.
    """
    kp = np.asarray(keypoints).reshape(-1, 2)
    (hm, wm), (h, w) = model_size, image_size
    if truncate:
        k32 = kp.astype(np.float32)
        x = np.trunc(k32[:, 0] / np.float32(wm) * np.float32(w))
        y = np.trunc(k32[:, 1] / np.float32(hm) * np.float32(h))
        return np.stack([x, y], axis=1).astype(np.float64)
    out = kp.astype(np.float64, copy=True)
    out[:, 0] *= w / wm
    out[:, 1] *= h / hm
    return out
