"""Guided matching: match keypoints again where a transform predicts them (issue 17.1).

The global ratio test (``matching.ratio_match``) compares each query descriptor with every
reference descriptor, so a true match whose descriptor has a near twin anywhere in the other
photograph (vessels look alike) is thrown away; on small-overlap pairs only a handful survive.
Once a first transform is known, each query keypoint's counterpart can only lie near the
position the transform predicts for it: :func:`guided_match` compares descriptors only among
the reference keypoints within a search radius of that position, applies the ratio test among
those candidates only, and keeps a match only when it is mutual (the reference keypoint's best
query candidate is the same keypoint). ``refine_guided`` in the registrar alternates this with a
refit of the homography and the transform.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .homography import degeneracy, refine_homography
from .transform import HomographyTransform, TransformChoice

__all__ = ["guided_match", "guided_refinement", "GuidedPass"]

_BIG = np.int64(1 << 31)


def _cell_keys(cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    return cx.astype(np.int64) * _BIG + cy.astype(np.int64)


def _candidates(pred: np.ndarray, refer_xy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query index, reference index) with the reference keypoint within ``radius`` of
    the query's predicted position; rows of ``pred`` that are not finite take no part.

    A grid of ``radius``-sized cells: each prediction looks at the reference keypoints of its
    own and the 8 neighbouring cells (sorted by cell, found by binary search), so the cost
    grows with the keypoints, not with their product."""
    ok = np.flatnonzero(np.isfinite(pred).all(axis=1) & (np.abs(pred) < 1e8).all(axis=1))
    if ok.size == 0 or len(refer_xy) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rc = np.floor(refer_xy / radius).astype(np.int64)
    rkey = _cell_keys(rc[:, 0], rc[:, 1])
    order = np.argsort(rkey, kind="stable")
    skey = rkey[order]
    pc = np.floor(pred[ok] / radius).astype(np.int64)
    qi, ri = [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            key = _cell_keys(pc[:, 0] + dx, pc[:, 1] + dy)
            lo, hi = np.searchsorted(skey, key, "left"), np.searchsorted(skey, key, "right")
            n = hi - lo
            if not n.any():
                continue
            rows = np.repeat(np.arange(len(ok)), n)
            # positions lo[row] + 0..n[row]-1, without a Python loop
            offs = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
            qi.append(ok[rows])
            ri.append(order[np.repeat(lo, n) + offs])
    if not qi:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    qi, ri = np.concatenate(qi), np.concatenate(ri)
    d2 = ((pred[qi] - refer_xy[ri]) ** 2).sum(axis=1)
    keep = d2 <= radius * radius
    return qi[keep], ri[keep]


def guided_match(pred_xy: np.ndarray, desc_q: np.ndarray, refer_xy: np.ndarray, desc_r: np.ndarray,
                 radius: float, ratio: float = 0.9, max_distance: float = 2.0) -> np.ndarray:
    """Mutual nearest descriptors among the reference keypoints near each predicted position.

    Parameters
    ----------
    pred_xy : np.ndarray
        (Kq, 2) where the transform predicts each query keypoint, reference pixels; non-finite
        rows (no prediction) are skipped.
    desc_q : np.ndarray
        (Kq, C) query descriptors.
    refer_xy : np.ndarray
        (Kr, 2) reference keypoints, reference pixels.
    desc_r : np.ndarray
        (Kr, C) reference descriptors.
    radius : float
        Search radius around each prediction, reference pixels.
    ratio : float
        Lowe's test among the candidates of one query: keep the nearest when its distance is
        below ``ratio`` times the second nearest's (a lone candidate passes).
    max_distance : float
        Descriptor (L2) distance above which a candidate is never a match.

    Returns
    -------
    np.ndarray
        (M, 2) int64 rows ``[query_index, reference_index]``, increasing query index; each
        index appears at most once.
    """
    pred = np.asarray(pred_xy, np.float64).reshape(-1, 2)
    rxy = np.asarray(refer_xy, np.float64).reshape(-1, 2)
    if len(pred) == 0 or len(rxy) == 0:
        return np.empty((0, 2), np.int64)
    qi, ri = _candidates(pred, rxy, radius)
    if qi.size == 0:
        return np.empty((0, 2), np.int64)
    dq = np.asarray(desc_q, np.float32)
    dr = np.asarray(desc_r, np.float32)
    diff = dq[qi] - dr[ri]
    d = np.sqrt(np.einsum("kc,kc->k", diff, diff))
    keep = d <= max_distance
    qi, ri, d = qi[keep], ri[keep], d[keep]
    if qi.size == 0:
        return np.empty((0, 2), np.int64)
    # Best and second-best candidate of each query: sort by (query, distance, reference index)
    # so that ties go to the lower index (deterministic).
    order = np.lexsort((ri, d, qi))
    qi, ri, d = qi[order], ri[order], d[order]
    first = np.flatnonzero(np.r_[True, qi[1:] != qi[:-1]])
    has_second = np.r_[first[1:], len(qi)] - first > 1
    second_d = np.where(has_second, d[np.minimum(first + 1, len(d) - 1)], np.inf)
    passes = d[first] < ratio * second_d
    bq, br = qi[first][passes], ri[first][passes]
    # Mutual check: the reference keypoint's best query among all its candidate pairs.
    order_r = np.lexsort((qi, d, ri))
    first_r = order_r[np.flatnonzero(np.r_[True, ri[order_r][1:] != ri[order_r][:-1]])]
    best_q_of_r = np.full(len(rxy), -1, np.int64)
    best_q_of_r[ri[first_r]] = qi[first_r]
    mutual = best_q_of_r[br] == bq
    return np.stack([bq[mutual], br[mutual]], axis=1).astype(np.int64)


@dataclass
class GuidedPass:
    """One guided pass: its matches (M, 2) [query_idx, refer_idx], the homography refitted to
    them (3, 3) and the transform chosen on them."""

    matches: np.ndarray
    H: np.ndarray
    transform: TransformChoice


Choose = Callable[[np.ndarray, np.ndarray, np.ndarray], TransformChoice]


def guided_refinement(query_xy: np.ndarray, desc_q: np.ndarray, refer_xy: np.ndarray, desc_r: np.ndarray,
                      H: np.ndarray, choose: Choose, scale_px: float, pixel_scale: float, radius: float,
                      ratio: float, iterations: int, min_gain: float,
                      start: TransformChoice | None = None, start_count: int = 0,
                      keep: np.ndarray | None = None) -> list[GuidedPass]:
    """Guided passes from a registration's homography until the matches stop growing.

    Each pass predicts every query keypoint through the current transform (the quadratic where
    it was chosen: it follows the retina's bend where the homography is 15-20 px off), matches
    with :func:`guided_match`, refits the homography (Cauchy refinement from the current one)
    and chooses the transform on the new matches. Passes stop after ``iterations``, or once a
    pass adds fewer than ``min_gain`` (a fraction) matches to the previous one.

    Parameters
    ----------
    query_xy, refer_xy : np.ndarray
        (Kq, 2), (Kr, 2) keypoints, original query / reference pixels.
    desc_q, desc_r : np.ndarray
        (Kq, C), (Kr, C) descriptors.
    H : np.ndarray
        (3, 3) the registration's homography, query -> reference.
    choose : callable
        ``choose(query_pts (M, 2), refer_pts (M, 2), H) -> TransformChoice``.
    scale_px : float
        Cauchy scale of the homography refit, reference pixels.
    pixel_scale : float
        Reference pixels per model pixel (``radius`` is in model pixels).
    radius, ratio : float
        :func:`guided_match`'s search radius (model pixels) and ratio.
    iterations : int
        At most this many passes (0: none).
    min_gain : float
        Stop when a pass has fewer than ``(1 + min_gain)`` times the previous pass's matches.
    start : TransformChoice, optional
        The predictor of the first pass (default: the homography ``H``).
    start_count : int
        Matches of the pass before (the first guided pass is kept whatever its count).
    keep : np.ndarray, optional
        (M0, 2) matches of the pass before to keep in every pass (the guided ones are added
        where neither keypoint is in them); None: the guided matches alone.

    Returns
    -------
    list of GuidedPass
        The passes run; the last one is the result. Empty when the first pass finds too few
        matches (fewer than 8) or no usable homography.
    """
    qxy = np.asarray(query_xy, np.float64)
    rxy = np.asarray(refer_xy, np.float64)
    T = start.transform if start is not None else HomographyTransform(H)
    passes: list[GuidedPass] = []
    prev = start_count
    for _ in range(iterations):
        m = guided_match(T.apply(qxy), desc_q, rxy, desc_r, radius * pixel_scale, ratio)
        if keep is not None and len(keep):
            new = ~np.isin(m[:, 0], keep[:, 0]) & ~np.isin(m[:, 1], keep[:, 1])
            m = np.concatenate([keep, m[new]])
            m = m[np.argsort(m[:, 0], kind="stable")]
        if len(m) < 8:
            break
        q, r = qxy[m[:, 0]], rxy[m[:, 1]]
        H_new = refine_homography(q, r, H, scale_px)
        if not np.isfinite(H_new).all() or degeneracy(H_new, q) is not None:
            break
        choice = choose(q, r, H_new)
        if passes and len(m) < (1.0 + min_gain) * prev:
            # no longer growing: keep the pass only if it is not smaller than the last one
            if len(m) >= prev:
                passes.append(GuidedPass(m, H_new, choice))
            break
        passes.append(GuidedPass(m, H_new, choice))
        H, T, prev = H_new, choice.transform, len(m)
    return passes
