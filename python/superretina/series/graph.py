"""Which pairs of a series to register, and how much each registered pair is trusted.

A handful of images (``all_pairs_max`` or fewer): every pair. A larger set stays near-linear:

1. neighbours in time (each image with the next ``time_neighbours`` images in visit order);
2. a cheap similarity ranking: each image with its ``similar_pairs`` most similar others, the
   similarity being the phase-correlation peak of 128-px green-channel thumbnails (robust to a
   shift of gaze, ~0.1 ms a comparison; n^2 / 2 comparisons, no registration);
3. after those are registered, more pairs only where the graph is weak: an image with fewer
   than ``min_degree`` registered pairs, or a component cut off from the largest one, gets its
   next most similar untried partners (``fill_rounds`` rounds at most).

Cost: at most ``n * (time_neighbours + similar_pairs)`` pairs in steps 1-2, and at most
``n * fill_rounds`` more in step 3, against ``n (n - 1) / 2`` for all pairs.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import cv2
import numpy as np

THUMB_SIDE = 128
# Edge weight without a registration confidence: inliers saturate near this count.
INLIER_HALF_WEIGHT = 20


def thumbnail(image: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """(side, side) float32 thumbnail of the green channel, zero mean, unit variance, Hann-windowed.

    image: (H, W) gray or (H, W, 3) BGR, uint8 or uint16.
    """
    g = image[..., 1] if image.ndim == 3 else image
    t = cv2.resize(g.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
    # Vessels, not illumination: subtract the large-scale background first.
    t = t - cv2.GaussianBlur(t, (0, 0), side / 16)
    t = (t - t.mean()) / max(float(t.std()), 1e-6)
    return t * cv2.createHanningWindow((side, side), cv2.CV_32F)


def similarity_matrix(thumbs: Sequence[np.ndarray]) -> np.ndarray:
    """Symmetric (n, n) phase-correlation peak between thumbnails (diagonal 0)."""
    n = len(thumbs)
    S = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            _, response = cv2.phaseCorrelate(thumbs[i], thumbs[j])
            S[i, j] = S[j, i] = response
    return S


def _key(i: int, j: int) -> tuple[int, int]:
    return (i, j) if i < j else (j, i)


def initial_pairs(order: Sequence[int], similarity: np.ndarray, all_pairs_max: int, time_neighbours: int,
                  similar_pairs: int) -> list[tuple[int, int]]:
    """The pairs to register first, each as (i, j) with i < j (image indices).

    order : visit order (indices of the images, earliest first).
    similarity : (n, n) from :func:`similarity_matrix`.
    """
    n = len(order)
    if n <= all_pairs_max:
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    pairs: set = set()
    for k, i in enumerate(order):
        for j in order[k + 1:k + 1 + time_neighbours]:
            pairs.add(_key(i, j))
    for i in range(n):
        ranked = [j for j in np.argsort(-similarity[i], kind="stable") if j != i]
        for j in ranked[:similar_pairs]:
            pairs.add(_key(i, int(j)))
    return sorted(pairs)


def components(n: int, edges: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components (lists of image indices), largest first, ties by smallest index."""
    parent = list(range(n))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in edges:
        parent[root(i)] = root(j)
    groups: dict = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def fill_pairs(n: int, tried: set, registered: Sequence[tuple[int, int]], similarity: np.ndarray,
               min_degree: int) -> list[tuple[int, int]]:
    """Untried pairs where the graph is weak: for every image with fewer than ``min_degree``
    registered pairs or outside the largest component, its most similar untried partner
    (outside its own component first, when it is cut off)."""
    degree = np.zeros(n, int)
    for i, j in registered:
        degree[i] += 1
        degree[j] += 1
    comps = components(n, registered)
    comp_of = {i: c for c, g in enumerate(comps) for i in g}
    new: set = set()
    for i in range(n):
        cut_off = comp_of[i] != 0
        if degree[i] >= min_degree and not cut_off:
            continue
        ranked = [int(j) for j in np.argsort(-similarity[i], kind="stable") if j != i and _key(i, int(j)) not in tried]
        if cut_off:
            ranked.sort(key=lambda j: comp_of[j] == comp_of[i])     # stable: other components first
        if ranked:
            new.add(_key(i, ranked[0]))
    return sorted(new - tried)


def edge_weight(info: dict) -> float:
    """How much a registered pair is trusted and how tightly it ties its two images, in (0, 1];
    0 for a failed pair.

    info : the pair's ``result.json`` content (``Registration.to_json()``).

    ``confidence x precision``: the registration's ``confidence`` (the probability that the pair
    is right, where the result has one; 1 otherwise) times its precision, the inlier count
    (saturating: ``n / (n + 20)``) times the share of matches within 5 px of the returned transform
    (the inlier rate when residuals are not recorded). Both factors matter: a right pair with 12
    inliers (FIRE P30) has a confidence near 1 but constrains the frame far less than one with 300;
    weighting the fire_dev P group's pairs by confidence alone (0.99 each) left P30/P31 at 18.9 /
    11.8 px through the frame instead of 8.5 / 6.9 px (benchmarks/series_tolerance.py, docs/series.md).
    """
    if info.get("status") != "registered":
        return 0.0
    conf = info.get("confidence")
    if isinstance(conf, dict):                   # {"value": ...} or similar shapes
        conf = conf.get("value", conf.get("score"))
    trust = 1.0
    if isinstance(conf, (int, float)) and not isinstance(conf, bool) and math.isfinite(conf):
        trust = float(min(max(conf, 0.0), 1.0))
    n = int(info.get("num_inliers") or 0)
    share = ((info.get("residuals") or {}).get("transform") or {}).get("within_5px")
    if share is None:
        share = info.get("inlier_rate") or 0.0
    precision = n / (n + INLIER_HALF_WEIGHT) * float(share)
    return float(max(trust * precision, 1e-6))
