"""Joint refinement: every image's transform into the common frame, fitted at once to all
registered pairs' matches.

For an edge (i, j) with matches ``x_i`` (pixels of image i) and ``x_j`` (of image j), each match
contributes the residual ``T_i(x_i) - T_j(x_j)`` in frame pixels; the reference's ``T`` is the
identity and stays fixed (it fixes the frame's position, scale and rotation). The sum of a
Cauchy loss of those residuals (scale ``scale_px``) is minimised by
``scipy.optimize.least_squares`` (trust region, LSMR on a sparse Jacobian in closed form: a
residual depends only on its two images' parameters, so the Jacobian has 2 x k non-zeros per
row whatever the number of images; ``_Problem.sparsity`` gives its pattern).

Models, as for pairs (``transform.py``): a homography per image (8 parameters, a correction
``I + D`` in the image's normalised coordinates applied before its start homography), or a
quadratic per image (12 parameters, ``QuadraticTransform`` with the image's and the frame's
normalisation). The quadratic is fitted only after the homographies, started from them, and
kept only when the same guards as a pair's pass for every image (enough matches, no departure
from its homography over its matches' domain beyond ``MAX_DEVIATION`` of the frame's diagonal,
no fold or stretch: local scale within ``JACOBIAN_RATIO``) and when it explains held-out matches
(one fold in ``HELD_OUT_FOLDS``, both models refitted without them) better: lower mean capped
Cauchy loss, by ``auto_gain`` for ``auto``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import csr_matrix, lil_matrix

from ..homography import transform_points
from ..transform import (HELD_OUT_FOLDS, JACOBIAN_RATIO, MAX_DEVIATION, HomographyTransform, QuadraticTransform,
                         _basis, _folds, _held_out_score, fit_quadratic)

MAX_NFEV = 60           # trust-region iterations (each a sparse finite-difference Jacobian)


@dataclass
class EdgeMatches:
    """Matches of one registered pair: image ``i``'s pixels ``xi`` (M, 2) ↔ image ``j``'s ``xj`` (M, 2)."""

    i: int
    j: int
    xi: np.ndarray
    xj: np.ndarray
    weight: float = 1.0


@dataclass
class Refined:
    """Outcome of :func:`refine`: per image its transform into the frame (None: not in the frame)."""

    transforms: list
    model: str                         # the model returned: homography or quadratic
    requested: str
    reason: Optional[str] = None       # why the homography was kept when a quadratic was asked for
    held_out: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)


def _normaliser(size_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """(centre (2,), scale): an image's pixels minus centre, times scale, span about [-1, 1]."""
    h, w = size_hw
    return np.array([(w - 1) / 2.0, (h - 1) / 2.0]), 2.0 / float(np.hypot(w, h))


