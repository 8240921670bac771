"""Evidence that a registration is right, its confidence, and the registered / failed decision.

After the transform is chosen, :func:`assess` measures what separates a right result from a
wrong one (docs/confidence.md):

- support: final-pass matches within ``TOLERANCE_PX`` model pixels of the returned transform, and
  first-pass matches within the same distance (the first pass matched other keypoints of other
  images -- the unwarped query -- so a transform both passes support is an agreement of two
  matchings, while the matching trick's second pass alone can lock onto chance matches);
- spread: the convex hull of the supporting reference points over the overlap's area;
- plausibility for two fundus photographs: overlap, scale, anisotropy (shear) and perspective of
  the homography between the two model frames (the network input, so that image sizes cancel).

``confidence`` is a logistic model of the support and spread terms (coefficients in
``confidence_model.py``, written by ``benchmarks/confidence_calibration.py``): the calibrated
probability that the returned transform maps the photographs' points within ``RIGHT_PX`` model
pixels of the truth (mean control-point error; 6.5 model px = 25 px on FIRE's 2912 px images), as
estimated on the calibration sets with right and wrong results weighted equally. An implausible
transform has confidence 0.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from . import confidence_model
from .homography import transform_points
from .transform import overlap_polygon

if TYPE_CHECKING:  # the registrar imports this module
    from .registrar import RegistrationResult

__all__ = ["Evidence", "Assessment", "assess", "evidence", "confidence", "implausibility", "TOLERANCE_PX",
           "RIGHT_PX", "PLAUSIBLE"]

TOLERANCE_PX = 3.0   # model pixels: a match supports the transform when it lands this close
RIGHT_PX = 6.5       # model pixels: what "right" means for the calibrated probability (25 px at FIRE)
# Plausible homographies between two fundus photographs, in the model frames (both images
# resized to the network input): fundus cameras span 30-60 degree fields (a 2x scale between
# cameras, up to ~3x with a zoomed visit); shear and perspective stay small, since the retina
# is seen from inside the globe through the same optics (../shared/docs/retina-geometry.md).
PLAUSIBLE = {"min_overlap": 0.05,          # overlap / the reference's area
             "scale": (1 / 3, 3.0),         # sqrt(det) of the local linear part
             "max_anisotropy": 1.5,         # ratio of its singular values
             "max_perspective": 2.0}        # max/min projective scale over the overlap (as homography.degeneracy)


@dataclass
class Evidence:
    """What :func:`assess` measured (model pixels; shares in [0, 1]).

    Attributes
    ----------
    matches, first_matches : int
        Matches of the final and of the first pass.
    support, first_support : int
        Of those, the matches within ``TOLERANCE_PX`` of the returned transform.
    coverage : float
        Convex hull of the supporting reference points / the overlap's area.
    overlap : float
        Overlap area (the query's frame mapped by the homography, clipped) / the reference's area.
    scale, anisotropy, perspective : float
        Local linear part of the homography between model frames at the overlap's centroid:
        sqrt(det), ratio of singular values; max/min projective scale over the overlap's corners.
    residual_px : float or None
        Median distance of the supporting matches to the transform (model pixels).
    keypoints : int
        Keypoints of the poorer image (fewer in the query or the reference): how much structure
        there is to match at all (a smooth gradient has a few dozen, a fundus photograph hundreds).
    """

    matches: int
    support: int
    first_matches: int
    first_support: int
    coverage: float
    overlap: float
    scale: float
    anisotropy: float
    perspective: float
    residual_px: float | None
    keypoints: int = 0

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Assessment:
    """Evidence, the confidence computed from it, and why the transform is implausible (or None)."""

    evidence: Evidence
    confidence: float
    implausible: str | None

    def failure(self, min_confidence: float) -> str | None:
        """Why the result must be reported failed at ``min_confidence`` (None: registered)."""
        if self.implausible is not None:
            return f"implausible transform for two fundus photographs: {self.implausible}"
        if self.confidence < min_confidence:
            e = self.evidence
            return (f"confidence {self.confidence:.2f} < {min_confidence:g}: {e.support} of {e.matches} matches "
                    f"within {TOLERANCE_PX:g} model px of the transform, {e.first_support} of the first pass's "
                    f"{e.first_matches}, covering {100 * e.coverage:.0f} % of the overlap")
        return None

    def to_json(self) -> dict:
        return {"confidence": round(self.confidence, 4), "evidence": self.evidence.to_json(),
                "implausible": self.implausible}


def _model_homography(H: np.ndarray, query_hw: tuple, refer_hw: tuple, model_hw: tuple) -> np.ndarray:
    """``H`` (original pixels) between the two model frames."""
    (hm, wm), (hq, wq), (hr, wr) = model_hw, query_hw[:2], refer_hw[:2]
    M = np.diag([wm / wr, hm / hr, 1.0]) @ H @ np.diag([wq / wm, hq / hm, 1.0])
    return M / M[2, 2]


def evidence(res: "RegistrationResult", model_hw: tuple[int, int]) -> Evidence:
    """Measure a transformed result (``res.transform`` and ``res.H`` set); see :class:`Evidence`."""
    t = res.transform.transform
    px = res.refer.pixel_scale                       # reference pixels per model pixel
    st = res.network_final   # not the guided passes: their matches were found where the transform pointed
    q_final = res.stage_query_xy(st)[st.matches[:, 0]] if len(st.matches) else np.zeros((0, 2))
    r_final = res.refer.xy[st.matches[:, 1]] if len(st.matches) else np.zeros((0, 2))
    d = _distances(t, q_final, r_final) / px
    close = d <= TOLERANCE_PX
    m1 = res.first.matches
    d1 = _distances(t, res.query.xy[m1[:, 0]], res.refer.xy[m1[:, 1]]) / px if len(m1) else np.zeros(0)
    (hq, wq), (hr, wr) = res.query_size[:2], res.refer_size[:2]
    poly = overlap_polygon(res.H, (wq, hq), (wr, hr))
    area = float(cv2.contourArea(poly)) if len(poly) >= 3 else 0.0
    pts = r_final[close].astype(np.float32)
    hull = float(cv2.contourArea(cv2.convexHull(pts))) if len(pts) >= 3 else 0.0
    M = _model_homography(res.H, res.query_size, res.refer_size, model_hw)
    # the overlap polygon in the query's model frame (reference pixels -> model -> back through M)
    to_model = np.array([model_hw[1] / wr, model_hw[0] / hr])
    poly_q = transform_points(np.linalg.inv(M), poly.astype(np.float64) * to_model) if len(poly) else np.zeros((0, 2))
    scale, aniso, persp = _shape(M, poly_q)
    return Evidence(matches=int(len(d)), support=int(close.sum()), first_matches=int(len(d1)),
                    first_support=int((d1 <= TOLERANCE_PX).sum()),
                    coverage=min(hull / area, 1.0) if area > 0 else 0.0, overlap=area / float(hr * wr),
                    scale=scale, anisotropy=aniso, perspective=persp,
                    residual_px=float(np.median(d[close])) if close.any() else None,
                    keypoints=int(min(len(res.query.xy), len(res.refer.xy))))


def _distances(t, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    if len(q) == 0:
        return np.zeros(0)
    d = np.linalg.norm(t.apply(q) - r, axis=1)
    return np.where(np.isfinite(d), d, np.inf)


def _shape(M: np.ndarray, query_pts: np.ndarray) -> tuple[float, float, float]:
    """(scale, anisotropy, perspective) of a model-frame homography ``M`` over the overlap, given
    as (K, 2) query model-frame points (its polygon): the local linear part at their centroid, and
    the max/min projective scale over them (where the two photographs meet, not beyond)."""
    if len(query_pts) < 3:
        return 0.0, math.inf, math.inf
    cx, cy = query_pts.mean(axis=0)
    w = M[2, 0] * cx + M[2, 1] * cy + M[2, 2]
    u, v = transform_points(M, np.array([[cx, cy]]))[0]
    # Jacobian of the projective map at the centroid: (A - p h^T) / w, p the mapped point
    J = (M[:2, :2] - np.outer([u, v], M[2, :2])) / w
    s = np.linalg.svd(J, compute_uv=False)
    if not np.all(np.isfinite(s)) or s[1] <= 0 or np.linalg.det(J) <= 0:
        return 0.0, math.inf, math.inf
    ws = query_pts @ M[2, :2] + M[2, 2]
    persp = float(ws.max() / ws.min()) if ws.min() > 0 else math.inf
    return float(math.sqrt(s[0] * s[1])), float(s[0] / s[1]), persp


def implausibility(e: Evidence) -> str | None:
    """Why the transform cannot relate two fundus photographs (None when it can)."""
    p = PLAUSIBLE
    lo, hi = p["scale"]
    if e.overlap < p["min_overlap"]:
        return f"overlap {100 * e.overlap:.1f} % of the reference (at least {100 * p['min_overlap']:.0f} %)"
    if not lo <= e.scale <= hi:
        return f"scale {e.scale:.2f} between the model frames (allowed {lo:.2f}..{hi:.2f})"
    if e.anisotropy > p["max_anisotropy"]:
        return f"shear: anisotropy {e.anisotropy:.2f} (at most {p['max_anisotropy']:g})"
    if e.perspective > p["max_perspective"]:
        return (f"perspective: projective scale varies {e.perspective:.2f}x over the overlap "
                f"(at most {p['max_perspective']:g}x)")
    return None


def features(e: Evidence) -> np.ndarray:
    """The logistic model's inputs (F,) float64, in ``confidence_model.FEATURES`` order."""
    values = {"log_support": math.log1p(e.support), "log_first_support": math.log1p(e.first_support),
              "support_rate": e.support / e.matches if e.matches else 0.0,
              "first_support_rate": e.first_support / e.first_matches if e.first_matches else 0.0,
              "coverage": e.coverage, "log_keypoints": math.log1p(e.keypoints)}
    return np.array([values[name] for name in confidence_model.FEATURES], np.float64)


def confidence(e: Evidence) -> float:
    """Calibrated probability (see the module docstring) that the result is right; 0 if implausible."""
    if implausibility(e) is not None:
        return 0.0
    z = float(confidence_model.INTERCEPT + features(e) @ np.asarray(confidence_model.COEFFICIENTS))
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


def assess(res: "RegistrationResult", model_hw: tuple[int, int]) -> Assessment:
    """Evidence, confidence and plausibility of a result whose transform is chosen."""
    e = evidence(res, model_hw)
    return Assessment(e, confidence(e), implausibility(e))
