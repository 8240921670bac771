"""Descriptor sampling at keypoints (method §2, step 6).

Equivalent to ``torch.nn.functional.grid_sample(desc, grid, mode="bilinear",
padding_mode="zeros", align_corners=True)`` followed by ``F.normalize(p=2, dim=channels)``,
done with one vectorised gather of the four corner rows from a (h*w, C) copy of the map instead of
a per-keypoint Python loop (the Ascend port's loop is what made it take ~44 s per pair).

Variants for the A-category study (config ``descriptors.*``, docs/registration-models.md,
"A-category robustness"): bicubic sampling (grid_sample's, cubic convolution with A = -0.75),
the mean of samples on a 3x3 grid around the keypoint (``pool``), and the normalisation
(``root``: signed square root before the L2 norm; ``centred``: the image's mean descriptor
subtracted first). The defaults are the reference's.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["sample_descriptors", "NORMALIZE_EPS", "INTERPOLATIONS", "NORMALISATIONS"]

# torch.nn.functional.normalize's default eps: rows are divided by max(norm, eps).
NORMALIZE_EPS = 1e-12
INTERPOLATIONS = ("bilinear", "bicubic")
NORMALISATIONS = ("l2", "root", "centred")
_CUBIC_A = -0.75  # PyTorch's grid_sample / upsample bicubic coefficient


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """(4, K) cubic-convolution weights of the taps at -1, 0, 1, 2 for fractional offsets t (K,)."""
    a = np.float32(_CUBIC_A)

    def near(x):   # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):    # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)])


def sample_descriptors(keypoints: np.ndarray, desc_map: np.ndarray, scale: int = 8,
                       interpolation: str = "bilinear", pool: float = 0.0,
                       normalise: str = "l2") -> np.ndarray:
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
    interpolation : str
        ``bilinear`` (the reference) or ``bicubic`` (4x4 cells, zero padding like grid_sample).
    pool : float
        0: sample at the keypoint (the reference). > 0: the mean of 9 samples on a 3x3 grid of
        this spacing (model pixels) centred on the keypoint, then normalised.
    normalise : str
        ``l2`` (the reference), ``root`` (signed square root, then L2) or ``centred`` (the mean
        of the image's sampled descriptors subtracted, then L2).

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

    if normalise not in NORMALISATIONS:
        raise ValueError(f"sample_descriptors: normalise must be one of {', '.join(NORMALISATIONS)}, got {normalise!r}")
    if pool > 0:
        offsets = np.array([(dx, dy) for dy in (-pool, 0, pool) for dx in (-pool, 0, pool)], np.float32)
        shifted = (kp[None, :, :] + offsets[:, None, :]).reshape(-1, 2)
        out = _sample(shifted, dmap, scale, interpolation).reshape(len(offsets), k, c).mean(axis=0)
    else:
        out = _sample(kp, dmap, scale, interpolation)
    if normalise == "root":
        out = np.sign(out) * np.sqrt(np.abs(out))
    elif normalise == "centred":
        out = out - out.mean(axis=0, keepdims=True)
    norms = np.sqrt(np.einsum("kc,kc->k", out, out))
    out /= np.maximum(norms, np.float32(NORMALIZE_EPS))[:, None]
    return out


def _sample(kp: np.ndarray, dmap: np.ndarray, scale: int, interpolation: str) -> np.ndarray:
    """(K, C) float32 unnormalised samples of the (C, h, w) map at (K, 2) model-pixel keypoints."""
    c, h, w = dmap.shape
    f32 = np.float32
    # Normalise to [-1, 1] exactly like the reference (float32 divide, *2, -1) ...
    gx = kp[:, 0] / f32(w * scale - 1) * f32(2) - f32(1)
    gy = kp[:, 1] / f32(h * scale - 1) * f32(2) - f32(1)
    # ... and un-normalise like grid_sample with align_corners=True.
    ix = (gx + f32(1)) * f32((w - 1) / 2)
    iy = (gy + f32(1)) * f32((h - 1) / 2)

    x0 = np.floor(ix)
    y0 = np.floor(iy)
    tx, ty = ix - x0, iy - y0
    if interpolation == "bicubic":
        wx, wy = _cubic_weights(tx), _cubic_weights(ty)          # (4, K) each
        taps = np.arange(-1, 3, dtype=np.float32)[:, None]
        xs, ys = x0[None] + taps, y0[None] + taps                 # (4, K)
        weights = (wy[:, None] * wx[None, :]).reshape(16, -1)     # row-major over (y tap, x tap)
        cx = np.broadcast_to(xs[None, :], (4, 4, len(ix))).reshape(16, -1).astype(np.int64)
        cy = np.broadcast_to(ys[:, None], (4, 4, len(ix))).reshape(16, -1).astype(np.int64)
    elif interpolation == "bilinear":
        x1 = x0 + f32(1)
        y1 = y0 + f32(1)
        # Corner weights (north-west, north-east, south-west, south-east), formed as PyTorch's
        # CPU kernel forms them (fractional part, and one minus it).
        ux, uy = f32(1) - tx, f32(1) - ty
        weights = np.stack([uy * ux, uy * tx, ty * ux, ty * tx])  # (4, K)
        cx = np.stack([x0, x1, x0, x1]).astype(np.int64)
        cy = np.stack([y0, y0, y1, y1]).astype(np.int64)
    else:
        raise ValueError(f"sample_descriptors: interpolation must be one of {', '.join(INTERPOLATIONS)},"
                         f" got {interpolation!r}")
    inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    weights = np.where(inside, weights, f32(0))
    # Out-of-range corners read cell 0 with weight 0 (zero padding without branches).
    flat = np.where(inside, cy * w + cx, 0)

    # (h*w, C) layout makes each corner read one contiguous row; cv2.transpose is the fastest
    # way to get it. Then one batched (K, 1, n) @ (K, n, C) product blends the n corners.
    table = cv2.transpose(np.ascontiguousarray(dmap.reshape(c, h * w), dtype=np.float32))
    corners = np.take(table, flat.T, axis=0)  # (K, n, C)
    return np.matmul(weights.T.astype(f32)[:, None, :], corners)[:, 0, :]