class _Problem:
    """Parameter vector <-> per-image transforms, and the stacked residuals of all edges."""

    def __init__(self, model: str, free: Sequence[int], ref: int, sizes: Sequence[tuple[int, int]],
                 H0: Sequence[Optional[np.ndarray]], edges: Sequence[EdgeMatches]):
        self.model, self.free, self.ref = model, list(free), ref
        self.k = 8 if model == "homography" else 12
        self.col = {img: c * self.k for c, img in enumerate(self.free)}
        self.norm = {i: _normaliser(sizes[i]) for i in range(len(sizes))}
        self.H0 = H0
        self.edges = [e for e in edges if (e.i in self.col or e.i == ref) and (e.j in self.col or e.j == ref)]
        self.sw = [np.sqrt(e.weight) for e in self.edges]

    # -- homography: H = H0 @ N^-1 (I + D) N, D's last entry fixed at 0
    def _H(self, img: int, p: np.ndarray) -> np.ndarray:
        c, s = self.norm[img]
        N = np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1.0]])
        D = np.eye(3) + np.append(p, 0.0).reshape(3, 3)
        return self.H0[img] @ np.linalg.inv(N) @ D @ N

    def _quad(self, img: int, p: np.ndarray) -> QuadraticTransform:
        c, s = self.norm[img]
        cf, sf = self.norm[self.ref]
        return QuadraticTransform(p.reshape(2, 6), c, s, cf, sf)

    def start(self) -> np.ndarray:
        """Parameters of the start transforms (homography model: zero corrections)."""
        if self.model == "homography":
            return np.zeros(self.k * len(self.free))
        x = []
        for img in self.free:
            q = quadratic_from_homography(self.H0[img], self.norm[img], self.norm[self.ref])
            x.append(q.coeffs.ravel())
        return np.concatenate(x) if x else np.zeros(0)

    def apply(self, img: int, x: np.ndarray, pts: np.ndarray) -> np.ndarray:
        if img == self.ref:
            return pts
        p = x[self.col[img]:self.col[img] + self.k]
        if self.model == "homography":
            return transform_points(self._H(img, p), pts)
        c, s = self.norm[img]
        cf, sf = self.norm[self.ref]
        return _basis((pts - c) * s) @ p.reshape(2, 6).T / sf + cf

    def transform(self, img: int, x: np.ndarray):
        if img == self.ref:
            return HomographyTransform(np.eye(3))
        p = x[self.col[img]:self.col[img] + self.k]
        return HomographyTransform(self._H(img, p)) if self.model == "homography" else self._quad(img, p)

    def residuals(self, x: np.ndarray, masks: Optional[list] = None) -> np.ndarray:
        out = []
        for n, e in enumerate(self.edges):
            xi, xj = (e.xi, e.xj) if masks is None else (e.xi[masks[n]], e.xj[masks[n]])
            out.append(((self.apply(e.i, x, xi) - self.apply(e.j, x, xj)) * self.sw[n]).ravel())
        return np.concatenate(out) if out else np.zeros(0)

    def _point_jacobian(self, img: int, x: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """d T_img(pts) / d (img's parameters): (M, 2, k), closed form."""
        p = x[self.col[img]:self.col[img] + self.k]
        c, s = self.norm[img]
        if self.model == "quadratic":            # linear in its coefficients
            B = _basis((pts - c) * s) / self.norm[self.ref][1]
            J = np.zeros((len(pts), 2, 12))
            J[:, 0, :6], J[:, 1, 6:] = B, B
            return J
        # T = dehom(Mx (I + D) u), u = N x: dw / dD_ab = Mx[:, a] u_b
        N = np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1.0]])
        u = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ N.T
        Mx = self.H0[img] @ np.linalg.inv(N)
        w = u @ (np.eye(3) + np.append(p, 0.0).reshape(3, 3)).T @ Mx.T
        J = np.empty((len(pts), 2, 8))
        for idx in range(8):
            a, b = divmod(idx, 3)
            dw = u[:, b:b + 1] * Mx[:, a][None, :]
            J[:, 0, idx] = dw[:, 0] / w[:, 2] - w[:, 0] * dw[:, 2] / w[:, 2] ** 2
            J[:, 1, idx] = dw[:, 1] / w[:, 2] - w[:, 1] * dw[:, 2] / w[:, 2] ** 2
        return J

    def jacobian(self, x: np.ndarray, masks: Optional[list] = None) -> csr_matrix:
        """Sparse Jacobian of :meth:`residuals` (rows: 2 per match, columns: the free images' parameters)."""
        rows, cols, vals = [], [], []
        r0 = 0
        for n, e in enumerate(self.edges):
            xi, xj = (e.xi, e.xj) if masks is None else (e.xi[masks[n]], e.xj[masks[n]])
            m = len(xi)
            r = r0 + np.arange(2 * m).reshape(m, 2)
            for img, pts, sign in ((e.i, xi, 1.0), (e.j, xj, -1.0)):
                if img not in self.col:
                    continue
                J = self._point_jacobian(img, x, pts) * (sign * self.sw[n])
                rows.append(np.repeat(r[:, :, None], self.k, axis=2).ravel())
                cols.append(np.broadcast_to(self.col[img] + np.arange(self.k), J.shape).ravel())
                vals.append(J.ravel())
            r0 += 2 * m
        shape = (r0, self.k * len(self.free))
        if not vals:
            return csr_matrix(shape)
        return csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)

    def sparsity(self, masks: Optional[list] = None) -> lil_matrix:
        rows = sum(2 * (len(e.xi) if masks is None else int(masks[n].sum())) for n, e in enumerate(self.edges))
        S = lil_matrix((rows, self.k * len(self.free)), dtype=np.int8)
        r = 0
        for n, e in enumerate(self.edges):
            m = 2 * (len(e.xi) if masks is None else int(masks[n].sum()))
            for img in (e.i, e.j):
                if img in self.col:
                    S[r:r + m, self.col[img]:self.col[img] + self.k] = 1
            r += m
        return S

    def solve(self, scale_px: float, masks: Optional[list] = None, x0: Optional[np.ndarray] = None) -> np.ndarray:
        x0 = self.start() if x0 is None else x0
        if len(x0) == 0:
            return x0
        sol = least_squares(self.residuals, x0, jac=self.jacobian, loss="cauchy", f_scale=scale_px,
                            x_scale="jac", method="trf", tr_solver="lsmr", max_nfev=MAX_NFEV, args=(masks,))
        return sol.x

    def frame_residuals(self, x: np.ndarray, masks: Optional[list] = None) -> np.ndarray:
        """Per match |T_i(x_i) - T_j(x_j)| in frame pixels (unweighted), all edges stacked."""
        out = []
        for n, e in enumerate(self.edges):
            xi, xj = (e.xi, e.xj) if masks is None else (e.xi[masks[n]], e.xj[masks[n]])
            out.append(np.linalg.norm(self.apply(e.i, x, xi) - self.apply(e.j, x, xj), axis=1))
        return np.concatenate(out) if out else np.zeros(0)


