"""Registration transforms beyond the homography (../shared/docs/retina-geometry.md).

Two transform objects map query pixels to reference pixels (original pixels, centres at
integers, as OpenCV):

- :class:`HomographyTransform` (8 parameters), the reference's model;
- :class:`QuadraticTransform` (12 parameters): in normalised coordinates
  ``x_n = (x - c_q) * s_q``, each output is a second-order polynomial
  ``r_n = a . [1, x, y, x^2, xy, y^2](x_n)``, and ``r = r_n / s_r + c_r`` (Can, Stewart et
  al. 2002: sub-pixel on the curved retina).

Both apply to points, invert points (the quadratic by Newton's method, exact to 1e-6 px where
it is one-to-one), warp images and round-trip through JSON (:meth:`to_json`,
:func:`transform_from_json`). :func:`apply_saved_transform` and :func:`warp_with_saved_transform`
are the two entry points for a saved ``result.json`` ``transform``.

:func:`choose_transform` is the model selection after the homography: the quadratic is fitted
robustly to the final matches (Cauchy IRLS started from the homography's residuals), guarded
against too few, collinear or clustered matches, ill-conditioning, runaway extrapolation where
the matches are (``extrapolation``) and folding over the overlap, and kept only where it explains
matches held out of the fit better than the homography; otherwise the homography is returned
with the reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from .homography import refine_homography, transform_points

__all__ = ["HomographyTransform", "QuadraticTransform", "TransformChoice", "MODELS", "DIRECTION",
           "transform_from_json", "apply_saved_transform", "warp_with_saved_transform", "warp_image", "inverse_maps",
           "fit_quadratic", "robust_quadratic", "choose_transform", "residual_stats", "overlap_polygon"]

MODELS = ("homography", "quadratic", "auto")
DIRECTION = "query -> reference, original pixels"
BASIS = ("1", "x", "y", "x^2", "xy", "y^2")

# Guards of the quadratic (choose_transform); each failing one returns the homography with a reason.
CAUCHY_CUTOFF = 5.0        # matches beyond this many Cauchy scales from the homography take no part
MIN_SPREAD_RATIO = 0.15    # sqrt(smaller / larger eigenvalue) of the matches' covariance: below = a line
MIN_COVERAGE = 0.25        # convex hull of the matches / overlap area: below = a cluster
MAX_CONDITION = 1e8        # of the weighted 6x6 normal matrix in normalised coordinates
MAX_DEVIATION = 0.03       # of the reference's diagonal: largest |quadratic - homography| over the overlap
JACOBIAN_RATIO = (0.5, 2.0)  # local area scale of the quadratic / the homography's, over the overlap
HELD_OUT_FOLDS = 5
EXTRAPOLATION = ("hull", "overlap", "held_out", "none")   # see choose_transform
IRLS_ITERATIONS = 10
FOLD_ITERATIONS = 5        # IRLS iterations of the held-out fits (the quadratic and the homography)


def _basis(xn: np.ndarray) -> np.ndarray:
    x, y = xn[:, 0], xn[:, 1]
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def _normaliser(pts: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre (2,), scale): points minus centre, times scale, have unit RMS radius."""
    c = pts.mean(axis=0)
    rms = float(np.sqrt(((pts - c) ** 2).sum(axis=1).mean()))
    return c, 1.0 / max(rms, 1e-12)


# --------------------------------------------------------------------------- transforms
@dataclass
class HomographyTransform:
    """Homography ``H`` (3, 3), query -> reference pixels."""

    H: np.ndarray
    model: str = field(default="homography", init=False)

    def __post_init__(self):
        self.H = np.asarray(self.H, np.float64)
        self.H = self.H / self.H[2, 2]

    def apply(self, pts: np.ndarray) -> np.ndarray:
        """Query pixels (N, 2) -> reference pixels (N, 2) float64."""
        return transform_points(self.H, pts)

    def inverse(self, pts: np.ndarray) -> np.ndarray:
        """Reference pixels (N, 2) -> query pixels (N, 2) (exact)."""
        return transform_points(np.linalg.inv(self.H), pts)

    def homography_approximation(self) -> np.ndarray:
        return self.H

    def to_json(self) -> dict:
        return {"model": "homography", "direction": DIRECTION, "parameters": self.H.tolist(),
                "normalisation": None}


