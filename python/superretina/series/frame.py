"""The common frame: which image is the reference, and each image's first transform into it.

Path strength is the product of the edge weights along it (``graph.edge_weight``), so the
strongest path is the shortest one under the cost ``-log(weight)``. The reference (unless given)
is the image of the largest component whose strongest paths to all the others are, summed, the
cheapest: the image that best connects the rest. Each image's initial transform is its pair
homographies chained along its strongest path to the reference.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

from .graph import components


def path_costs(n: int, edges: Sequence[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """All strongest paths: (cost (n, n), predecessors (n, n)) under ``-log(weight)``.

    edges : (i, j, weight) with weight in (0, 1].
    """
    rows, cols, vals = [], [], []
    for i, j, w in edges:
        c = -np.log(max(float(w), 1e-12)) + 1e-9       # > 0: a zero cost would read as "no edge"
        rows += [i, j]
        cols += [j, i]
        vals += [c, c]
    G = csr_matrix((vals, (rows, cols)), shape=(n, n))
    return shortest_path(G, method="D", directed=False, return_predecessors=True)


def choose_reference(n: int, edges: Sequence[tuple[int, int, float]], given: Optional[int] = None) -> int:
    """The reference index: ``given``, or the best-connecting image of the largest component."""
    if given is not None:
        return int(given)
    comp = components(n, [(i, j) for i, j, _ in edges])[0]
    cost, _ = path_costs(n, edges)
    sub = cost[np.ix_(comp, comp)]
    return int(comp[int(np.argmin(sub.sum(axis=1)))])          # ties: the earliest image


def initial_homographies(n: int, ref: int, edges: Sequence[tuple[int, int, float]],
                         pair_H: dict) -> list[Optional[np.ndarray]]:
    """Each image's homography into the reference frame along its strongest path (None when
    it is not connected to the reference).

    pair_H : {(i, j): H (3, 3)} mapping image i's pixels to image j's (i < j or not: the
        reverse direction is the inverse).
    """
    _, pred = path_costs(n, edges)
    out: list = [None] * n
    out[ref] = np.eye(3)

    def to_ref(k: int) -> Optional[np.ndarray]:
        if out[k] is not None:
            return out[k]
        p = pred[ref, k]
        if p < 0:
            return None
        Hp = to_ref(int(p))
        H_kp = pair_H[(k, p)] if (k, p) in pair_H else np.linalg.inv(pair_H[(p, k)])
        out[k] = Hp @ H_kp
        out[k] /= out[k][2, 2]
        return out[k]

    for k in range(n):
        to_ref(k)
    return out
