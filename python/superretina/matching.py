"""Descriptor matching: brute-force L2 2-nearest-neighbours with Lowe's ratio test (§2 step 8).

Produces the same matches as ``cv2.BFMatcher(cv2.NORM_L2).knnMatch(q, r, k=2)`` followed by
``m.distance < ratio * n.distance``, an order of magnitude faster:

1. ``g[i, j] = |r_j|^2 - 2 q_i.r_j`` (the squared distance less ``|q_i|^2``) for all pairs
   comes from one float32 matrix product (BLAS) of augmented matrices.
2. Two ``argmin`` passes find the two smallest entries per row. Each entry's rounding error
   is provably at most ``eps_i = (C+3) u (2|q_i| r_max + 2 r_max^2 + |q_i|^2)`` (u = 2^-24;
   the standard bound for a length-C dot product). For rows that need it, a ``min`` over
   the rest checks the third entry: when it exceeds the second by more than ``2 eps_i`` the
   two found are the true two nearest (the usual case); otherwise the row is re-ranked.
3. Re-ranking and exact distances use directly computed descriptor differences, like
   BFMatcher, ordered by (distance, index): BFMatcher's sorted insertion keeps the lower
   index on a tie. Rows where too many references lie within the bound (an all-zero
   descriptor, from a keypoint past the map's sampling range, is equidistant to all unit
   references) are first narrowed with a float64 product.
4. ``ratio_match`` decides Lowe's test from the bounded product values when they are
   farther from the threshold than the error bound, and from exact distances otherwise, so
   only a few rows need the (memory-bound) exact distances or re-ranking.

The product's cancellation therefore never decides anything on its own. What can still
differ from BFMatcher is a test decided within float32 rounding of the distances themselves
(|d1 - ratio*d2| ~ 1e-7 d2), where BFMatcher's own SIMD sums round differently;
tests/test_matching.py and tests/test_equivalence_torch.py check identity on real and
adversarial (near-tie, cancellation, duplicate) descriptors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ratio_match", "two_nearest"]

_U32 = float(np.finfo(np.float32).eps) / 2  # unit round-off of float32
_U64 = float(np.finfo(np.float64).eps) / 2
# At most this many float32 entries of the distance matrix at once (128 MB). Blocks are large
# on purpose: many small multi-threaded BLAS calls are slow, badly so on a busy machine.
_MAX_ENTRIES = 1 << 25
# Near-tied rows with more candidates than this are narrowed with a float64 product first.
_MAX_DIRECT = 32


@dataclass
class _Nearest:
    """Result of the float32 stage: two nearest per query, possibly not yet exact."""

    idx: np.ndarray       # (Kq, 2) int64, candidates for nearest / second nearest
    g: np.ndarray         # (Kq, 2) float32 product values of those candidates
    bound: np.ndarray     # (Kq,) float64 error bound of one product value
    q_sq: np.ndarray      # (Kq,) float64 |q|^2
    exact: np.ndarray     # (Kq,) bool, rows that need exact distances
    cand_q: np.ndarray    # candidate pairs of the exact rows that are near ties
    cand_r: np.ndarray


def _as_descriptors(desc_q, desc_r, who: str) -> tuple[np.ndarray, np.ndarray]:
    q = np.ascontiguousarray(desc_q, dtype=np.float32)
    r = np.ascontiguousarray(desc_r, dtype=np.float32)
    if q.ndim != 2 or r.ndim != 2 or (q.size and r.size and q.shape[1] != r.shape[1]):
        raise ValueError(f"{who}: expected (Kq, C) and (Kr, C) descriptors, got {q.shape} and {r.shape}")
    return q, r


def _ratio_undecided(s1, s2, bound, g1, g2, ratio: float, c: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, undecided) of Lowe's test from product values.

    ``s1``, ``s2``: the two smallest computed squared distances, each within ``bound`` of the
    true smallest and second smallest (order statistics move no more than the entries do),
    whichever references they belong to; so the test's margin is known to (1 + ratio^2) bound.
    """
    r2 = ratio * ratio
    # Slack: the product bound, plus the rounding of the directly computed float32 distances
    # that decide the other rows (standard bound for a length-C sum), so both paths agree.
    slack = (1.0 + r2) * bound + 2.0 * (c + 3) * _U32 * (s1 + r2 * s2) + 1e-30
    margin = r2 * s2 - s1
    keep = margin > slack
    undecided = np.abs(margin) <= slack
    # A kept row also needs its nearest reference for sure: the runner-up must be clear.
    undecided |= keep & (g2 - g1 <= 2.0 * bound)
    return keep & ~undecided, undecided


