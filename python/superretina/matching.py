"""Descriptor matching: brute-force L2 2-nearest-neighbours with Lowe's ratio test (§2 step 8).

Produces the same matches as ``cv2.BFMatcher(cv2.NORM_L2).knnMatch(q, r, k=2)`` followed by
``m.distance < ratio * n.distance``, but an order of magnitude faster:

1. Squared distances up to a per-query constant, ``|r|^2 - 2 q.r``, come from one float32
   matrix product per block of query rows (BLAS), so the block stays in cache for step 2.
2. An ``argmin`` and a ``min`` pass find the two smallest entries per row; every reference
   whose entry lies within the rounding bound of the product (``EPS_FACTOR`` below) of the
   second smallest is kept as a candidate. This provably contains the true two nearest
   neighbours, and is usually just those two.
3. Candidate distances are recomputed directly from the descriptors (differences, like
   BFMatcher), ordered by (distance, index) -- BFMatcher keeps the lower index on a tie --
   and the ratio test is applied to the best two.

Distances therefore never come from the cancellation-prone product; what can still differ
from BFMatcher is a ratio test decided within float32 rounding (|d1 - ratio*d2| ~ 1e-7 d2),
where BFMatcher's own SIMD sums round differently; tests/test_equivalence_torch.py checks
identity on real descriptors.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ratio_match", "two_nearest"]

_U32 = float(np.finfo(np.float32).eps) / 2  # unit round-off of float32
# Error bound of a length-C float32 dot product is ~C*u*|q||r|; this factor covers the
# product, the norms and the final addition with a 2x margin.
EPS_FACTOR = 2.0
# Rows of query descriptors per block: the (rows, Kr) float32 block should stay in L2 cache.
_BLOCK_BYTES = 1 << 20


def _pair_dist(q: np.ndarray, r: np.ndarray, qi: np.ndarray, ri: np.ndarray) -> np.ndarray:
    """L2 distance of each (q[qi], r[ri]) pair, computed directly (float32 differences and
    sums, as BFMatcher does), so identical descriptors give bit-identical distances."""
    diff = q[qi] - r[ri]
    return np.sqrt(np.einsum("kc,kc->k", diff, diff))


def two_nearest(desc_q: np.ndarray, desc_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two nearest reference descriptors of every query descriptor (L2).

    Parameters
    ----------
    desc_q : np.ndarray
        (Kq, C) query descriptors (float32; other float dtypes are converted).
    desc_r : np.ndarray
        (Kr, C) reference descriptors, Kr >= 2.

    Returns
    -------
    indices : np.ndarray
        (Kq, 2) int64, nearest then second nearest; ties go to the lower index.
    distances : np.ndarray
        (Kq, 2) float32 L2 distances.
    """
    q = np.ascontiguousarray(desc_q, dtype=np.float32)
    r = np.ascontiguousarray(desc_r, dtype=np.float32)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
        raise ValueError(f"two_nearest: expected (Kq, C) and (Kr, C) descriptors, got {q.shape} and {r.shape}")
    kq, c = q.shape
    kr = r.shape[0]
    if kr < 2:
        raise ValueError(f"two_nearest: need at least 2 reference descriptors, got {kr}")
    if kq == 0:
        return np.empty((0, 2), np.int64), np.empty((0, 2), np.float32)

    rr = np.einsum("kc,kc->k", r, r)                     # |r|^2, (Kr,)
    r_t = np.ascontiguousarray((-2.0 * r).T)             # (C, Kr); scaling by -2 is exact
    q_norm = np.sqrt(np.einsum("kc,kc->k", q, q))
    r_max = float(np.sqrt(rr.max()))
    # Twice the bound on |computed - exact| of an entry of |r|^2 - 2 q.r, per query row: a
    # reference whose computed entry exceeds the second smallest by more cannot be among the
    # true two nearest.
    window = 2.0 * EPS_FACTOR * (c + 2) * _U32 * (2.0 * q_norm * r_max + r_max * r_max)

    rows = max(8, min(kq, _BLOCK_BYTES // (4 * kr)))
    buf = np.empty((rows, kr), np.float32)
    cand_q, cand_r = [], []
    for start in range(0, kq, rows):
        stop = min(start + rows, kq)
        n = stop - start
        g = buf[:n]
        np.matmul(q[start:stop], r_t, out=g)
        g += rr
        ar = np.arange(n)
        i1 = g.argmin(axis=1)
        a1 = g[ar, i1]
        g[ar, i1] = np.inf
        a2 = g.min(axis=1)
        g[ar, i1] = a1
        limit = (a2 + window[start:stop]).astype(np.float32)
        flat = np.flatnonzero(g <= limit[:, None])
        cand_q.append(flat // kr + start)
        cand_r.append(flat % kr)
    qi = np.concatenate(cand_q)
    ri = np.concatenate(cand_r)

    # Every query has >= 2 candidates (its two smallest computed entries); rank them by exact
    # distance, ties to the lower reference index as BFMatcher's insertion does.
    d = _pair_dist(q, r, qi, ri)
    order = np.lexsort((ri, d, qi))
    first = np.flatnonzero(np.r_[True, qi[order][1:] != qi[order][:-1]])
    pick = np.stack([order[first], order[first + 1]], axis=1)  # (Kq, 2)
    return ri[pick].astype(np.int64), d[pick].astype(np.float32)


def ratio_match(desc_q: np.ndarray, desc_r: np.ndarray, ratio: float = 0.9) -> np.ndarray:
    """Match query to reference descriptors with Lowe's ratio test.

    Parameters
    ----------
    desc_q : np.ndarray
        (Kq, C) query descriptors.
    desc_r : np.ndarray
        (Kr, C) reference descriptors.
    ratio : float
        Keep a query's nearest neighbour when ``d1 < ratio * d2`` (strict).

    Returns
    -------
    np.ndarray
        (M, 2) int64 rows ``[query_index, reference_index]`` in increasing query index. Empty
        when Kq == 0 or Kr < 2 (the reference's ``for m, n in knnMatch(...)`` loop yields
        nothing then).
    """
    q = np.asarray(desc_q)
    r = np.asarray(desc_r)
    if q.ndim != 2 or r.ndim != 2 or (q.shape[0] and r.shape[0] and q.shape[1] != r.shape[1]):
        raise ValueError(f"ratio_match: expected (Kq, C) and (Kr, C) descriptors, got {q.shape} and {r.shape}")
    if q.shape[0] == 0 or r.shape[0] < 2:
        return np.empty((0, 2), np.int64)
    idx, dist = two_nearest(q, r)
    # Python's float comparison in the reference: float32 distances, double product.
    keep = dist[:, 0].astype(np.float64) < float(ratio) * dist[:, 1].astype(np.float64)
    rows = np.flatnonzero(keep)
    return np.stack([rows, idx[rows, 0]], axis=1).astype(np.int64)