@dataclass
class QuadraticTransform:
    """Quadratic transform, query -> reference pixels.

    Attributes
    ----------
    coeffs : ndarray (2, 6)
        Rows: normalised reference x and y as combinations of ``BASIS`` of the normalised query point.
    query_centre, reference_centre : ndarray (2,)
        Pixels subtracted before / added after (normalisation).
    query_scale, reference_scale : float
        ``x_n = (x - query_centre) * query_scale``; ``r = r_n / reference_scale + reference_centre``.
    domain : ndarray (4,) or None
        Bounding box ``x0, y0, x1, y1`` (query pixels) of the matches it was fitted to: outside it
        the polynomial extrapolates.
    """

    coeffs: np.ndarray
    query_centre: np.ndarray
    query_scale: float
    reference_centre: np.ndarray
    reference_scale: float
    domain: Optional[np.ndarray] = None
    model: str = field(default="quadratic", init=False)

    def __post_init__(self):
        self.coeffs = np.asarray(self.coeffs, np.float64).reshape(2, 6)
        self.query_centre = np.asarray(self.query_centre, np.float64).reshape(2)
        self.reference_centre = np.asarray(self.reference_centre, np.float64).reshape(2)
        self.query_scale, self.reference_scale = float(self.query_scale), float(self.reference_scale)
        if self.domain is not None:
            self.domain = np.asarray(self.domain, np.float64).reshape(4)
        self._H0 = None

    def apply(self, pts: np.ndarray) -> np.ndarray:
        """Query pixels (N, 2) -> reference pixels (N, 2) float64."""
        p = np.asarray(pts, np.float64).reshape(-1, 2)
        rn = _basis((p - self.query_centre) * self.query_scale) @ self.coeffs.T
        return rn / self.reference_scale + self.reference_centre

    def jacobian(self, pts: np.ndarray) -> np.ndarray:
        """d(reference pixel) / d(query pixel) at query pixels (N, 2): (N, 2, 2)."""
        xn = (np.asarray(pts, np.float64).reshape(-1, 2) - self.query_centre) * self.query_scale
        x, y = xn[:, 0:1], xn[:, 1:2]
        a = self.coeffs
        dx = a[:, 1] + 2 * a[:, 3] * x + a[:, 4] * y           # (N, 2): d r_n / d x_n
        dy = a[:, 2] + a[:, 4] * x + 2 * a[:, 5] * y
        return np.stack([dx, dy], axis=2) * (self.query_scale / self.reference_scale)

    def homography_approximation(self) -> np.ndarray:
        """Least-squares homography through the transform over its domain (Newton's start)."""
        if self._H0 is None:
            if self.domain is not None:
                x0, y0, x1, y1 = self.domain
            else:
                c, h = self.query_centre, 1.5 / self.query_scale
                x0, y0, x1, y1 = c[0] - h, c[1] - h, c[0] + h, c[1] + h
            gx, gy = np.meshgrid(np.linspace(x0, x1, 9), np.linspace(y0, y1, 9))
            g = np.stack([gx.ravel(), gy.ravel()], 1)
            H, _ = cv2.findHomography(g, self.apply(g), 0)
            self._H0 = np.eye(3) if H is None else H
        return self._H0

    def inverse(self, pts: np.ndarray, x0: Optional[np.ndarray] = None, tol: float = 1e-9,
                max_iter: int = 30) -> np.ndarray:
        """Reference pixels (N, 2) -> query pixels (N, 2) by Newton's method.

        Starts from the inverse of :meth:`homography_approximation` (or ``x0``); points where it
        does not converge to ``tol`` px (outside the region where the polynomial is one-to-one)
        come back as NaN.
        """
        y = np.asarray(pts, np.float64).reshape(-1, 2)
        x = (transform_points(np.linalg.inv(self.homography_approximation()), y) if x0 is None
             else np.array(x0, np.float64).reshape(-1, 2))
        done = np.zeros(len(y), bool)
        for _ in range(max_iter):
            act = ~done
            if not act.any():
                break
            r = self.apply(x[act]) - y[act]
            J = self.jacobian(x[act])
            det = J[:, 0, 0] * J[:, 1, 1] - J[:, 0, 1] * J[:, 1, 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                sx = (J[:, 1, 1] * r[:, 0] - J[:, 0, 1] * r[:, 1]) / det
                sy = (-J[:, 1, 0] * r[:, 0] + J[:, 0, 0] * r[:, 1]) / det
            step = np.stack([sx, sy], 1)
            x[act] -= step
            small = np.abs(step).max(axis=1) < tol
            bad = ~np.isfinite(step).all(axis=1)
            idx = np.flatnonzero(act)
            done[idx[small | bad]] = True
            x[idx[bad]] = np.nan
        res = np.abs(self.apply(x) - y).max(axis=1)
        x[~(res < 1e-6)] = np.nan
        return x

    def to_json(self) -> dict:
        return {"model": "quadratic", "direction": DIRECTION,
                "basis": list(BASIS), "parameters": self.coeffs.tolist(),
                "normalisation": {"query": {"centre": self.query_centre.tolist(), "scale": self.query_scale},
                                  "reference": {"centre": self.reference_centre.tolist(),
                                                "scale": self.reference_scale},
                                  "formula": "x_n = (x - query.centre) * query.scale; r_n = parameters @ "
                                             "basis(x_n); r = r_n / reference.scale + reference.centre"},
                "domain": None if self.domain is None else self.domain.tolist()}


Transform = Union[HomographyTransform, QuadraticTransform]


def transform_from_json(d: Union[dict, str, Path]) -> Transform:
    """A transform from its :meth:`to_json` dict, or from a ``result.json`` path / dict with a
    ``transform`` entry. Raises ValueError naming the field that is wrong."""
    if isinstance(d, (str, Path)):
        path = Path(d)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read a transform ({exc})") from None
    if not isinstance(d, dict):
        raise ValueError(f"transform: expected a JSON object, got {type(d).__name__}")
    if "transform" in d and "parameters" not in d:         # a result.json
        d = d["transform"]
        if d is None:
            raise ValueError("transform: null (the registration failed)")
    model = d.get("model")
    try:
        if model == "homography":
            H = np.asarray(d["parameters"], np.float64)
            if H.shape != (3, 3) or not np.isfinite(H).all():
                raise ValueError("transform.parameters: expected a finite 3x3 matrix")
            return HomographyTransform(H)
        if model == "quadratic":
            a = np.asarray(d["parameters"], np.float64)
            if a.shape != (2, 6) or not np.isfinite(a).all():
                raise ValueError("transform.parameters: expected a finite 2x6 matrix")
            n = d["normalisation"]
            return QuadraticTransform(a, n["query"]["centre"], n["query"]["scale"], n["reference"]["centre"],
                                      n["reference"]["scale"], d.get("domain"))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"transform: missing or malformed field {exc}") from None
    raise ValueError(f"transform.model: expected 'homography' or 'quadratic', got {model!r}")


