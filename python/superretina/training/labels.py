"""Keypoint labels without annotation: vessel bifurcations and crossings.

A junction is a skeleton pixel of the vessel mask with three or more skeleton neighbours;
adjacent junction pixels (a crossing gives a small cluster) are merged into one point.
Images without a vessel mask get one from a classical multi-scale vessel filter (Frangi).
"""
from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import frangi, threshold_otsu
from skimage.morphology import remove_small_objects, skeletonize


def junctions(vessel_mask: np.ndarray, min_separation: float = 4.0) -> np.ndarray:
    """Junction points of a binary vessel mask.

    vessel_mask: (H, W) bool/uint8, vessels non-zero.  Returns (K, 2) float32 (x, y), sorted.
    """
    skel = skeletonize(vessel_mask > 0)
    s = skel.astype(np.uint8)
    neighbours = cv2.filter2D(s, -1, np.ones((3, 3), np.float32), borderType=cv2.BORDER_CONSTANT) - s
    junction = (skel & (neighbours >= 3)).astype(np.uint8)
    # Merge clustered junction pixels: components after a small dilation, one centroid each.
    k = int(2 * round(min_separation / 2) + 1)
    merged = cv2.dilate(junction, np.ones((k, k), np.uint8))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(merged, connectivity=8)
    ys, xs = np.nonzero(junction)
    if len(xs) == 0:
        return np.zeros((0, 2), np.float32)
    comp = lab[ys, xs]
    cx = np.bincount(comp, weights=xs, minlength=n)
    cy = np.bincount(comp, weights=ys, minlength=n)
    cnt = np.bincount(comp, minlength=n)
    keep = cnt > 0
    pts = np.stack([cx[keep] / cnt[keep], cy[keep] / cnt[keep]], axis=1).astype(np.float32)
    order = np.lexsort((pts[:, 0], pts[:, 1]))
    return pts[order]


def vessel_mask_from_image(bgr: np.ndarray) -> np.ndarray:
    """Classical vessel segmentation for images without a mask: Frangi on the green channel.

    bgr: (H, W, 3) or (H, W) uint8.  Returns (H, W) bool.
    """
    green = bgr[..., 1] if bgr.ndim == 3 else bgr
    g = green.astype(np.float32) / 255.0
    fov = cv2.erode((green > 20).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    g = clahe.apply((g * 255).astype(np.uint8)).astype(np.float32) / 255.0
    v = frangi(g, sigmas=(1, 2, 3, 4), black_ridges=True)
    v[~fov] = 0
    if not np.any(v > 0):
        return np.zeros(green.shape, bool)
    mask = v > threshold_otsu(v[fov & (v > 0)])
    return remove_small_objects(mask, 50)
