"""Synthetic FIRE-format registration sets with exact ground truth.

Each source fundus photograph is first placed in a ``size`` x ``size`` *canvas* (the fundus
scaled to fill it, black surround kept). Both visits of a pair are renderings of that canvas,
by one of two geometries (``geometry=``, ``--geometry``):

- ``eye`` (default, ``eye_model.py``): the canvas is the view of the unturned eye; each visit
  turns the eye about the centre of a spherical retina (gaze change) and photographs it from a
  nodal point inside the globe, with camera roll, zoom and shift. Parallax on the curved
  retina makes the mapping between visits something no homography explains, growing with the
  gaze change as on real FIRE pairs: the best homography through the true correspondences
  leaves ~1-2 px on S and A pairs and ~5-10 px on P pairs at 2912 px (parameters and why:
  ``EYE_MODEL``, ``EYE_VISITS``; docs/registration-models.md). Both point maps are closed
  form.
- ``homography`` (the generator's version-1 geometry): reference = canvas under a mild
  homography ``A``; query pixel ``y`` shows canvas point ``B^-1(y + d(y))``, ``B`` a homography
  and ``d`` a smooth low-frequency displacement field (a few pixels at 2912 px); the best
  homography leaves ~1 px.

Ground truth: ten canvas points ``p`` inside the fundus and inside the overlap of both visits
(on vessel-like pixels, spread by farthest-point sampling); ``x_ref`` and ``x_query`` are their
images under the pair's exact maps (the homography geometry inverts its field by fixed-point
iteration), checked to round-trip within 0.05 px. Both visits are then seen through the same
circular camera aperture (``Masks/mask.png``) and get photometric changes (gamma, brightness,
colour balance, illumination, noise); the query is rendered at lower resolution (downscale
by 0.5-0.8 and back) and saved with lower JPEG quality.

Categories: S large overlap (>= 75 %), small motion; P small overlap (20-50 %, big
gaze change / translation); A large overlap with strong appearance change (exudate-like and
haemorrhage-like blobs, blur, vignetting and illumination gradient, contrast change).
Overlap = fraction of the reference's visible fundus that the query also shows.

Everything is deterministic per seed: pair ``j`` of source ``i`` draws from
``numpy.random.default_rng([seed, i, j])``. ``synthetic.json`` records the seed, the geometry,
the sources and, per pair, the exact geometry (``to_dict``), the overlap, the photometric
parameters and the error floors (mean control-point error): the best homography fitted to
dense correspondences of the overlap (``best_homography_error_px``, also its matrix
``H_query_to_reference_best``), the least-squares homography through the ten control points
themselves (``cp_homography_error_px``, how the residual is measured on real FIRE pairs) and
the best quadratic transform on dense correspondences (``best_quadratic_error_px``).
``manifest.csv`` lists those per pair (one row each) for a quick look.

Command line: ``python -m superretina.fire.synth OUT --from IMAGE_OR_FOLDER ...`` (see --help).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np

from .fov import fov_mask
from .eye_model import EyeModel, EyePairGeometry, Visit
from ..homography import transform_points
from .protocol import SYNTH_MARKER, PairSpec, list_pairs
from ..progname import prog_name

GENERATOR_VERSION = 2     # 2: eye-model geometry (default), manifest.csv, floors per pair
GEOMETRIES = ("eye", "homography")
FIRE_SIZE = 2912
CANVAS_FILL = 0.97        # fundus extent / canvas side
APERTURE_FILL = 0.985     # camera aperture diameter / image side
ROUND_TRIP_TOL = 0.05     # px: required accuracy of the ground-truth inversion
N_CONTROL_POINTS = 10
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# Files of the shared data layout that are not photographs.
_SKIP_SUFFIXES = ("_vessels", "_fov", "_mask", "_manual1", "_1stho", "_2ndho")

# Geometry per category. rot_deg: +- rotation; scale: range; shift: +- translation per axis
# (fraction of the size); persp: +- keystone (relative change of w at the border);
# field_px: displacement amplitude range at 2912 px; overlap: accepted range.
REFERENCE_WARP = dict(rot_deg=3.0, scale=(0.97, 1.03), shift=0.02, persp=0.01)
CATEGORY_PARAMS = {
    "S": dict(rot_deg=10.0, scale=(0.92, 1.08), shift=0.08, persp=0.02, field_px=(3.0, 6.0),
              overlap=(0.75, 1.0)),
    "P": dict(rot_deg=10.0, scale=(0.92, 1.08), shift=None, persp=0.02, field_px=(4.0, 8.0),
              overlap=(0.20, 0.50), overlap_target=(0.25, 0.45)),
    "A": dict(rot_deg=8.0, scale=(0.94, 1.06), shift=0.06, persp=0.02, field_px=(3.0, 6.0),
              overlap=(0.75, 1.0)),
}

# Eye model (geometry "eye"). nodal_offset: nodal point in front of the sphere's centre, in globe
# radii (anatomy: ~5-6 mm of a ~12 mm radius; 0.4 puts the best-homography residual of the
# gaze changes below on FIRE's measured values: S ~1.3 px, P ~8 px at 2912 px); fov_deg: FIRE's
# 45-degree camera, spanning the fundus disc (CANVAS_FILL of the canvas).
EYE_MODEL = dict(nodal_offset=0.4, fov_deg=45.0)
# Visits. gaze: range of the eye's turn (degrees) or None = bisected to hit overlap_target;
# roll_deg: +- camera roll; zoom: range; shift: +- camera shift per axis (fraction of the size).
# S/A gaze 2-5 deg: overlap ~0.9-0.97, best homography ~1-2 px; P: the gaze (~30-40 deg) that
# gives 25-45 % overlap, best homography ~8 px (docs/registration-models.md, calibration table).
EYE_REFERENCE = dict(gaze=(0.0, 1.5), roll_deg=3.0, zoom=(0.97, 1.03), shift=0.02)
EYE_CATEGORY = {
    "S": dict(gaze=(2.0, 5.0), roll_deg=10.0, zoom=(0.92, 1.08), shift=0.04, overlap=(0.75, 1.0)),
    "P": dict(gaze=None, roll_deg=10.0, zoom=(0.92, 1.08), shift=0.02, overlap=(0.20, 0.50),
              overlap_target=(0.25, 0.45), max_gaze=60.0),
    "A": dict(gaze=(2.0, 5.0), roll_deg=8.0, zoom=(0.94, 1.06), shift=0.03, overlap=(0.75, 1.0)),
}


# --------------------------------------------------------------------------- geometry
def _h(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return transform_points(H, pts)


@dataclass
class SmoothField:
    """Low-frequency displacement field on query pixels.

    ``d_c(y) = sum_k coeffs[c, k] * sin(2 pi (freqs[c, k] . y) / size + phases[c, k])`` for
    the components c = x, y. ``freqs`` in cycles per image side, ``coeffs`` in pixels; the
    peak displacement per component is at most ``sum_k |coeffs[c, k]|``.
    """

    size: int
    freqs: np.ndarray    # (2, K, 2) float64
    phases: np.ndarray   # (2, K) float64
    coeffs: np.ndarray   # (2, K) float64, pixels

    @classmethod
    def random(cls, rng: np.random.Generator, size: int, amplitude_px: float, n_terms: int = 4,
               cycles: tuple = (0.4, 1.5)) -> "SmoothField":
        """Random field whose peak per component is at most ``amplitude_px``."""
        mag = rng.uniform(*cycles, size=(2, n_terms))
        ang = rng.uniform(0, 2 * np.pi, size=(2, n_terms))
        freqs = np.stack([mag * np.cos(ang), mag * np.sin(ang)], axis=-1)
        phases = rng.uniform(0, 2 * np.pi, size=(2, n_terms))
        a = rng.normal(size=(2, n_terms))
        coeffs = amplitude_px * a / np.abs(a).sum(axis=1, keepdims=True)
        return cls(int(size), freqs, phases, coeffs)

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        """Displacement (N, 2) float64 at points (N, 2)."""
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        w = 2 * np.pi / self.size
        out = np.empty_like(pts)
        for c in range(2):
            arg = w * (pts @ self.freqs[c].T) + self.phases[c]          # (N, K)
            out[:, c] = np.sin(arg) @ self.coeffs[c]
        return out

    def grid(self, width: int, height: int, y0: int = 0, y1: Optional[int] = None):
        """Displacement on the pixel grid rows ``y0:y1``: (dx, dy), each (rows, width) float64.

        Uses sin(a + b) = sin a cos b + cos a sin b with separable a(x), b(y): the same values
        as ``__call__`` up to rounding (1e-13 px), at the cost of outer products.
        """
        y1 = height if y1 is None else y1
        xs = np.arange(width, dtype=np.float64)
        ys = np.arange(y0, y1, dtype=np.float64)
        w = 2 * np.pi / self.size
        comps = []
        for c in range(2):
            acc = np.zeros((len(ys), width))
            for k in range(self.freqs.shape[1]):
                ax = w * self.freqs[c, k, 0] * xs
                by = w * self.freqs[c, k, 1] * ys + self.phases[c, k]
                a = self.coeffs[c, k]
                acc += np.outer(a * np.cos(by), np.sin(ax))
                acc += np.outer(a * np.sin(by), np.cos(ax))
            comps.append(acc)
        return comps[0], comps[1]

    def to_dict(self) -> dict:
        return {"size": self.size, "freqs": self.freqs.tolist(), "phases": self.phases.tolist(),
                "coeffs": self.coeffs.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "SmoothField":
        return cls(int(d["size"]), np.asarray(d["freqs"], np.float64),
                   np.asarray(d["phases"], np.float64), np.asarray(d["coeffs"], np.float64))


@dataclass
class PairGeometry:
    """Exact geometry of one synthetic pair (all coordinates in pixels, centres at integers).

    Attributes
    ----------
    size : int
        Side of the canvas and of both images.
    A : ndarray (3, 3)
        Canvas -> reference homography.
    B : ndarray (3, 3)
        Canvas -> query homography, before the non-rigid field.
    field : SmoothField
        Query pixel ``y`` shows canvas point ``B^-1 (y + field(y))``.
    """

    size: int
    A: np.ndarray
    B: np.ndarray
    field: SmoothField

    # -- point maps
    def canvas_to_reference(self, pts: np.ndarray) -> np.ndarray:
        return _h(self.A, pts)

    def reference_to_canvas(self, pts: np.ndarray) -> np.ndarray:
        return _h(np.linalg.inv(self.A), pts)

    def query_to_canvas(self, pts: np.ndarray) -> np.ndarray:
        """The rendering map: query pixels (N, 2) -> canvas points (N, 2)."""
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        return _h(np.linalg.inv(self.B), pts + self.field(pts))

    def canvas_to_query(self, pts: np.ndarray, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
        """Exact inverse of :meth:`query_to_canvas` by fixed-point iteration.

        Solves ``y + d(y) = u`` with ``u = B p`` by ``y <- u - d(y)``; converges because the
        field's gradient is far below 1 (a few pixels over a wavelength of ~size).
        """
        u = _h(self.B, pts)
        y = u.copy()
        for _ in range(max_iter):
            y_new = u - self.field(y)
            step = np.max(np.abs(y_new - y)) if len(y) else 0.0
            y = y_new
            if step < tol:
                break
        return y

    def query_to_reference(self, pts: np.ndarray) -> np.ndarray:
        """The true correspondence: query pixels (N, 2) -> reference pixels (N, 2)."""
        return self.canvas_to_reference(self.query_to_canvas(pts))

    def true_homography(self) -> np.ndarray:
        """Query -> reference homography without the field: ``A B^-1`` (normalised)."""
        H = self.A @ np.linalg.inv(self.B)
        return H / H[2, 2]

    # -- rendering
    def query_maps(self, image_to_canvas: np.ndarray, y0: int = 0, y1: Optional[int] = None):
        """cv2.remap maps (float32) rendering query rows ``y0:y1`` from an image whose pixels
        map to the canvas by ``image_to_canvas``."""
        y1 = self.size if y1 is None else y1
        dx, dy = self.field.grid(self.size, self.size, y0, y1)
        ux = dx + np.arange(self.size, dtype=np.float64)[None, :]
        uy = dy + np.arange(y0, y1, dtype=np.float64)[:, None]
        M = np.linalg.inv(image_to_canvas) @ np.linalg.inv(self.B)   # u -> image pixels
        w = M[2, 0] * ux + M[2, 1] * uy + M[2, 2]
        mx = (M[0, 0] * ux + M[0, 1] * uy + M[0, 2]) / w
        my = (M[1, 0] * ux + M[1, 1] * uy + M[1, 2]) / w
        return mx.astype(np.float32), my.astype(np.float32)

    def render_reference(self, image: np.ndarray, image_to_canvas: np.ndarray = None,
                         interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Reference view (size x size) of an image placed on the canvas by ``image_to_canvas``
        (identity: the image is the canvas)."""
        S = np.eye(3) if image_to_canvas is None else np.asarray(image_to_canvas, np.float64)
        return cv2.warpPerspective(image, self.A @ S, (self.size, self.size), flags=interpolation,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def render_query(self, image: np.ndarray, image_to_canvas: np.ndarray = None,
                     interpolation: int = cv2.INTER_LINEAR, block_rows: int = 512) -> np.ndarray:
        """Query view (size x size), non-rigid field included, rendered in row blocks to bound
        memory at 2912 px."""
        S = np.eye(3) if image_to_canvas is None else np.asarray(image_to_canvas, np.float64)
        out = np.zeros((self.size, self.size) + image.shape[2:], image.dtype)
        for y0 in range(0, self.size, block_rows):
            y1 = min(self.size, y0 + block_rows)
            mx, my = self.query_maps(S, y0, y1)
            out[y0:y1] = cv2.remap(image, mx, my, interpolation, borderMode=cv2.BORDER_CONSTANT,
                                   borderValue=0)
        return out

    def to_dict(self) -> dict:
        return {"model": "homography", "size": self.size, "A_canvas_to_reference": self.A.tolist(),
                "B_canvas_to_query": self.B.tolist(), "field": self.field.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "PairGeometry":
        return cls(int(d["size"]), np.asarray(d["A_canvas_to_reference"], np.float64),
                   np.asarray(d["B_canvas_to_query"], np.float64), SmoothField.from_dict(d["field"]))


def geometry_from_dict(d: dict):
    """A pair geometry read back from synthetic.json (``EyePairGeometry`` or ``PairGeometry``)."""
    return EyePairGeometry.from_dict(d) if d.get("model") == "eye" else PairGeometry.from_dict(d)


def random_homography(rng: np.random.Generator, size: int, rot_deg: float, scale: tuple,
                      shift: Optional[float], persp: float, translation: Optional[np.ndarray] = None
                      ) -> np.ndarray:
    """Similarity about the image centre plus a small keystone, then a translation.

    ``translation`` (pixels) overrides the random ``shift`` (fraction of the size per axis).
    """
    c = (size - 1) / 2.0
    th = math.radians(rng.uniform(-rot_deg, rot_deg))
    s = rng.uniform(*scale)
    p = rng.uniform(-persp, persp, size=2) / (size / 2.0)
    t = (np.asarray(translation, np.float64) if translation is not None
         else rng.uniform(-shift, shift, size=2) * size)
    to_centre = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1.0]])
    rs = np.array([[s * math.cos(th), -s * math.sin(th), 0], [s * math.sin(th), s * math.cos(th), 0],
                   [0, 0, 1.0]])
    keystone = np.array([[1, 0, 0], [0, 1, 0], [p[0], p[1], 1.0]])
    back = np.array([[1, 0, c + t[0]], [0, 1, c + t[1]], [0, 0, 1.0]])
    H = back @ keystone @ rs @ to_centre
    return H / H[2, 2]