def _float32_stage(q: np.ndarray, r: np.ndarray, ratio: float | None = None) -> _Nearest:
    """Two nearest by the float32 product. With ``ratio``, only rows whose ratio test the
    bound cannot decide are marked ``exact``; without, every row is."""
    kq, c = q.shape
    kr = r.shape[0]
    # [q, 1] @ [-2 r, |r|^2]^T: one product gives g without another pass over the matrix.
    # Row-major operands; the transpose is a BLAS flag, not a copy.
    rr = np.einsum("kc,kc->k", r, r)
    r_aug = np.empty((kr, c + 1), np.float32)
    np.multiply(r, np.float32(-2.0), out=r_aug[:, :c])  # exact scaling
    r_aug[:, c] = rr
    q_aug = np.empty((kq, c + 1), np.float32)
    q_aug[:, :c] = q
    q_aug[:, c] = 1.0
    q_sq = np.einsum("kc,kc->k", q, q).astype(np.float64)
    r_max = float(np.sqrt(rr.max()))
    # Error of g (product terms and |r|^2) plus that of |q|^2, which turns g into a squared
    # distance; the 1.01 covers the float32 rounding of the norms used here.
    bound = 1.01 * (c + 3) * _U32 * (2.0 * np.sqrt(q_sq) * r_max + 2.0 * r_max * r_max + q_sq)

    idx = np.empty((kq, 2), np.int64)
    g2 = np.empty((kq, 2), np.float32)
    exact = np.zeros(kq, bool)
    cand_q, cand_r = [], []
    rows = max(1, min(kq, _MAX_ENTRIES // kr))
    for start in range(0, kq, rows):
        stop = min(start + rows, kq)
        g = q_aug[start:stop] @ r_aug.T
        ar = np.arange(stop - start)
        i1 = g.argmin(axis=1)
        a1 = g[ar, i1]
        g[ar, i1] = np.inf
        i2 = g.argmin(axis=1)
        a2 = g[ar, i2]
        idx[start:stop, 0], idx[start:stop, 1] = i1, i2
        g2[start:stop, 0], g2[start:stop, 1] = a1, a2
        b = bound[start:stop]
        if ratio is None:
            sel, sub = ar, g                                  # every row, in place
        else:
            qs = q_sq[start:stop]
            _, undecided = _ratio_undecided(a1 + qs, a2 + qs, b, a1, a2, ratio, c)
            sel = np.flatnonzero(undecided)
            sub = g[sel]                                      # a few rows, copied
        exact[start + sel] = True
        if sel.size == 0 or kr == 2:
            continue
        # Is a third reference close enough to be among the true two nearest?
        local = np.arange(sel.size)
        sub[local, i2[sel]] = np.inf
        limit = a2[sel] + 2.0 * b[sel]                       # float64: no rounding down
        near = np.flatnonzero(sub.min(axis=1) <= limit)
        if near.size:
            sub[near, i1[sel[near]]] = a1[sel[near]]
            sub[near, i2[sel[near]]] = a2[sel[near]]
            flat = np.flatnonzero(sub[near] <= limit[near, None])
            row, col = np.divmod(flat, kr)
            cand_q.append(sel[near[row]] + start)
            cand_r.append(col)
    empty = np.empty(0, np.int64)
    return _Nearest(idx, g2, bound, q_sq, exact,
                    np.concatenate(cand_q) if cand_q else empty,
                    np.concatenate(cand_r) if cand_r else empty)


def _distances(q: np.ndarray, r: np.ndarray, qi: np.ndarray, ri: np.ndarray) -> np.ndarray:
    """L2 distances of pairs (q[qi], r[ri]) from float32 differences, as BFMatcher computes
    them, so identical descriptors give bit-identical distances."""
    diff = q[qi] - r[ri]
    return np.sqrt(np.einsum("kc,kc->k", diff, diff))


def _float64_candidates(q: np.ndarray, r: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs for ``rows`` from a float64 product: the references within float64
    rounding of the second smallest (in practice exact ties only)."""
    c = q.shape[1]
    r64 = r.astype(np.float64)
    rr64 = np.einsum("kc,kc->k", r64, r64)
    q64 = q[rows].astype(np.float64)
    g = rr64 - 2.0 * (q64 @ r64.T)                          # (A, Kr)
    second = np.partition(g, 1, axis=1)[:, 1]
    r_max = float(np.sqrt(rr64.max()))
    q_norm = np.sqrt(np.einsum("kc,kc->k", q64, q64))
    window = 2.0 * (c + 3) * _U64 * (2.0 * q_norm * r_max + 2.0 * r_max * r_max)
    local, ri = np.nonzero(g <= (second + window)[:, None])
    return rows[local], ri


def _rank(q: np.ndarray, r: np.ndarray, qi: np.ndarray, ri: np.ndarray,
          idx: np.ndarray, dist: np.ndarray) -> None:
    """Write the best two candidates of each listed query, by (distance, index), into rows
    of ``idx`` and ``dist`` (each listed query has at least two candidates)."""
    rows, counts = np.unique(qi, return_counts=True)
    heavy = rows[counts > _MAX_DIRECT]
    if heavy.size:
        keep = ~np.isin(qi, heavy)
        hq, hr = _float64_candidates(q, r, heavy)
        qi, ri = np.concatenate([qi[keep], hq]), np.concatenate([ri[keep], hr])
    d = _distances(q, r, qi, ri)
    order = np.lexsort((ri, d, qi))
    qi, ri, d = qi[order], ri[order], d[order]
    first = np.flatnonzero(np.r_[True, qi[1:] != qi[:-1]])
    sel = qi[first]
    idx[sel, 0], idx[sel, 1] = ri[first], ri[first + 1]
    dist[sel, 0], dist[sel, 1] = d[first], d[first + 1]


def _exact_pairs(q: np.ndarray, r: np.ndarray, near: _Nearest, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact (indices, distances) of the two nearest for ``rows`` (sorted unique)."""
    idx = near.idx[rows].copy()
    d = np.stack([_distances(q, r, rows, idx[:, 0]), _distances(q, r, rows, idx[:, 1])], axis=1)
    swap = (d[:, 1] < d[:, 0]) | ((d[:, 1] == d[:, 0]) & (idx[:, 1] < idx[:, 0]))
    idx[swap] = idx[swap][:, ::-1]
    d[swap] = d[swap][:, ::-1]
    if near.cand_q.size:
        # Re-rank the near-tied rows among ``rows``: work on full-size views, then pick.
        pick = np.isin(near.cand_q, rows)
        if pick.any():
            full_idx = np.zeros((q.shape[0], 2), np.int64)
            full_d = np.zeros((q.shape[0], 2), np.float32)
            full_idx[rows], full_d[rows] = idx, d
            _rank(q, r, near.cand_q[pick], near.cand_r[pick], full_idx, full_d)
            idx, d = full_idx[rows], full_d[rows]
    return idx, d.astype(np.float32)


def two_nearest(desc_q: np.ndarray, desc_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two nearest reference descriptors of every query descriptor (L2), exactly as
    ``cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc_q, desc_r, k=2)`` ranks them.

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
        (Kq, 2) float32 L2 distances (BFMatcher's to ~1e-7).

    Notes
    -----
    Where two candidates' distances agree to float32 rounding (~1e-8), BFMatcher's order
    follows its own SIMD summation; this function's follows the directly computed float32
    distance, then the index. So on such near-duplicates (e.g. keypoints past the sampling
    range of the descriptor map, which share one cell's descriptor) the second index can
    differ from BFMatcher's; the ratio test cannot pass there, and ``ratio_match`` agrees.
    """
    q, r = _as_descriptors(desc_q, desc_r, "two_nearest")
    if r.shape[0] < 2:
        raise ValueError(f"two_nearest: need at least 2 reference descriptors, got {r.shape[0]}")
    if q.shape[0] == 0:
        return np.empty((0, 2), np.int64), np.empty((0, 2), np.float32)
    near = _float32_stage(q, r)
    return _exact_pairs(q, r, near, np.arange(q.shape[0]))


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
    q, r = _as_descriptors(desc_q, desc_r, "ratio_match")
    if q.shape[0] == 0 or r.shape[0] < 2:
        return np.empty((0, 2), np.int64)
    ratio = float(ratio)
    near = _float32_stage(q, r, ratio)
    keep, _ = _ratio_undecided(near.g[:, 0] + near.q_sq, near.g[:, 1] + near.q_sq, near.bound,
                               near.g[:, 0], near.g[:, 1], ratio, q.shape[1])
    best = near.idx[:, 0].copy()
    rows = np.flatnonzero(near.exact)
    if rows.size:
        idx, d = _exact_pairs(q, r, near, rows)
        # Python's comparison in the reference: float32 distances, double product.
        keep[rows] = d[:, 0].astype(np.float64) < ratio * d[:, 1].astype(np.float64)
        best[rows] = idx[:, 0]
    sel = np.flatnonzero(keep)
    return np.stack([sel, best[sel]], axis=1).astype(np.int64)
