"""Eye-model geometry of a synthetic visit pair: a spherical retina seen from a nodal point
inside the globe (../shared/docs/retina-geometry.md).

Model (lengths in units of the globe's radius, the sphere's centre at the origin, the camera
looking along +z at the back of the eye):

- the retina is the unit sphere; a ray from the nodal point ``N = (0, 0, -nodal_offset)``
  meets it once going forwards (``N`` is inside), and that far intersection is the
  pixel's retinal point;
- the *canvas* (the source photograph placed as in ``synth.place_on_canvas``) is the
  view of the unturned eye by the base camera: canvas pixel ``u`` is the ray direction
  ``((u - c) / f, 1)``, ``c = (size - 1) / 2``, ``f`` set by the field of view;
- a *visit* turns the eye about the sphere's centre by a rotation ``G`` (gaze change: the
  retinal point ``P`` moves to ``G P``) and photographs it with a camera that may also roll
  (angle ``roll``), zoom (``zoom``) and shift (``shift``, pixels): visit pixel
  ``y = c + shift + zoom * f * Rot(roll) * (e_x / e_z, e_y / e_z)`` with ``e = G P - N``.

Both directions are closed form (one ray-sphere intersection each), so the ground truth
needs no iteration. Because the eye turns about a point other than the nodal point and the
surface is curved, no homography maps one visit onto another exactly: the residual grows
with the gaze change and towards the periphery, as on real small-overlap pairs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

__all__ = ["EyeModel", "Visit", "EyePairGeometry", "gaze_rotation", "ray_sphere"]


def gaze_rotation(angle_deg: float, direction_deg: float) -> np.ndarray:
    """Rotation (3, 3) turning the eye by ``angle_deg`` about the in-plane axis perpendicular
    to ``direction_deg`` (measured in the image plane from +x towards +y): retinal points near
    the optical axis move towards ``direction_deg`` on the sphere."""
    a, p = math.radians(angle_deg), math.radians(direction_deg)
    # axis k = z x d, with d = (cos p, sin p, 0): rotating about k moves +z towards d
    k = np.array([-math.sin(p), math.cos(p), 0.0])
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * (K @ K)


def ray_sphere(origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Far intersection of rays ``origin + t * dirs`` (t > 0) with the unit sphere.

    origin: (3,) inside the sphere; dirs: (N, 3) (any length). Returns (N, 3) points.
    """
    o = np.asarray(origin, np.float64)
    d = np.asarray(dirs, np.float64)
    a = np.einsum("ij,ij->i", d, d)
    b = d @ o
    c = float(o @ o) - 1.0                      # < 0: the origin is inside, one root t > 0
    t = (-b + np.sqrt(b * b - a * c)) / a
    return o + t[:, None] * d


@dataclass(frozen=True)
class EyeModel:
    """The eye and the base camera.

    Attributes
    ----------
    size : int
        Side of the canvas and of every visit (pixels).
    nodal_offset : float
        Distance of the nodal point in front of the sphere's centre, in globe radii.
    fov_deg : float
        Full field of view (degrees at the nodal point) spanned by ``fov_span_px`` pixels.
    fov_span_px : float
        Pixels spanned by ``fov_deg`` (the fundus disc's diameter on the canvas).
    """

    size: int
    nodal_offset: float
    fov_deg: float
    fov_span_px: float

    @property
    def centre(self) -> float:
        return (self.size - 1) / 2.0

    @property
    def focal_px(self) -> float:
        return (self.fov_span_px / 2.0) / math.tan(math.radians(self.fov_deg) / 2.0)

    @property
    def nodal(self) -> np.ndarray:
        return np.array([0.0, 0.0, -self.nodal_offset])

    def canvas_to_retina(self, pts: np.ndarray) -> np.ndarray:
        """Canvas pixels (N, 2) -> retinal points (N, 3) of the unturned eye."""
        p = np.asarray(pts, np.float64).reshape(-1, 2)
        d = np.empty((len(p), 3))
        d[:, :2] = (p - self.centre) / self.focal_px
        d[:, 2] = 1.0
        return ray_sphere(self.nodal, d)

    def retina_to_canvas(self, P: np.ndarray) -> np.ndarray:
        """Retinal points (N, 3) of the unturned eye -> canvas pixels (N, 2) (inf behind)."""
        e = np.asarray(P, np.float64).reshape(-1, 3) - self.nodal
        with np.errstate(divide="ignore", invalid="ignore"):
            out = self.centre + self.focal_px * e[:, :2] / e[:, 2:3]
        return np.where((e[:, 2:3] > 1e-9) & np.isfinite(out), out, np.inf)

    def to_dict(self) -> dict:
        return {"size": self.size, "nodal_offset": self.nodal_offset, "fov_deg": self.fov_deg,
                "fov_span_px": self.fov_span_px}