def quadratic_from_homography(H: np.ndarray, norm_q: tuple, norm_r: tuple) -> QuadraticTransform:
    """The least-squares quadratic through a homography over the image's normalised square [-1, 1]^2."""
    (c, s), _ = norm_q, norm_r
    g = np.linspace(-1, 1, 9) / s
    gx, gy = np.meshgrid(g + c[0], g + c[1])
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    q, _ = fit_quadratic(pts, transform_points(H, pts), norm=(norm_q, norm_r))
    return q


def _quadratic_guard(prob: _Problem, xq: np.ndarray, H: Sequence[Optional[np.ndarray]], frame_hw: tuple,
                     edges: Sequence[EdgeMatches], min_matches: int) -> Optional[str]:
    """Why the quadratic solution may not be returned (None: every image passes).

    H : each image's refined homography into the frame (the fallback the quadratic is compared with).
    """
    h, w = frame_hw
    limit = MAX_DEVIATION * float(np.hypot(w, h))
    for img in prob.free:
        pts = np.concatenate([e.xi for e in edges if e.i == img] + [e.xj for e in edges if e.j == img])
        if len(pts) < min_matches:
            return f"image {img} has {len(pts)} matches; the quadratic needs {min_matches}"
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 12), np.linspace(lo[1], hi[1], 12))
        grid = np.stack([gx.ravel(), gy.ravel()], 1)
        Q, Hm = prob.transform(img, xq), H[img]
        dev = float(np.linalg.norm(Q.apply(grid) - transform_points(Hm, grid), axis=1).max())
        if dev > limit:
            return (f"image {img}: quadratic departs {dev:.1f} px from its homography over its matches "
                    f"(at most {limit:.1f} px allowed)")
        J = Q.jacobian(grid)
        det_q = J[:, 0, 0] * J[:, 1, 1] - J[:, 0, 1] * J[:, 1, 0]
        wz = grid @ Hm[2, :2] + Hm[2, 2]
        ratio = det_q / (np.linalg.det(Hm) / wz ** 3)
        if not (np.all(ratio > JACOBIAN_RATIO[0]) and np.all(ratio < JACOBIAN_RATIO[1])):
            return (f"image {img}: quadratic folds or stretches (local scale {ratio.min():.2f}..{ratio.max():.2f} "
                    f"of its homography's)")
    return None


