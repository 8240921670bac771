"""Correspondences placed on the photographs themselves: for a reference point, the query point
where the two images' patches correlate best.

A match's positions come from the detector map: each keypoint carries the detector's own
sub-pixel noise (~0.3 model pixels for the float network, as much again for int8), and the
transform fit can only average it out. Once a transform is known, the two photographs can be
compared directly: the reference patch around a reference keypoint is compared with the query
sampled through the homography around where the match (or the transform) puts its counterpart;
the shift that maximises their normalised cross-correlation (NCC) places the query point, at a
precision set by the images, not by the detector. The homography maps the patch grid (so the
query patch is seen in the reference's geometry: rotation, scale and perspective removed); the
shift absorbs what it gets wrong locally (the retina's bend, a few pixels).

A point is moved only where the correlation is conclusive: a peak inside the search window, an
NCC of at least ``min_ncc`` and a peak curved in both directions (a patch along a straight vessel
fixes the shift across the vessel only, so its point stays where it was).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .homography import transform_points

__all__ = ["PatchRefinement", "refine_points"]


@dataclass(frozen=True)
class PatchRefinement:
    """What :func:`refine_points` did: the refined query points and which of them moved."""

    query_xy: np.ndarray     # (N, 2) query model pixels (unmoved points as they came)
    moved: np.ndarray        # (N,) bool
    ncc: np.ndarray          # (N,) the correlation at the final position (nan where not measured)


def _sample(image: np.ndarray, H: np.ndarray, centres: np.ndarray, half: int) -> np.ndarray:
    """(N, 2 half + 1, 2 half + 1) bilinear samples of ``image`` at H(centre + (dx, dy)) for
    offsets -half..half; outside the image: nan."""
    g = np.arange(-half, half + 1, dtype=np.float64)
    x = centres[:, 0, None, None] + g[None, None, :]
    y = centres[:, 1, None, None] + g[None, :, None]
    w = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    mx = ((H[0, 0] * x + H[0, 1] * y + H[0, 2]) / w).astype(np.float32)
    my = ((H[1, 0] * x + H[1, 1] * y + H[1, 2]) / w).astype(np.float32)
    n, side = len(centres), 2 * half + 1
    # remap's maps must stay below 32767 rows: the patches side by side in rows of at most 64
    per_row = 64
    rows = -(-n // per_row)
    pad = rows * per_row - n

    def tile(m):
        m = np.concatenate([m, np.full((pad, side, side), -1e6, np.float32)]) if pad else m
        return m.reshape(rows, per_row, side, side).transpose(0, 2, 1, 3).reshape(rows * side, per_row * side)

    out = cv2.remap(image, tile(mx), tile(my), cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=np.nan)
    return out.reshape(rows, side, per_row, side).transpose(0, 2, 1, 3).reshape(-1, side, side)[:n]


def _box_norms(windows: np.ndarray, p: int, k: int) -> np.ndarray:
    """(N, k, k) norms of the zero-mean p x p sub-patches of windows (N, p+k-1, p+k-1).

    One integral image of the windows stacked into a column: a box's sum only takes rows of its
    own window, so the stacking mixes nothing."""
    n, w, _ = windows.shape
    valid = np.isfinite(windows).all(axis=(1, 2))    # a nan would run on into the windows below it
    column = np.where(valid[:, None, None], windows, 0.0).reshape(n * w, w)
    s1, s2 = cv2.integral2(np.ascontiguousarray(column, np.float32), sdepth=cv2.CV_64F)
    rows = (np.arange(n) * w)[:, None, None] + np.arange(k)[None, :, None]   # top row of each box
    cols = np.arange(k)[None, None, :]

    def box(c):
        return c[rows + p, cols + p] - c[rows, cols + p] - c[rows + p, cols] + c[rows, cols]

    b1, b2 = box(s1), box(s2)
    norms = np.sqrt(np.maximum(b2 - b1 * b1 / (p * p), 1e-12))
    norms[~valid] = np.nan
    return norms


def _ncc_grid(ref: np.ndarray, query: np.ndarray, search: int) -> np.ndarray:
    """NCC (N, 2s+1, 2s+1) of each reference patch (N, P, P) with the query window (N, P+2s, P+2s)
    shifted by (dy, dx) in -s..s (nan where a patch holds a nan).

    The reference patch is zero-mean, so the numerator is its plain dot product with the
    shifted query patch; the query patches' norms come from integral images."""
    n, p, _ = ref.shape
    k = 2 * search + 1
    a = ref - ref.mean(axis=(1, 2), keepdims=True)
    a = a / np.maximum(np.sqrt((a * a).sum(axis=(1, 2), keepdims=True)), 1e-12)
    num = np.empty((n, k, k), np.float64)
    for dy in range(k):
        for dx in range(k):
            num[:, dy, dx] = np.einsum("npq,npq->n", a, query[:, dy:dy + p, dx:dx + p])
    return num / _box_norms(query, p, k)