@dataclass(frozen=True)
class Visit:
    """One photograph: gaze change of the eye, camera roll, zoom and shift.

    Attributes
    ----------
    gaze_deg, gaze_direction_deg : float
        The eye turned by ``gaze_deg`` towards ``gaze_direction_deg`` (see :func:`gaze_rotation`).
    roll_deg : float
        Camera roll about its axis.
    zoom : float
        Magnification of the camera (1 = the base camera).
    shift : tuple of float
        Image shift in pixels (x, y).
    """

    gaze_deg: float = 0.0
    gaze_direction_deg: float = 0.0
    roll_deg: float = 0.0
    zoom: float = 1.0
    shift: tuple = (0.0, 0.0)

    @property
    def rotation(self) -> np.ndarray:
        return gaze_rotation(self.gaze_deg, self.gaze_direction_deg)

    def _roll(self) -> np.ndarray:
        r = math.radians(self.roll_deg)
        return np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])

    def retina_to_pixels(self, eye: EyeModel, P: np.ndarray) -> np.ndarray:
        """Retinal points (N, 3) of the unturned eye -> this visit's pixels (N, 2) (inf behind)."""
        X = np.asarray(P, np.float64).reshape(-1, 3) @ self.rotation.T
        e = X - eye.nodal
        with np.errstate(divide="ignore", invalid="ignore"):
            a = e[:, :2] / e[:, 2:3]
        out = eye.centre + np.asarray(self.shift, np.float64) + self.zoom * eye.focal_px * (a @ self._roll().T)
        return np.where((e[:, 2:3] > 1e-9) & np.isfinite(out), out, np.inf)

    def pixels_to_retina(self, eye: EyeModel, pts: np.ndarray) -> np.ndarray:
        """This visit's pixels (N, 2) -> retinal points (N, 3) of the unturned eye."""
        p = np.asarray(pts, np.float64).reshape(-1, 2)
        a = ((p - eye.centre - np.asarray(self.shift, np.float64)) / (self.zoom * eye.focal_px)) @ self._roll()
        d = np.concatenate([a, np.ones((len(p), 1))], axis=1)
        return ray_sphere(eye.nodal, d) @ self.rotation      # G^T X for row vectors

    def to_dict(self) -> dict:
        return {"gaze_deg": self.gaze_deg, "gaze_direction_deg": self.gaze_direction_deg,
                "roll_deg": self.roll_deg, "zoom": self.zoom, "shift": list(map(float, self.shift))}

    @classmethod
    def from_dict(cls, d: dict) -> "Visit":
        return cls(float(d["gaze_deg"]), float(d["gaze_direction_deg"]), float(d["roll_deg"]),
                   float(d["zoom"]), tuple(float(v) for v in d["shift"]))