def aperture_mask(size: int) -> np.ndarray:
    """Camera aperture of both visits: a centred disc (float32 in [0, 1], 1-px soft edge)."""
    c = (size - 1) / 2.0
    r = APERTURE_FILL * size / 2.0
    t = (np.arange(size, dtype=np.float32) - np.float32(c)) ** 2
    d = np.sqrt(t[:, None] + t[None, :])
    return np.clip(np.float32(r + 0.5) - d, 0.0, 1.0)


def _in_aperture(pts: np.ndarray, size: int, margin: float = 0.0) -> np.ndarray:
    c = (size - 1) / 2.0
    r = APERTURE_FILL * size / 2.0 - margin
    d = np.hypot(pts[:, 0] - c, pts[:, 1] - c)
    return np.isfinite(d) & (d < r)


@dataclass
class Placement:
    """A source photograph and where it sits on the canvas."""

    image: np.ndarray            # HxWx3 uint8 BGR
    fov: np.ndarray              # HxW bool
    image_to_canvas: np.ndarray  # 3x3

    def canvas_fov(self, pts: np.ndarray) -> np.ndarray:
        """Whether canvas points (N, 2) fall inside the source's fundus (nearest pixel)."""
        q = _h(np.linalg.inv(self.image_to_canvas), pts)
        h, w = self.fov.shape
        ok = np.all(np.isfinite(q), axis=1)
        ix = np.where(ok, np.rint(q[:, 0]), -1).astype(np.int64)
        iy = np.where(ok, np.rint(q[:, 1]), -1).astype(np.int64)
        ok &= (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        out = np.zeros(len(q), bool)
        out[ok] = self.fov[iy[ok], ix[ok]]
        return out


def place_on_canvas(image: np.ndarray, size: int) -> Placement:
    """Scale the source's fundus to fill the canvas (``CANVAS_FILL`` of the side), centred."""
    fov = fov_mask(image)
    ys, xs = np.nonzero(fov)
    if len(xs) < 100:
        raise ValueError("no fundus (bright disc) found in the source image")
    x0, x1, y0, y1 = xs.min() - 0.5, xs.max() + 0.5, ys.min() - 0.5, ys.max() + 0.5
    s = CANVAS_FILL * size / max(x1 - x0, y1 - y0)
    c = (size - 1) / 2.0
    S = np.array([[s, 0, c - s * (x0 + x1) / 2], [0, s, c - s * (y0 + y1) / 2], [0, 0, 1.0]])
    return Placement(image=image, fov=fov, image_to_canvas=S)


def _canvas_grid(size: int, n: int) -> np.ndarray:
    g = (np.arange(n) + 0.5) * size / n - 0.5
    xx, yy = np.meshgrid(g, g)
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def visibility(geom: PairGeometry, placement: Placement, canvas_pts: np.ndarray, margin: float = 0.0):
    """For canvas points: (in fundus and seen by the reference, ... and seen by the query)."""
    fov = placement.canvas_fov(canvas_pts)
    in_ref = fov & _in_aperture(geom.canvas_to_reference(canvas_pts), geom.size, margin)
    in_both = in_ref & _in_aperture(geom.canvas_to_query(canvas_pts), geom.size, margin)
    return in_ref, in_both


def overlap_fraction(geom: PairGeometry, placement: Placement, n: int = 128) -> float:
    """Fraction of the reference's visible fundus that the query also shows (canvas grid)."""
    in_ref, in_both = visibility(geom, placement, _canvas_grid(geom.size, n))
    return float(in_both.sum() / max(1, in_ref.sum()))


def _random_visit(rng: np.random.Generator, size: int, prm: dict, gaze_deg: Optional[float] = None) -> Visit:
    """A visit drawn from ``prm`` (an ``EYE_REFERENCE`` / ``EYE_CATEGORY`` entry)."""
    gaze = rng.uniform(*prm["gaze"]) if gaze_deg is None else gaze_deg
    return Visit(float(gaze), float(rng.uniform(0.0, 360.0)), float(rng.uniform(-prm["roll_deg"], prm["roll_deg"])),
                 float(rng.uniform(*prm["zoom"])), tuple(float(v) for v in rng.uniform(-1, 1, 2) * prm["shift"] * size))


def sample_eye_geometry(rng: np.random.Generator, category: str, size: int, placement: Placement,
                        max_tries: int = 50) -> tuple[EyePairGeometry, float]:
    """Draw an eye-model pair of the category whose overlap is in the category's range.

    P pairs: the query's roll/zoom/shift and gaze direction are drawn, then the gaze angle is
    bisected to hit a target overlap. Returns the geometry and its overlap fraction.
    """
    prm = EYE_CATEGORY[category]
    lo, hi = prm["overlap"]
    eye = EyeModel(int(size), EYE_MODEL["nodal_offset"], EYE_MODEL["fov_deg"], CANVAS_FILL * size)
    for _ in range(max_tries):
        ref = _random_visit(rng, size, EYE_REFERENCE)
        if prm["gaze"] is not None:
            geom = EyePairGeometry(eye, ref, _random_visit(rng, size, prm))
        else:
            target = rng.uniform(*prm["overlap_target"])
            qv = _random_visit(rng, size, {**prm, "gaze": (0.0, 0.0)})

            def make(g: float) -> EyePairGeometry:
                return EyePairGeometry(eye, ref, Visit(g, qv.gaze_direction_deg, qv.roll_deg, qv.zoom, qv.shift))

            geom = _bisect_overlap(make, placement, target, prm["max_gaze"], 20)
        ov = overlap_fraction(geom, placement)
        if lo <= ov <= hi:
            return geom, ov
    raise RuntimeError(f"could not draw a category-{category} geometry with overlap in "
                       f"[{lo}, {hi}] after {max_tries} tries (is the source's fundus tiny?)")


def _bisect_overlap(make, placement: Placement, target: float, upper: float, steps: int):
    """``make(m)`` for the m in [0, upper] whose overlap is ``target`` (overlap falls as m grows)."""
    a, b = 0.0, upper
    for _ in range(steps):
        mid = (a + b) / 2
        if overlap_fraction(make(mid), placement, n=64) > target:
            a = mid
        else:
            b = mid
    return make((a + b) / 2)


def sample_geometry(rng: np.random.Generator, category: str, size: int, placement: Placement,
                    max_tries: int = 50) -> tuple[PairGeometry, float]:
    """Draw a homography-geometry pair of the category whose overlap is in the category's range.

    Returns the geometry and its overlap fraction.
    """
    prm = CATEGORY_PARAMS[category]
    lo, hi = prm["overlap"]
    for _ in range(max_tries):
        A = random_homography(rng, size, **REFERENCE_WARP)
        amp = rng.uniform(*prm["field_px"]) * size / FIRE_SIZE
        field = SmoothField.random(rng, size, amp)
        if prm["shift"] is not None:
            B = random_homography(rng, size, prm["rot_deg"], prm["scale"], prm["shift"], prm["persp"])
            geom = PairGeometry(size, A, B, field)
        else:
            # Small overlap: fix the rotation/scale/keystone draw, then bisect the translation
            # length along a random direction to hit a target overlap.
            target = rng.uniform(*prm["overlap_target"])
            direction = rng.uniform(0, 2 * np.pi)
            state = rng.bit_generator.state
            u = np.array([math.cos(direction), math.sin(direction)])

            def make(m: float) -> PairGeometry:
                rng.bit_generator.state = state   # same rotation/scale/keystone for every m
                B_ = random_homography(rng, size, prm["rot_deg"], prm["scale"], 0.0, prm["persp"],
                                       translation=u * m * size)
                return PairGeometry(size, A, B_, field)

            geom = _bisect_overlap(make, placement, target, 1.2, 24)
        ov = overlap_fraction(geom, placement)
        if lo <= ov <= hi:
            return geom, ov
    raise RuntimeError(f"could not draw a category-{category} geometry with overlap in "
                       f"[{lo}, {hi}] after {max_tries} tries (is the source's fundus tiny?)")


# --------------------------------------------------------------------------- control points
def choose_control_points(rng: np.random.Generator, geom: PairGeometry, placement: Placement,
                          reference_clean: np.ndarray, n: int = N_CONTROL_POINTS,
                          work: int = 512, mask_work: int = 192) -> np.ndarray:
    """Pick ``n`` reference points on vessel-like pixels of the overlap, well spread.

    Vesselness = black top-hat of the green channel (vessels are thin and dark) on a
    ``work``-px copy of the clean reference. The overlap (fundus seen by both visits, exact
    maps, 4 % margin from the apertures) is computed on a ``mask_work``-px grid and shrunk by
    another 4 %. Candidates are the top 15 % vesselness pixels inside it; farthest-point
    sampling from a random start spreads the ``n`` points; each gets a random sub-pixel offset
    within its working pixel.

    Returns reference points (n, 2) float64, full-resolution pixels.
    """
    size = geom.size
    w = min(size, work)
    wm = min(w, mask_work)
    g = cv2.resize(reference_clean[:, :, 1] if reference_clean.ndim == 3 else reference_clean,
                   (w, w), interpolation=cv2.INTER_AREA)
    k = max(5, int(round(0.03 * w)) | 1)
    vessel = cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    # Overlap mask on a coarse grid: cheap tests first, the exact inverse map only where needed.
    grid = _canvas_grid(size, wm)          # reference pixels of the coarse grid
    both = np.zeros(len(grid), bool)
    margin = 0.04 * size
    pre = _in_aperture(grid, size, margin)
    canvas = geom.reference_to_canvas(grid[pre])
    ok = placement.canvas_fov(canvas)
    ok[ok] = _in_aperture(geom.canvas_to_query(canvas[ok]), size, margin)
    both[np.flatnonzero(pre)[ok]] = True
    both = both.reshape(wm, wm).astype(np.uint8)
    er = max(1, int(round(0.04 * wm)))
    mask = cv2.erode(both, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * er + 1, 2 * er + 1)))
    if mask.sum() * (w / wm) ** 2 < 4 * n:
        mask = both
    mask = cv2.resize(mask, (w, w), interpolation=cv2.INTER_NEAREST)
    if mask.sum() < n:
        raise RuntimeError("overlap too small to place the control points")
    idx = np.flatnonzero(mask.ravel())
    v = vessel.ravel()[idx].astype(np.float64)
    cand = idx[v >= np.percentile(v, 85)] if len(idx) > 20 * n else idx
    pts = np.stack([cand % w, cand // w], axis=1).astype(np.float64)
    chosen = [int(rng.integers(len(pts)))]
    dmin = np.hypot(*(pts - pts[chosen[0]]).T)
    for _ in range(n - 1):
        j = int(np.argmax(dmin))
        chosen.append(j)
        dmin = np.minimum(dmin, np.hypot(*(pts - pts[j]).T))
    sub = pts[chosen] + rng.uniform(0.0, 1.0, size=(n, 2))   # anywhere inside the working pixel
    return sub * (size / w) - 0.5


def ground_truth(geom: PairGeometry, ref_pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canvas and query positions of reference points, with the round-trip check.

    Returns (canvas_pts, query_pts), each (N, 2) float64.
    """
    canvas = geom.reference_to_canvas(ref_pts)
    query = geom.canvas_to_query(canvas)
    back = geom.query_to_canvas(query)
    err = float(np.max(np.hypot(*(back - canvas).T)))
    if not err < ROUND_TRIP_TOL:
        raise RuntimeError(f"ground-truth inversion did not round-trip: {err:.3g} px")
    return canvas, query


def homography_floors(geom, placement: Placement, ref_pts: np.ndarray, query_pts: np.ndarray) -> dict:
    """Error floors of a pair (mean control-point error, px) from its exact correspondences.

    ``best_homography_error_px``: the least-squares homography through dense correspondences of
    the overlap (its matrix: ``H_query_to_reference_best``), i.e. what a perfect homography
    method still makes; ``cp_homography_error_px``: the least-squares homography through the ten
    control points themselves (how real FIRE pairs are measured); ``best_quadratic_error_px``:
    the least-squares quadratic on the dense correspondences; ``true_homography_error_px``: the
    generating homography ``A B^-1`` (homography geometry only, else None).
    """
    from ..transform import fit_quadratic   # the registration's own quadratic

    canvas = _canvas_grid(geom.size, 48)
    _, both = visibility(geom, placement, canvas)
    c = canvas[both]
    dq, dr = geom.canvas_to_query(c), geom.canvas_to_reference(c)
    H_fit, _ = cv2.findHomography(dq, dr, 0)
    H_cp, _ = cv2.findHomography(query_pts, ref_pts, 0)

    def mean_err(mapped):
        return float(np.mean(np.hypot(*(mapped - ref_pts).T)))

    try:
        Q, _ = fit_quadratic(dq, dr)
        quad = mean_err(Q.apply(query_pts))
    except np.linalg.LinAlgError:
        quad = None
    return {"true_homography_error_px": (mean_err(_h(geom.true_homography(), query_pts))
                                         if isinstance(geom, PairGeometry) else None),
            "best_homography_error_px": mean_err(_h(H_fit, query_pts)) if H_fit is not None else None,
            "cp_homography_error_px": mean_err(_h(H_cp, query_pts)) if H_cp is not None else None,
            "best_quadratic_error_px": quad,
            "H_query_to_reference_best": None if H_fit is None else (H_fit / H_fit[2, 2]).tolist()}


# --------------------------------------------------------------------------- appearance
def sample_appearance(rng: np.random.Generator, category: str, is_query: bool, size: int) -> dict:
    """Photometric parameters of one visit (JSON-ready)."""
    strong = category == "A"
    scale = size / FIRE_SIZE
    p = {
        "gains_bgr": rng.uniform(0.9, 1.1, size=3).tolist(),
        "brightness": float(rng.uniform(0.85, 1.15)),
        "gamma": float(rng.uniform(0.8, 1.25)),
        "contrast": float(rng.uniform(0.6, 0.8) if strong and is_query else rng.uniform(0.92, 1.08)),
        "vignette": float(rng.uniform(0.3, 0.55) if strong else rng.uniform(0.0, 0.15)),
        "gradient": float(rng.uniform(0.15, 0.35) if strong else rng.uniform(0.0, 0.08)),
        "gradient_angle": float(rng.uniform(0, 2 * np.pi)),
        "blur_sigma": float(rng.uniform(2.0, 5.0) * scale if strong and is_query else 0.0),
        "noise_sigma": float(rng.uniform(1.5, 4.0)),
        "resolution_scale": float(rng.uniform(0.5, 0.8) if is_query else 1.0),
        "jpeg_quality": int(rng.integers(72, 91) if is_query else 95),
        "n_exudates": int(rng.integers(8, 21) if strong and is_query else
                          (rng.integers(0, 6) if strong else 0)),
        "n_haemorrhages": int(rng.integers(4, 13) if strong and is_query else
                              (rng.integers(0, 4) if strong else 0)),
        # Each visit has its own fine texture (sensor noise, speckle, focus, choroidal pattern
        # under other light): the photograph's detail below this scale is replaced by an
        # independent band-pass texture, so only structure such as vessels is shared.
        "texture_sigma": float(rng.uniform(2.0, 3.5) * scale),
        "texture_amplitude": float(rng.uniform(0.04, 0.08)),
    }
    return p


def visit_texture(rng: np.random.Generator, img: np.ndarray, sigma: float, amplitude: float) -> np.ndarray:
    """Replace detail finer than ``sigma`` px by an independent texture of relative ``amplitude``.

    img: (H, W, 3) float32; returns float32.  The texture is band-pass noise (scales ~sigma to
    4·sigma), multiplicative so it follows the local brightness.
    """
    if sigma < 0.3:
        return img
    smooth = cv2.GaussianBlur(img, (0, 0), sigma)
    noise = rng.standard_normal(img.shape[:2], dtype=np.float32)
    band = cv2.GaussianBlur(noise, (0, 0), sigma) - cv2.GaussianBlur(noise, (0, 0), 4 * sigma)
    band *= np.float32(amplitude) / max(float(band.std()), 1e-6)
    return smooth * (1.0 + band)[..., None]


def _draw_lesions(rng: np.random.Generator, img: np.ndarray, visible: np.ndarray, prm: dict) -> list:
    """Blend exudate-like (bright yellow-white, small, clustered) and haemorrhage-like (dark
    red, larger) blobs into ``img`` (float32 BGR, in place) at visible pixels."""
    size = img.shape[0]
    idx = np.flatnonzero(visible.ravel() > 0.5)
    lesions = []
    if len(idx) == 0:
        return lesions
    specs = [("exudate", prm["n_exudates"], (70.0, 190.0, 235.0)),
             ("haemorrhage", prm["n_haemorrhages"], (15.0, 22.0, 75.0))]
    for kind, count, colour in specs:
        layer = np.zeros((size, size), np.float32)
        for _ in range(count):
            k = int(idx[rng.integers(len(idx))])
            cy, cx = divmod(k, size)
            strength = float(rng.uniform(0.5, 0.9))
            if kind == "exudate":
                blobs = [(cx + rng.normal(0, 0.01 * size), cy + rng.normal(0, 0.01 * size),
                          rng.uniform(0.002, 0.006) * size) for _ in range(int(rng.integers(1, 6)))]
                ratio = 1.0
            else:
                blobs = [(cx, cy, rng.uniform(0.006, 0.02) * size)]
                ratio = float(rng.uniform(0.4, 1.0))
            angle = float(rng.uniform(0, 180))
            for bx, by, r in blobs:
                axes = (max(1, int(round(r))), max(1, int(round(r * ratio))))
                cv2.ellipse(layer, (int(round(bx)), int(round(by))), axes, angle, 0, 360, strength, -1,
                            cv2.LINE_AA)
                lesions.append({"kind": kind, "x": float(bx), "y": float(by), "radius": float(r),
                                "ratio": ratio, "angle": angle, "strength": strength})
        if count:
            sigma = max(0.5, 0.0015 * size)
            layer = cv2.GaussianBlur(layer, (0, 0), sigma) * visible
            col = np.asarray(colour, np.float32)
            img *= (1.0 - layer)[..., None]
            img += layer[..., None] * col
    return lesions


def apply_appearance(rng: np.random.Generator, img_u8: np.ndarray, visible: np.ndarray, prm: dict
                     ) -> tuple[np.ndarray, list]:
    """Photometric and resolution changes of one visit; returns (uint8 BGR, lesions drawn)."""
    size = img_u8.shape[0]
    img = img_u8.astype(np.float32)
    img = visit_texture(rng, img, prm.get("texture_sigma", 0.0), prm.get("texture_amplitude", 0.0))
    lesions = _draw_lesions(rng, img, visible, prm)
    # Illumination: radial fall-off (vignetting) times a linear gradient; smooth, so it is
    # computed on a coarse grid and enlarged.
    n = min(size, 256)
    t = (np.arange(n, dtype=np.float64) + 0.5) / n * 2.0 - 1.0          # -1..1 across the image
    xx, yy = t[None, :], t[:, None]
    th = prm["gradient_angle"]
    illum = (1.0 - prm["vignette"] * (xx ** 2 + yy ** 2)) * (
        1.0 + prm["gradient"] * (xx * math.cos(th) + yy * math.sin(th)))
    illum = np.clip(illum, 0.05, None) * prm["brightness"]
    illum = cv2.resize(illum.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    img *= illum[..., None]
    img *= np.asarray(prm["gains_bgr"], np.float32)
    inside = (visible > 0.5).astype(np.uint8)
    if inside.any():
        mean = np.asarray(cv2.mean(img, mask=inside)[:3], np.float32)
        img = mean + (img - mean) * np.float32(prm["contrast"])
    # Gamma through a 4096-level table (a float power over 3 x 8.5 M pixels is slow).
    table = (255.0 * np.linspace(0.0, 1.0, 4096) ** prm["gamma"]).astype(np.float32)
    img = table[np.rint(np.clip(img, 0, 255) * np.float32(4095 / 255)).astype(np.uint16)]
    if prm["blur_sigma"] > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), prm["blur_sigma"])
    s = prm["resolution_scale"]
    if s < 1.0:
        small = max(8, int(round(size * s)))
        img = cv2.resize(cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                         interpolation=cv2.INTER_LINEAR)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(prm["noise_sigma"])
    img *= visible[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), lesions


def _write_jpeg(path: Path, img: np.ndarray, quality: int) -> None:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


# --------------------------------------------------------------------------- one pair / set
def make_pair(rng: np.random.Generator, placement: Placement, category: str, size: int,
              geometry: str = "eye") -> dict:
    """Render one pair. Returns dict with 'reference', 'query' (uint8 BGR), 'ref_pts',
    'query_pts' (10, 2) and 'record' (JSON-ready parameters)."""
    if geometry == "eye":
        geom, overlap = sample_eye_geometry(rng, category, size, placement)
    elif geometry == "homography":
        geom, overlap = sample_geometry(rng, category, size, placement)
    else:
        raise ValueError(f"geometry must be one of {', '.join(GEOMETRIES)}, got {geometry!r}")
    S = placement.image_to_canvas
    aperture = aperture_mask(size)
    fov_u8 = placement.fov.astype(np.uint8) * 255
    # Visit by visit: the eye geometry caches one visit's remap maps at a time.
    ref_clean = geom.render_reference(placement.image, S, cv2.INTER_CUBIC)
    ref_vis = (geom.render_reference(fov_u8, S) >= 128).astype(np.float32) * aperture
    qry_clean = geom.render_query(placement.image, S, cv2.INTER_CUBIC)
    qry_vis = (geom.render_query(fov_u8, S) >= 128).astype(np.float32) * aperture

    ref_pts = choose_control_points(rng, geom, placement, ref_clean)
    canvas_pts, query_pts = ground_truth(geom, ref_pts)

    ref_prm = sample_appearance(rng, category, False, size)
    qry_prm = sample_appearance(rng, category, True, size)
    reference, ref_lesions = apply_appearance(rng, ref_clean, ref_vis, ref_prm)
    query, qry_lesions = apply_appearance(rng, qry_clean, qry_vis, qry_prm)
    record = {
        "category": category,
        "overlap": overlap,
        "geometry": geom.to_dict(),
        "canvas_points": canvas_pts.tolist(),
        **homography_floors(geom, placement, ref_pts, query_pts),
        "reference_appearance": {**ref_prm, "lesions": ref_lesions},
        "query_appearance": {**qry_prm, "lesions": qry_lesions},
    }
    if isinstance(geom, PairGeometry):
        record["H_query_to_reference_true"] = geom.true_homography().tolist()
        record["field_peak_px"] = float(np.abs(geom.field.coeffs).sum(axis=1).max())
    else:
        rel = geom.query.rotation @ geom.reference.rotation.T     # eye turn between the visits
        record["gaze_change_deg"] = float(np.degrees(np.arccos(np.clip((np.trace(rel) - 1) / 2, -1, 1))))
    return {"reference": reference, "query": query, "ref_pts": ref_pts, "query_pts": query_pts,
            "record": record}


SourceLike = Union[str, Path, np.ndarray]


def load_source(src: SourceLike) -> tuple[str, np.ndarray]:
    """(name, BGR uint8 image) of a source: a path, ``'skimage:retina'`` or an array."""
    if isinstance(src, np.ndarray):
        img = src
        name = "<array>"
    elif str(src) == "skimage:retina":
        from skimage import data  # optional: only for this built-in source
        img = cv2.cvtColor(data.retina(), cv2.COLOR_RGB2BGR)
        name = "skimage:retina"
    else:
        path = Path(src)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: source image not found")
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{path}: not a readable image")
        name = str(path)
    img = np.asarray(img)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name}: expected a BGR uint8 image, got {img.dtype} {img.shape}")
    return name, np.ascontiguousarray(img)


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    parts = [out_dir / "Images", out_dir / "Ground Truth", out_dir / "Masks", out_dir / SYNTH_MARKER,
             out_dir / "manifest.csv"]
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir}: not empty (pass overwrite=True / --overwrite to replace "
                                  "a generated set)")
        for p in parts:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    for p in parts[:3]:
        p.mkdir(parents=True, exist_ok=True)


def make_synthetic_set(out_dir: Union[str, Path], sources: Sequence[SourceLike], pairs_per_image: int = 3,
                       size: int = FIRE_SIZE, seed: int = 0, categories: Sequence[str] = ("S", "P", "A"),
                       overwrite: bool = False, progress: bool = True, geometry: str = "eye") -> list[PairSpec]:
    """Write a FIRE-layout synthetic set.

    Parameters
    ----------
    out_dir : str or Path
        Created if needed; must be empty unless ``overwrite`` (which replaces only
        ``Images/``, ``Ground Truth/``, ``Masks/`` and ``synthetic.json``).
    sources : sequence of path, ``'skimage:retina'`` or BGR uint8 array
        Fundus photographs of any size; each is scaled to fill the canvas.
    pairs_per_image : int
        Pairs drawn from each source.
    size : int
        Side of every image in pixels (FIRE: 2912; 256-512 is enough for tests).
    seed : int
        Pair j of source i uses ``numpy.random.default_rng([seed, i, j])``.
    categories : sequence of 'S', 'P', 'A'
        Categories cycled over the global pair index (source-major); repeat a letter to
        weight it, e.g. ``('S', 'S', 'P', 'A')``.
    overwrite, progress : bool
    geometry : str
        ``eye`` (default: the eye model) or ``homography`` (version-1 geometry), see the module
        docstring.

    Returns
    -------
    list of PairSpec
        The set's pairs (``list_pairs(out_dir)``).

    Files: ``Images/<C><NN>_1.jpg`` (reference), ``Images/<C><NN>_2.jpg`` (query),
    ``Ground Truth/control_points_<C><NN>_1_2.txt`` (10 rows ``x_ref y_ref x_query y_query``),
    ``Masks/mask.png`` (aperture), ``manifest.csv`` (per pair: category, overlap, gaze change,
    error floors) and ``synthetic.json`` (written first with
    ``"complete": false``, rewritten at the end; it also marks the set as synthetic, so that
    ``list_pairs`` keeps a pair named P37).
    """
    out_dir = Path(out_dir)
    categories = tuple(str(c).upper() for c in categories)
    bad = [c for c in categories if c not in CATEGORY_PARAMS]
    if bad or not categories:
        raise ValueError(f"categories must be a non-empty sequence of S, P, A; got {list(categories)}")
    if pairs_per_image < 1:
        raise ValueError("pairs_per_image must be >= 1")
    if size < 128:
        raise ValueError("size must be at least 128 px")
    if not sources:
        raise ValueError("no source images given")
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {', '.join(GEOMETRIES)}, got {geometry!r}")
    _prepare_out_dir(out_dir, overwrite)
    meta = {"generator": "superretina.fire.synth", "version": GENERATOR_VERSION, "complete": False,
            "geometry": geometry,
            **({"eye_model": EYE_MODEL, "eye_reference_visit": EYE_REFERENCE, "eye_categories": EYE_CATEGORY}
               if geometry == "eye" else {}),
            "seed": int(seed), "size": int(size), "pairs_per_image": int(pairs_per_image),
            "categories": list(categories), "sources": [], "pairs": {}}
    marker = out_dir / SYNTH_MARKER

    def write_meta():
        marker.write_text(json.dumps(meta, indent=1))

    write_meta()
    cv2.imwrite(str(out_dir / "Masks" / "mask.png"), (aperture_mask(size) >= 0.5).astype(np.uint8) * 255)
    counters = {c: 0 for c in CATEGORY_PARAMS}
    total = len(sources) * pairs_per_image
    try:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="pair", disable=not progress, desc="synth")
    except ImportError:  # pragma: no cover - tqdm is a dependency
        bar = None
    for si, src in enumerate(sources):
        name, img = load_source(src)
        try:
            placement = place_on_canvas(img, size)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        meta["sources"].append({"index": si, "name": name, "shape": list(img.shape),
                                "image_to_canvas": placement.image_to_canvas.tolist()})
        for j in range(pairs_per_image):
            cat = categories[(si * pairs_per_image + j) % len(categories)]
            counters[cat] += 1
            pair_name = f"{cat}{counters[cat]:02d}"
            rng = np.random.default_rng([int(seed), si, j])
            pair = make_pair(rng, placement, cat, size, geometry)
            q1 = pair["record"]["reference_appearance"]["jpeg_quality"]
            q2 = pair["record"]["query_appearance"]["jpeg_quality"]
            _write_jpeg(out_dir / "Images" / f"{pair_name}_1.jpg", pair["reference"], q1)
            _write_jpeg(out_dir / "Images" / f"{pair_name}_2.jpg", pair["query"], q2)
            rows = np.concatenate([pair["ref_pts"], pair["query_pts"]], axis=1)
            (out_dir / "Ground Truth" / f"control_points_{pair_name}_1_2.txt").write_text(
                "".join(" ".join(f"{v:.4f}" for v in row) + "\n" for row in rows))
            meta["pairs"][pair_name] = {"source": si, "pair_index": j, **pair["record"]}
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    meta["complete"] = True
    write_meta()
    write_manifest(out_dir / MANIFEST, meta)
    return list_pairs(out_dir)


MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("pair", "category", "source", "overlap", "gaze_change_deg", "best_homography_error_px",
                    "cp_homography_error_px", "best_quadratic_error_px")


def write_manifest(path: Path, meta: dict) -> None:
    """One row per pair: what a perfect homography / quadratic method would still miss."""
    def fmt(v):
        return "" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    lines = [",".join(MANIFEST_COLUMNS)]
    for name in sorted(meta["pairs"]):
        rec = meta["pairs"][name]
        lines.append(",".join([name] + [fmt(rec.get(c)) for c in MANIFEST_COLUMNS[1:]]))
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- command line
def _collect_sources(items: Sequence[str]) -> list:
    out = []
    for item in items:
        if item == "skimage:retina":
            out.append(item)
            continue
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.iterdir()
                           if f.suffix.lower() in IMAGE_SUFFIXES and not f.stem.endswith(_SKIP_SUFFIXES))
            if not files:
                raise SystemExit(f"error: {p}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            out.extend(files)
        elif p.is_file():
            out.append(p)
        else:
            raise SystemExit(f"error: {p}: no such file or folder")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog=prog_name("synth"),
        description="Generate a synthetic FIRE-format registration set (Images/, Ground Truth/, "
                    "Masks/, synthetic.json, manifest.csv) from fundus photographs. Each pair: two "
                    "visits of an eye model (curved retina, gaze change; or --geometry homography), "
                    "photometric change, a lower-resolution second visit; category S = large "
                    "overlap, P = small overlap (20-50%), "
                    "A = large overlap with lesion-like blobs, blur and illumination change. "
                    "Ground-truth control points are exact under the geometry.",
        epilog="Example: python -m superretina.fire.synth out/synth --from ../shared/data/fundus "
               "--pairs-per-image 3 --size 2912 --seed 0")
    ap.add_argument("out", type=Path, help="output folder (created; must be empty unless --overwrite)")
    ap.add_argument("--from", dest="sources", nargs="+", action="extend", required=True,
                    metavar="IMAGE_OR_FOLDER",
                    help="source photographs: files, folders (every image except *_vessels/_fov/_mask "
                         "files) or 'skimage:retina' (scikit-image's bundled fundus photograph)")
    ap.add_argument("--pairs-per-image", type=int, default=3, metavar="K", help="pairs per source (3)")
    ap.add_argument("--size", type=int, default=FIRE_SIZE, metavar="PX",
                    help=f"image side in pixels ({FIRE_SIZE}, as FIRE)")
    ap.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0)")
    ap.add_argument("--categories", default="SPA",
                    help="categories cycled over the pairs, e.g. SPA (default) or SSPA")
    ap.add_argument("--held-out", action="store_true",
                    help="keep only the photographs held out of training (superretina/data_split.py), "
                         "for sets that evaluate the shipped model fairly")
    ap.add_argument("--geometry", choices=GEOMETRIES, default="eye",
                    help="eye (default): visits rendered from an eye model (spherical retina, nodal point "
                         "inside the globe, gaze change), FIRE-like homography residuals; homography: "
                         "the version-1 geometry (two homographies plus a smooth field)")
    ap.add_argument("--series", choices=("visits", "fields"),
                    help="instead of pairs: per source photograph one series of --views views of one eye "
                         "(visits: small gaze changes, appearance and lesion change; fields: the ETDRS 7-field "
                         "pattern), with exact correspondences between every two views (fire/series_synth.py)")
    ap.add_argument("--views", type=int, default=7, metavar="N", help="views per series (7)")
    ap.add_argument("--overwrite", action="store_true", help="replace a previously generated set")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    sources = _collect_sources(args.sources)
    if args.held_out:
        from ..data_split import HELD_OUT
        sources = [s for s in sources if isinstance(s, Path) and s.stem in HELD_OUT]
        if not sources:
            print("error: none of the --from images is held out of training (see superretina/data_split.py)", file=sys.stderr)
            return 2
    if args.series:
        return _series_main(args, sources)
    try:
        pairs = make_synthetic_set(args.out, sources, args.pairs_per_image, args.size, args.seed,
                                   tuple(args.categories), overwrite=args.overwrite,
                                   progress=not args.no_progress, geometry=args.geometry)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta = json.loads((args.out / SYNTH_MARKER).read_text())
    counts = {c: sum(p.category == c for p in pairs) for c in CATEGORY_PARAMS}
    floors = {c: [v["best_homography_error_px"] for v in meta["pairs"].values()
                  if v["category"] == c and v["best_homography_error_px"] is not None] for c in CATEGORY_PARAMS}
    print(f"{args.out}: {len(pairs)} pairs (" + ", ".join(f"{c} {n}" for c, n in counts.items() if n)
          + f") from {len(sources)} source image(s), {args.size} px, seed {args.seed}, {args.geometry} geometry; "
          "best-homography floor (mean px) " + ", ".join(f"{c} {np.mean(v):.2f}" for c, v in floors.items() if v)
          + f"; per pair in {args.out / MANIFEST}")
    return 0


def _series_main(args, sources) -> int:
    """``--series``: one folder per source under ``args.out`` (see fire/series_synth.py)."""
    from .series_synth import make_series

    if args.views < 2:
        print("error: --views must be at least 2", file=sys.stderr)
        return 2
    try:
        if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
            raise FileExistsError(f"{args.out}: not empty (pass --overwrite to replace generated series)")
        for i, src in enumerate(sources):
            name, img = load_source(src)
            stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).stem)
            stem = stem if name != "<array>" else f"source{i}"
            if (args.out / f"{stem}_{args.series}").is_dir():
                shutil.rmtree(args.out / f"{stem}_{args.series}")
            truth = make_series(args.out / f"{stem}_{args.series}", img, args.series, args.views, args.size,
                                args.seed, i, name)
            ov = [p["overlap"] for p in truth["pairs"]]
            print(f"{args.out / f'{stem}_{args.series}'}: {args.views} views ({args.series}), {args.size} px, "
                  f"pairwise overlap {min(ov):.2f}..{max(ov):.2f}")
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