def apply_saved_transform(saved: Union[dict, str, Path], pts: np.ndarray) -> np.ndarray:
    """Map query pixels (N, 2) to reference pixels with a saved transform (a ``result.json``
    path or dict, or a transform dict)."""
    return transform_from_json(saved).apply(pts)


def warp_with_saved_transform(saved: Union[dict, str, Path], image: np.ndarray, size_wh: tuple[int, int],
                              interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Warp a query image into a reference frame of ``size_wh`` (w, h) with a saved transform."""
    return warp_image(image, transform_from_json(saved), size_wh, interpolation)


# --------------------------------------------------------------------------- warping
def inverse_maps(t: Transform, size_wh: tuple[int, int], query_wh: Optional[tuple[int, int]] = None,
                 step: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (float32, h x w): the query pixel shown at each reference pixel.

    The exact inverse (Newton) is computed on a grid every ``step`` pixels, padded by one cell,
    and enlarged bilinearly: the map is smooth (the quadratic's second derivatives are ~1e-5 /px
    at FIRE size), so the interpolation error is ~step^2 / 8 * 1e-5 px (~1e-3 px at step 32),
    far below 0.1 px. With ``query_wh``, grid points whose homography start lies far outside the
    query image (a quarter of its size) are not solved: they show nothing either way. Where
    there is no inverse the map points far outside (black); next to such places the
    interpolated map is not meaningful either, which only happens outside the region where
    the quadratic is one-to-one (guarded by ``choose_transform``).
    """
    w, h = int(size_wh[0]), int(size_wh[1])
    k = int(step)
    nx, ny = -(-w // k) + 3, -(-h // k) + 3
    # Coarse sample j sits at pixel (k - 1) / 2 + (j - 1) k: after cv2.resize by k (dst D <- src
    # (D + 0.5) / k - 0.5), dst index D shows pixel D - k, hence the crop [k:k + h, k:k + w].
    xs = (k - 1) / 2.0 + (np.arange(nx) - 1) * k
    ys = (k - 1) / 2.0 + (np.arange(ny) - 1) * k
    gx, gy = np.meshgrid(xs, ys)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    if isinstance(t, HomographyTransform):
        inv = t.inverse(grid)
    else:
        x0 = transform_points(np.linalg.inv(t.homography_approximation()), grid)
        inv = np.full_like(grid, np.nan)
        todo = np.isfinite(x0).all(axis=1)
        if query_wh is not None:
            mq = 0.25 * max(query_wh)
            todo &= (x0[:, 0] > -mq) & (x0[:, 0] < query_wh[0] + mq) & (x0[:, 1] > -mq) & (x0[:, 1] < query_wh[1] + mq)
        if todo.any():
            inv[todo] = t.inverse(grid[todo], x0=x0[todo], max_iter=12)
    inv = np.where(np.isfinite(inv), inv, -1e5).astype(np.float32)   # far outside: black
    mx = cv2.resize(inv[:, 0].reshape(ny, nx), (nx * k, ny * k), interpolation=cv2.INTER_LINEAR)[k:k + h, k:k + w]
    my = cv2.resize(inv[:, 1].reshape(ny, nx), (nx * k, ny * k), interpolation=cv2.INTER_LINEAR)[k:k + h, k:k + w]
    # Views into the padded maps (rows contiguous): OpenCV takes them without a copy.
    return mx, my


def warp_image(image: np.ndarray, t: Union[Transform, np.ndarray], size_wh: tuple[int, int],
               interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """The query image warped into the reference frame (``size_wh`` = reference (w, h)).

    A homography (``HomographyTransform`` or a 3x3 array) goes through ``cv2.warpPerspective``
    exactly as before; a quadratic through ``cv2.remap`` with :func:`inverse_maps`.
    """
    if isinstance(t, np.ndarray):
        t = HomographyTransform(t)
    if isinstance(t, HomographyTransform):
        return cv2.warpPerspective(image, t.H, tuple(size_wh), flags=interpolation)
    mx, my = inverse_maps(t, size_wh, image.shape[1::-1])
    return cv2.remap(image, mx, my, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


# --------------------------------------------------------------------------- fitting
def fit_quadratic(pq: np.ndarray, pr: np.ndarray, weights: Optional[np.ndarray] = None,
                  norm: Optional[tuple] = None) -> tuple[QuadraticTransform, float]:
    """Weighted least-squares quadratic through matches.

    Parameters
    ----------
    pq, pr : ndarray (M, 2)
        Query and reference pixels.
    weights : ndarray (M,), optional
        Non-negative; default all 1.
    norm : ((c_q, s_q), (c_r, s_r)), optional
        Normalisation; default from the points with positive weight.

    Returns
    -------
    (QuadraticTransform, condition number of the 6x6 normal matrix)
    """
    pq, pr = np.asarray(pq, np.float64).reshape(-1, 2), np.asarray(pr, np.float64).reshape(-1, 2)
    w = np.ones(len(pq)) if weights is None else np.asarray(weights, np.float64)
    if norm is None:
        use = w > 0
        norm = (_normaliser(pq[use]), _normaliser(pr[use]))
    (cq, sq), (cr, sr) = norm
    B = _basis((pq - cq) * sq)
    Bw = B * w[:, None]
    N = B.T @ Bw
    cond = float(np.linalg.cond(N))
    if not np.isfinite(cond) or cond > 1e15:
        raise np.linalg.LinAlgError(f"singular normal matrix (condition {cond:.3g})")
    a = np.linalg.solve(N, Bw.T @ ((pr - cr) * sr))        # (6, 2)
    use = w > 0
    dom = np.concatenate([pq[use].min(axis=0), pq[use].max(axis=0)]) if use.any() else None
    return QuadraticTransform(a.T, cq, sq, cr, sr, dom), cond


def _cauchy_weights(res: np.ndarray, scale: float) -> np.ndarray:
    r2 = (res / scale) ** 2
    return np.where(r2 < CAUCHY_CUTOFF ** 2, 1.0 / (1.0 + r2), 0.0)


def _irls(B: np.ndarray, T: np.ndarray, w: np.ndarray, scale: float, iterations: int) -> tuple[np.ndarray, float]:
    """Cauchy IRLS on a fixed design: B (M, 6) basis, T (M, 2) normalised targets, w (M,)
    starting weights, scale in target units. Returns (coefficients (6, 2), condition number)."""
    a, N = None, None
    for _ in range(iterations):
        if np.count_nonzero(w) < 6:
            break
        Bw = B * w[:, None]
        N = B.T @ Bw
        a_new = np.linalg.solve(N, Bw.T @ T)      # LinAlgError when exactly singular
        done = a is not None and np.abs(a_new - a).max() < 1e-10
        a = a_new
        if done:
            break
        w = _cauchy_weights(np.linalg.norm(B @ a - T, axis=1), scale)
    if a is None:
        raise np.linalg.LinAlgError("fewer than 6 matches with weight")
    cond = float(np.linalg.cond(N))
    if not np.isfinite(cond) or cond > 1e15:
        raise np.linalg.LinAlgError(f"singular normal matrix (condition {cond:.3g})")
    return a, cond


def robust_quadratic(pq: np.ndarray, pr: np.ndarray, H: np.ndarray, scale_px: float,
                     iterations: int = IRLS_ITERATIONS, norm: Optional[tuple] = None
                     ) -> tuple[QuadraticTransform, float]:
    """Cauchy IRLS quadratic (scale ``scale_px`` reference pixels, no weight beyond
    ``CAUCHY_CUTOFF`` scales), started from the homography ``H``'s residuals.

    Returns the transform and the condition number of its last weighted normal matrix.
    """
    pq, pr = np.asarray(pq, np.float64).reshape(-1, 2), np.asarray(pr, np.float64).reshape(-1, 2)
    w = _cauchy_weights(np.linalg.norm(transform_points(H, pq) - pr, axis=1), scale_px)
    if norm is None:
        norm = (_normaliser(pq[w > 0]), _normaliser(pr[w > 0]))
    (cq, sq), (cr, sr) = norm
    a, cond = _irls(_basis((pq - cq) * sq), (pr - cr) * sr, w, scale_px * sr, iterations)
    use = w > 0
    return QuadraticTransform(a.T, cq, sq, cr, sr, np.concatenate([pq[use].min(axis=0), pq[use].max(axis=0)])), cond


# --------------------------------------------------------------------------- model choice
@dataclass
class TransformChoice:
    """Outcome of :func:`choose_transform`.

    Attributes
    ----------
    transform : HomographyTransform or QuadraticTransform
        The transform returned.
    requested : str
        ``transform.model`` asked for (homography / quadratic / auto).
    reason : str or None
        Why the homography was returned although a quadratic was asked for (None otherwise).
    held_out : dict
        Held-out score of the homography and of the quadratic, when computed (see
        ``held_out_score`` of :func:`choose_transform`).
    """

    transform: Transform
    requested: str
    reason: Optional[str] = None
    held_out: dict = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.transform.model

    def to_json(self) -> dict:
        return {"requested": self.requested, "returned": self.model, "reason": self.reason,
                "held_out_score": {k: round(float(v), 4) for k, v in self.held_out.items()}}


def overlap_polygon(H: np.ndarray, query_wh: tuple[int, int], refer_wh: tuple[int, int]) -> np.ndarray:
    """The overlap (reference pixels, (K, 2) float32 convex polygon): the query's frame mapped
    by ``H``, clipped to the reference's frame."""
    wq, hq = query_wh
    wr, hr = refer_wh
    q_rect = np.array([[0, 0], [wq - 1, 0], [wq - 1, hq - 1], [0, hq - 1]], np.float64)
    mapped = transform_points(H, q_rect).astype(np.float32)
    r_rect = np.array([[0, 0], [wr - 1, 0], [wr - 1, hr - 1], [0, hr - 1]], np.float32)
    if not np.isfinite(mapped).all():
        return r_rect
    area, poly = cv2.intersectConvexConvex(mapped, r_rect)
    return np.zeros((0, 2), np.float32) if poly is None or area <= 0 else poly.reshape(-1, 2)


def _overlap_grid(H: np.ndarray, poly_r: np.ndarray, n: int = 16) -> np.ndarray:
    """Query pixels of an n x n grid over the convex overlap's bounding box that fall inside it."""
    if len(poly_r) < 3:
        return np.zeros((0, 2))
    P = poly_r.astype(np.float64)
    (x0, y0), (x1, y1) = P.min(axis=0), P.max(axis=0)
    gx, gy = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    g = np.stack([gx.ravel(), gy.ravel()], 1)
    e = np.roll(P, -1, axis=0) - P                                  # edges
    cross = e[None, :, 0] * (g[:, None, 1] - P[None, :, 1]) - e[None, :, 1] * (g[:, None, 0] - P[None, :, 0])
    tol = 1e-9 * max(x1 - x0, y1 - y0, 1.0) ** 2
    inside = np.all(cross >= -tol, axis=1) | np.all(cross <= tol, axis=1)   # either orientation
    return transform_points(np.linalg.inv(H), g[inside])


def _hull_grid(q: np.ndarray, n: int = 16) -> np.ndarray:
    """Query pixels of an n x n grid over the matches' bounding box that fall in their convex hull."""
    hull = cv2.convexHull(q.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    (x0, y0), (x1, y1) = hull.min(axis=0), hull.max(axis=0)
    gx, gy = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    g = np.stack([gx.ravel(), gy.ravel()], 1)
    inside = np.array([cv2.pointPolygonTest(hull.astype(np.float32), (float(x), float(y)), False) >= 0
                       for x, y in g])
    return g[inside]


OUTER_SHARE = 0.2   # the outermost matches held out by the extrapolation check


def _extrapolation_check(q: np.ndarray, r: np.ndarray, H: np.ndarray, scale_px: float, norm: tuple,
                         res_h: np.ndarray) -> Optional[str]:
    """Does the quadratic extrapolate at least as well as the homography? Both are fitted
    without the outermost ``OUTER_SHARE`` of the matches (distance from their median) and
    scored on them (capped Cauchy loss). None when it does, else the reason."""
    d = np.linalg.norm(q - np.median(q, axis=0), axis=1)
    outer = d >= np.quantile(d, 1.0 - OUTER_SHARE)
    inner = ~outer
    (cq, sq), (cr, sr) = norm
    B, T = _basis((q - cq) * sq), (r - cr) * sr
    w0 = _cauchy_weights(res_h, scale_px)
    try:
        a, _ = _irls(B[inner], T[inner], w0[inner], scale_px * sr, FOLD_ITERATIONS)
    except np.linalg.LinAlgError:
        return "quadratic fit failed without the outermost matches"
    res_q = np.linalg.norm(B[outer] @ a - T[outer], axis=1) / sr
    Hf = refine_homography(q[inner], r[inner], H, scale_px, iterations=FOLD_ITERATIONS)
    res_hh = np.linalg.norm(transform_points(Hf, q[outer]) - r[outer], axis=1)
    sq_, sh_ = _held_out_score(res_q, scale_px, "cauchy"), _held_out_score(res_hh, scale_px, "cauchy")
    if sq_ > sh_:
        return (f"quadratic extrapolates worse than the homography to the outermost matches "
                f"(held-out Cauchy loss {sq_:.3f} > {sh_:.3f})")
    return None


def _folds(n: int, k: int) -> np.ndarray:
    """Fold index of each of n items: a fixed interleaving (deterministic, no RNG state)."""
    return (np.arange(n) * 7919) % n % k if n >= k else np.arange(n) % max(k, 1)


def choose_transform(model: str, pq: np.ndarray, pr: np.ndarray, H: np.ndarray, scale_px: float,
                     query_wh: tuple[int, int], refer_wh: tuple[int, int], min_matches: int = 30,
                     auto_gain: float = 0.1, held_out_score: str = "cauchy",
                     refit_homography: bool = True, extrapolation: str = "overlap") -> TransformChoice:
    """The transform to return for a registered pair.

    Parameters
    ----------
    model : str
        ``homography`` (returns ``H``), ``quadratic`` (the quadratic when every guard passes and
        its held-out score is below the homography's) or ``auto`` (the quadratic only when that
        score is lower by at least the fraction ``auto_gain``).
    pq, pr : ndarray (M, 2)
        Final matches, query and reference original pixels.
    H : ndarray (3, 3)
        The registration's homography (query -> reference), the start and the fallback.
    scale_px : float
        Cauchy scale in reference pixels (the homography refinement's).
    query_wh, refer_wh : (int, int)
        Image sizes (w, h), for the overlap.
    min_matches : int
        Matches within ``CAUCHY_CUTOFF * scale_px`` of the homography needed for a quadratic.
    auto_gain : float
        ``auto``: the relative drop of the held-out score the quadratic must bring.
    held_out_score : str
        ``cauchy`` (default: mean capped Cauchy loss, what both fits minimise) or ``median``
        (median held-out residual).
    refit_homography : bool
        True (default): the homography is refitted without each fold too (Cauchy refinement
        from ``H``), so both models are scored on matches they did not see; False: the
        homography fitted to all matches is scored (a test biased towards the homography).
    extrapolation : str
        Where the quadratic may depart at most ``MAX_DEVIATION`` of the reference diagonal from
        the homography: ``overlap`` (a grid over the whole overlap, whose corners lie outside
        the round field of view, where no match can be), ``hull`` (a grid over the matches'
        convex hull; the configuration's default, docs/registration-models.md §7),
        ``held_out`` (instead: fitted without the outermost ``OUTER_SHARE`` of the matches, it
        must predict them as well as a homography does) or ``none``. The folding check
        covers the whole overlap in every case.

    Returns
    -------
    TransformChoice
    """
    if model not in MODELS:
        raise ValueError(f"transform.model must be one of {', '.join(MODELS)}, got {model!r}")
    if extrapolation not in EXTRAPOLATION:
        raise ValueError(f"extrapolation must be one of {', '.join(EXTRAPOLATION)}, got {extrapolation!r}")
    if held_out_score not in SCORE_NAMES:
        raise ValueError(f"held_out_score must be one of {', '.join(SCORE_NAMES)}, got {held_out_score!r}")
    hom = HomographyTransform(H)
    if model == "homography":
        return TransformChoice(hom, model)

    def fallback(reason: str, held_out: Optional[dict] = None) -> TransformChoice:
        return TransformChoice(hom, model, reason, held_out or {})

    pq, pr = np.asarray(pq, np.float64).reshape(-1, 2), np.asarray(pr, np.float64).reshape(-1, 2)
    res_h = np.linalg.norm(hom.apply(pq) - pr, axis=1)
    cand = res_h < CAUCHY_CUTOFF * scale_px
    n = int(cand.sum())
    if n < max(min_matches, 12):
        return fallback(f"only {n} matches within {CAUCHY_CUTOFF * scale_px:.1f} px of the homography; "
                        f"the quadratic needs {max(min_matches, 12)}")
    q, r = pq[cand], pr[cand]
    ev = np.linalg.eigvalsh(np.cov(q.T))
    spread = float(np.sqrt(max(ev[0], 0.0) / max(ev[1], 1e-12)))
    if spread < MIN_SPREAD_RATIO:
        return fallback(f"matches nearly collinear (spread ratio {spread:.3f} < {MIN_SPREAD_RATIO})")
    poly = overlap_polygon(hom.H, query_wh, refer_wh)
    overlap_area = float(cv2.contourArea(poly)) if len(poly) >= 3 else 0.0
    hull_area = float(cv2.contourArea(cv2.convexHull(r.astype(np.float32))))
    coverage = hull_area / overlap_area if overlap_area > 0 else 0.0
    if coverage < MIN_COVERAGE:
        return fallback(f"matches cover {100 * coverage:.0f} % of the overlap, at least "
                        f"{100 * MIN_COVERAGE:.0f} % needed")
    norm = (_normaliser(q), _normaliser(r))
    try:
        Q, cond = robust_quadratic(q, r, hom.H, scale_px, norm=norm)
    except np.linalg.LinAlgError as exc:
        return fallback(f"quadratic fit ill-conditioned ({exc})")
    if not (np.isfinite(Q.coeffs).all() and cond <= MAX_CONDITION):
        return fallback(f"quadratic fit ill-conditioned (condition number {cond:.3g} > {MAX_CONDITION:g})")
    # Extrapolation over the whole overlap, not only where the matches are.
    grid = _overlap_grid(hom.H, poly)
    if len(grid):
        if extrapolation in ("overlap", "hull"):
            where = grid if extrapolation == "overlap" else _hull_grid(q)
            dev = float(np.linalg.norm(Q.apply(where) - hom.apply(where), axis=1).max()) if len(where) else 0.0
            limit = MAX_DEVIATION * float(np.hypot(*refer_wh))
            if dev > limit:
                return fallback(f"quadratic departs {dev:.1f} px from the homography inside the "
                                f"{'overlap' if extrapolation == 'overlap' else 'matches hull'} "
                                f"(at most {limit:.1f} px allowed)")
        elif extrapolation == "held_out":
            reason = _extrapolation_check(q, r, hom.H, scale_px, norm, res_h[cand])
            if reason is not None:
                return fallback(reason)
        J = Q.jacobian(grid)
        det_q = J[:, 0, 0] * J[:, 1, 1] - J[:, 0, 1] * J[:, 1, 0]
        Hn = hom.H
        w = grid @ Hn[2, :2] + Hn[2, 2]
        det_h = np.linalg.det(Hn) / w ** 3
        ratio = det_q / det_h
        lo, hi = JACOBIAN_RATIO
        if not (np.all(ratio > lo) and np.all(ratio < hi)):
            return fallback(f"quadratic folds or stretches the overlap (local scale {ratio.min():.2f}.."
                            f"{ratio.max():.2f} of the homography's, {lo}..{hi} allowed)")
    # Held-out check (5 folds): each fold's matches scored by a quadratic and a homography
    # fitted without them, both by the capped Cauchy loss the fits minimise.
    # (benchmarks/transform_criteria.py compares this with the median and the unrefitted H.)
    folds = _folds(n, HELD_OUT_FOLDS)
    (cq, sq), (cr, sr) = norm
    B, T = _basis((q - cq) * sq), (r - cr) * sr
    w0 = _cauchy_weights(res_h[cand], scale_px)
    res_q = np.empty(n)
    res_hh = res_h[cand].copy()
    for f in range(HELD_OUT_FOLDS):
        test = folds == f
        if not test.any():
            continue
        try:
            a, _ = _irls(B[~test], T[~test], w0[~test], scale_px * sr, FOLD_ITERATIONS)
        except np.linalg.LinAlgError:
            return fallback("quadratic fit failed on a held-out fold")
        res_q[test] = np.linalg.norm(B[test] @ a - T[test], axis=1) / sr
        if refit_homography:
            Hf = refine_homography(q[~test], r[~test], hom.H, scale_px, iterations=FOLD_ITERATIONS)
            res_hh[test] = np.linalg.norm(transform_points(Hf, q[test]) - r[test], axis=1)
    held = {"homography": _held_out_score(res_hh, scale_px, held_out_score),
            "quadratic": _held_out_score(res_q, scale_px, held_out_score)}
    need = held["homography"] * (1.0 - (auto_gain if model == "auto" else 0.0))
    if not held["quadratic"] < need:
        what = "not below" if model == "quadratic" else f"not {100 * auto_gain:.0f} % below"
        unit = " px" if held_out_score == "median" else ""
        return fallback(f"quadratic's held-out {SCORE_NAMES[held_out_score]} {held['quadratic']:.3f}{unit} {what} the "
                        f"homography's {held['homography']:.3f}{unit}", held)
    return TransformChoice(Q, model, None, held)


SCORE_NAMES = {"median": "median residual", "cauchy": "Cauchy loss"}


def _held_out_score(res: np.ndarray, scale: float, kind: str) -> float:
    """Score of held-out residuals (lower is better): their median (px), or the mean Cauchy
    loss log(1 + (r / scale)^2), capped at the cutoff, which the fits themselves minimise."""
    if kind == "median":
        return float(np.median(res))
    r2 = np.minimum((res / scale) ** 2, CAUCHY_CUTOFF ** 2)
    return float(np.mean(np.log1p(r2)))


def residual_stats(t: Transform, pq: np.ndarray, pr: np.ndarray) -> dict:
    """Residuals of matches under a transform (reference pixels).

    Returns ``within_3px``, ``within_5px``, ``within_10px`` (shares of all matches) and
    ``median_px`` (median residual of the matches within 10 px; None when there are none).
    """
    pq, pr = np.asarray(pq, np.float64).reshape(-1, 2), np.asarray(pr, np.float64).reshape(-1, 2)
    if len(pq) == 0:
        return {"median_px": None, "within_3px": 0.0, "within_5px": 0.0, "within_10px": 0.0}
    d = np.linalg.norm(t.apply(pq) - pr, axis=1)
    d = np.where(np.isfinite(d), d, np.inf)
    close = d[d <= 10.0]
    return {"median_px": round(float(np.median(close)), 4) if len(close) else None,
            **{f"within_{k}px": round(float(np.mean(d <= k)), 6) for k in (3, 5, 10)}}