def _parabola(lo: np.ndarray, mid: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertex offset of the parabola through (-1, lo), (0, mid), (1, hi), and its curvature."""
    curv = lo - 2.0 * mid + hi
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(curv < 0, 0.5 * (lo - hi) / curv, 0.0)
    return np.clip(off, -0.5, 0.5), curv


def _peak(ncc: np.ndarray, search: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sub-pixel peak of each NCC grid: shift (N, 2) (x, y) from the window's centre, the peak's
    NCC, whether it is inside the window and curved in both directions, and the min curvature."""
    n, k, _ = ncc.shape
    flat = np.where(np.isfinite(ncc), ncc, -np.inf).reshape(n, -1)
    best = flat.argmax(axis=1)
    iy, ix = np.divmod(best, k)
    rows = np.arange(n)
    inside = (ix > 0) & (ix < k - 1) & (iy > 0) & (iy < k - 1)
    cx, cy = np.clip(ix, 1, k - 2), np.clip(iy, 1, k - 2)
    ox, curv_x = _parabola(ncc[rows, cy, cx - 1], ncc[rows, cy, cx], ncc[rows, cy, cx + 1])
    oy, curv_y = _parabola(ncc[rows, cy - 1, cx], ncc[rows, cy, cx], ncc[rows, cy + 1, cx])
    shift = np.stack([ix - search + ox, iy - search + oy], axis=1)
    curv = np.maximum(curv_x, curv_y)     # the flatter direction (curvatures are negative at a peak)
    ok = inside & np.isfinite(shift).all(axis=1) & (curv < 0)
    return shift, flat[rows, best], ok, curv


def refine_points(query_image: np.ndarray, refer_image: np.ndarray, M: np.ndarray, query_xy: np.ndarray,
                  refer_xy: np.ndarray, half: int = 7, search: int = 3, min_ncc: float = 0.7,
                  min_curvature: float = 0.02, max_shift: float | None = None) -> PatchRefinement:
    """Move each query point to its reference point's counterpart by patch correlation.

    Parameters
    ----------
    query_image, refer_image : np.ndarray
        (H, W) float32 images of the two photographs (the network's inputs).
    M : np.ndarray
        (3, 3) the current transform, query image pixels → reference image pixels.
    query_xy, refer_xy : np.ndarray
        (N, 2) matched points (x, y), pixels of each image.
    half : int
        The patch is (2 half + 1)² reference pixels around the reference point.
    search : int
        Shifts of -search..search pixels (reference frame) around where the match puts the query.
    min_ncc, min_curvature : float
        A point moves only where the peak's NCC is at least ``min_ncc`` and the peak's flatter
        direction has a second difference of at least ``min_curvature`` (in NCC units).
    max_shift : float, optional
        A point moves at most this far (reference pixels) from where it was; default ``search``.

    Returns
    -------
    PatchRefinement
    """
    q = np.asarray(query_xy, np.float64).reshape(-1, 2)
    r = np.asarray(refer_xy, np.float64).reshape(-1, 2)
    n = len(q)
    if n == 0:
        return PatchRefinement(q.copy(), np.zeros(0, bool), np.zeros(0))
    qi = np.ascontiguousarray(query_image, np.float32)
    ri = np.ascontiguousarray(refer_image, np.float32)
    Minv = np.linalg.inv(M)
    start = transform_points(M, q) - r        # where the match puts the query, relative to r
    ref = _sample(ri, np.eye(3), r, half)
    # coarse: integer shifts around the match's own position, then once more around the peak
    shift, _, ok, _ = _peak(_ncc_grid(ref, _sample(qi, Minv, r + start, half + search), search), search)
    centre = start + shift
    shift2, ncc2, ok2, curv2 = _peak(_ncc_grid(ref, _sample(qi, Minv, r + centre, half + 1), 1), 1)
    final = centre + shift2
    limit = search if max_shift is None else max_shift
    moved = (ok & ok2 & (ncc2 >= min_ncc) & (-curv2 >= min_curvature)
             & (np.abs(final - start).max(axis=1) <= limit) & np.isfinite(ref).all(axis=(1, 2)))
    out = q.copy()
    out[moved] = transform_points(Minv, r[moved] + final[moved])
    return PatchRefinement(out, moved, np.where(np.isfinite(ncc2), ncc2, np.nan))   # -inf (no peak): nan