def refine(sizes: Sequence[tuple[int, int]], ref: int, H0: Sequence[Optional[np.ndarray]],
           edges: Sequence[EdgeMatches], model: str = "homography", scale_px: float = 3.0,
           auto_gain: float = 0.1, min_matches: int = 30) -> Refined:
    """Jointly refine every connected image's transform into the reference's frame.

    Parameters
    ----------
    sizes : (height, width) of each image.
    ref : the reference's index (its transform is the identity).
    H0 : start homographies image -> frame (3, 3), None for images not in the frame.
    edges : matches of the registered pairs between images in the frame.
    model : ``homography``, ``quadratic`` or ``auto`` (as ``transform.model``).
    scale_px : Cauchy scale, frame pixels.
    auto_gain, min_matches : as ``transform.auto_gain`` / ``transform.min_matches``.
    """
    free = [i for i in range(len(sizes)) if H0[i] is not None and i != ref]
    hom = _Problem("homography", free, ref, sizes, H0, edges)
    out = Refined([None] * len(sizes), "homography", model)
    if not hom.edges:
        out.transforms[ref] = HomographyTransform(np.eye(3))
        return out
    x0 = hom.start()
    xh = hom.solve(scale_px)
    out.cost = {"initial_median_px": _median(hom.frame_residuals(x0)), "refined_median_px": _median(hom.frame_residuals(xh))}
    out.transforms = [hom.transform(i, xh) if (i == ref or i in hom.col) else None for i in range(len(sizes))]
    if model == "homography" or not free:
        return out
    # Quadratic: started from the refined homographies.
    H1 = [None if t is None else t.H for t in out.transforms]
    quad = _Problem("quadratic", free, ref, sizes, H1, edges)
    xq = quad.solve(scale_px)
    reason = _quadratic_guard(quad, xq, H1, sizes[ref], quad.edges, min_matches)
    if reason is not None:
        out.reason = reason
        return out
    # Held out: one fold of every edge's matches, both models refitted without it.
    test = [_folds(len(e.xi), HELD_OUT_FOLDS) == 0 for e in hom.edges]
    train = [~t for t in test]
    xh_f = hom.solve(scale_px, train, x0=xh)
    xq_f = quad.solve(scale_px, train, x0=xq)
    held = {"homography": _held_out_score(hom.frame_residuals(xh_f, test), scale_px, "cauchy"),
            "quadratic": _held_out_score(quad.frame_residuals(xq_f, test), scale_px, "cauchy")}
    out.held_out = held
    need = held["homography"] * (1.0 - (auto_gain if model == "auto" else 0.0))
    if not held["quadratic"] < need:
        out.reason = (f"quadratic's held-out Cauchy loss {held['quadratic']:.3f} not "
                      f"{'below' if model == 'quadratic' else f'{100 * auto_gain:.0f} % below'} the homography's "
                      f"{held['homography']:.3f}")
        return out
    out.model = "quadratic"
    out.cost["refined_median_px"] = _median(quad.frame_residuals(xq))
    out.transforms = [quad.transform(i, xq) if (i == ref or i in quad.col) else None for i in range(len(sizes))]
    for i in free:          # the domain: where the image's matches are (outside it the polynomial extrapolates)
        pts = np.concatenate([e.xi for e in quad.edges if e.i == i] + [e.xj for e in quad.edges if e.j == i])
        out.transforms[i].domain = np.concatenate([pts.min(axis=0), pts.max(axis=0)])
    return out


def _median(r: np.ndarray) -> Optional[float]:
    return round(float(np.median(r)), 4) if len(r) else None