@dataclass
class EyePairGeometry:
    """Exact geometry of one eye-model pair; the same point maps and renderers as
    ``synth.PairGeometry`` (canvas <-> reference, canvas <-> query), all closed form."""

    eye: EyeModel
    reference: Visit
    query: Visit

    @property
    def size(self) -> int:
        return self.eye.size

    def canvas_to_reference(self, pts: np.ndarray) -> np.ndarray:
        return self.reference.retina_to_pixels(self.eye, self.eye.canvas_to_retina(pts))

    def reference_to_canvas(self, pts: np.ndarray) -> np.ndarray:
        return self.eye.retina_to_canvas(self.reference.pixels_to_retina(self.eye, pts))

    def canvas_to_query(self, pts: np.ndarray) -> np.ndarray:
        return self.query.retina_to_pixels(self.eye, self.eye.canvas_to_retina(pts))

    def query_to_canvas(self, pts: np.ndarray) -> np.ndarray:
        return self.eye.retina_to_canvas(self.query.pixels_to_retina(self.eye, pts))

    def query_to_reference(self, pts: np.ndarray) -> np.ndarray:
        """The true correspondence: query pixels (N, 2) -> reference pixels (N, 2)."""
        return self.reference.retina_to_pixels(self.eye, self.query.pixels_to_retina(self.eye, pts))

    # -- rendering
    def _maps(self, visit: Visit, S: np.ndarray, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """cv2.remap maps (float32, size x size): the source-image pixel each visit pixel shows.

        Cached per (visit, placement): a pair renders each visit twice (photograph, fundus mask).
        """
        key = (id(visit), S.tobytes())
        cache = self.__dict__.setdefault("_map_cache", {})
        if key in cache:
            return cache[key]
        Sinv = np.linalg.inv(S)
        n = self.size
        mx = np.empty((n, n), np.float32)
        my = np.empty((n, n), np.float32)
        xs = np.arange(n, dtype=np.float64)
        for y0 in range(0, n, block_rows):
            y1 = min(n, y0 + block_rows)
            yy, xx = np.meshgrid(np.arange(y0, y1, dtype=np.float64), xs, indexing="ij")
            u = self.eye.retina_to_canvas(visit.pixels_to_retina(self.eye, np.stack([xx.ravel(), yy.ravel()], 1)))
            w = u @ Sinv[2, :2] + Sinv[2, 2]
            bx = ((u @ Sinv[0, :2] + Sinv[0, 2]) / w).reshape(y1 - y0, n)
            by = ((u @ Sinv[1, :2] + Sinv[1, 2]) / w).reshape(y1 - y0, n)
            bad = ~(np.isfinite(bx) & np.isfinite(by))
            bx[bad] = by[bad] = -1e4
            mx[y0:y1], my[y0:y1] = bx, by
        cache.clear()           # keep one visit's maps at a time (68 MB each at 2912 px)
        cache[key] = (mx, my)
        return mx, my

    def _render(self, visit: Visit, image: np.ndarray, image_to_canvas: Optional[np.ndarray],
                interpolation: int, block_rows: int) -> np.ndarray:
        S = np.eye(3) if image_to_canvas is None else np.asarray(image_to_canvas, np.float64)
        mx, my = self._maps(visit, S, block_rows)
        return cv2.remap(image, mx, my, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def render_reference(self, image: np.ndarray, image_to_canvas: np.ndarray = None,
                         interpolation: int = cv2.INTER_LINEAR, block_rows: int = 512) -> np.ndarray:
        """Reference visit (size x size) of an image placed on the canvas by ``image_to_canvas``."""
        return self._render(self.reference, image, image_to_canvas, interpolation, block_rows)

    def render_query(self, image: np.ndarray, image_to_canvas: np.ndarray = None,
                     interpolation: int = cv2.INTER_LINEAR, block_rows: int = 512) -> np.ndarray:
        """Query visit (size x size) of an image placed on the canvas by ``image_to_canvas``."""
        return self._render(self.query, image, image_to_canvas, interpolation, block_rows)

    def to_dict(self) -> dict:
        return {"model": "eye", "eye": self.eye.to_dict(), "reference_visit": self.reference.to_dict(),
                "query_visit": self.query.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "EyePairGeometry":
        e = d["eye"]
        return cls(EyeModel(int(e["size"]), float(e["nodal_offset"]), float(e["fov_deg"]), float(e["fov_span_px"])),
                   Visit.from_dict(d["reference_visit"]), Visit.from_dict(d["query_visit"]))
