"""Field-of-view (the bright fundus disc inside the black surround) of a fundus photograph."""
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
    v = img.max(axis=2) if img.ndim == 3 else img
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
