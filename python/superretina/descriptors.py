"""Descriptor sampling at keypoints (method §2, step 6).

Equivalent to ``torch.nn.functional.grid_sample(desc, grid, mode="bilinear",
padding_mode="zeros", align_corners=True)`` followed by ``F.normalize(p=2, dim=channels)``,
done with one vectorised gather of the four corner rows from a (h*w, C) copy of the map instead of
a per-keypoint Python loop (the Ascend port's loop is what made it take ~44 s per pair).
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["sample_descriptors", "NORMALIZE_EPS"]

# torch.nn.functional.normalize's default eps: rows are divided by max(norm, eps).
NORMALIZE_EPS = 1e-12


def sample_descriptors(keypoints: np.ndarray, desc_map: np.ndarray, scale: int = 8) -> np.ndarray:
    """Bilinearly sample and L2-normalise descriptors at keypoints.

    The keypoint (x, y) in model pixels is normalised as ``x / (w*scale - 1)`` (and
    ``y / (h*scale - 1)``), mapped to [-1, 1] and sampled with align_corners=True semantics,
    i.e. at descriptor-map position ``(g + 1) / 2 * (w - 1)``. Corners that fall outside the
    map contribute zero (grid_sample's zero padding). Arithmetic is float32; coordinates and
    weights are formed in PyTorch's order, and the results agree with PyTorch's CPU kernel to
    float32 rounding (~1e-7).

    As in the reference, a 768-pixel model input with a 94-cell map normalises by 751, not
    767: keypoints with x or y in 752..759 sample only the last cell (same direction for all
    of them), and those past 759 get an all-zero descriptor.

    Parameters
    ----------
    keypoints : np.ndarray
        (K, 2) (x, y) in model-input pixels.
    desc_map : np.ndarray
        (C, h, w) float32 descriptor map (a leading batch axis of size 1 is allowed).
    scale : int
        Model pixels per descriptor cell as the reference counts it (8).

    Returns
    -------
    np.ndarray
        (K, C) float32, rows of unit L2 norm (all-zero rows stay zero).
    """
    dmap = np.asarray(desc_map)
    if dmap.ndim == 4 and dmap.shape[0] == 1:
        dmap = dmap[0]
    if dmap.ndim != 3:
        raise ValueError(f"sample_descriptors: expected a (C, h, w) descriptor map, got shape {np.shape(desc_map)}")
    c, h, w = dmap.shape
    kp = np.asarray(keypoints, dtype=np.float32).reshape(-1, 2)
    k = kp.shape[0]
    if k == 0:
        return np.empty((0, c), np.float32)

    f32 = np.float32
    # Normalise to [-1, 1] exactly like the reference (float32 divide, *2, -1) ...
    gx = kp[:, 0] / f32(w * scale - 1) * f32(2) - f32(1)
    gy = kp[:, 1] / f32(h * scale - 1) * f32(2) - f32(1)
    # ... and un-normalise like grid_sample with align_corners=True.
    ix = (gx + f32(1)) * f32((w - 1) / 2)
    iy = (gy + f32(1)) * f32((h - 1) / 2)

    x0 = np.floor(ix)
    y0 = np.floor(iy)
    x1 = x0 + f32(1)
    y1 = y0 + f32(1)
    # Corner weights (north-west, north-east, south-west, south-east), formed as PyTorch's
    # CPU kernel forms them (fractional part, and one minus it).
    tx, ty = ix - x0, iy - y0
    ux, uy = f32(1) - tx, f32(1) - ty
    weights = np.stack([uy * ux, uy * tx, ty * ux, ty * tx])  # (4, K)
    cx = np.stack([x0, x1, x0, x1]).astype(np.int64)
    cy = np.stack([y0, y0, y1, y1]).astype(np.int64)
    inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    weights = np.where(inside, weights, f32(0))
    # Out-of-range corners read cell 0 with weight 0 (zero padding without branches).
    flat = np.where(inside, cy * w + cx, 0)

    # (h*w, C) layout makes each corner read one contiguous row; cv2.transpose is the fastest
    # way to get it. Then one batched (K, 1, 4) @ (K, 4, C) product blends the corners.
    table = cv2.transpose(np.ascontiguousarray(dmap.reshape(c, h * w), dtype=np.float32))
    corners = np.take(table, flat.T, axis=0)  # (K, 4, C)
    out = np.matmul(weights.T[:, None, :], corners)[:, 0, :]

    norms = np.sqrt(np.einsum("kc,kc->k", out, out))
    out /= np.maximum(norms, f32(NORMALIZE_EPS))[:, None]
    return out
