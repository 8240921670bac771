"""Second training view from the eye model: the same fundus after the eye turns (a gaze change).

The 768x768 model frame is taken as the eye model's canvas (the unturned eye seen by the base
camera, the fundus disc spanning ``synth.CANVAS_FILL`` of it, as ``synth.place_on_canvas`` puts
a photograph). View A is a homography crop of the canvas, as in plain training pairs. View B is
the same crop window, shifted so that A's centre stays in view, of a visit whose eye turned by
a random gaze angle (up to ``max_gaze``): the camera's roll, zoom and shift are left to the
homography augmentation, so what the eye model adds is what no homography has (foreshortening
that varies across the crop, and the curvature residual, largest for large gaze changes).

Correspondences are exact: canvas points go through the eye model's closed-form maps
(``EyePairGeometry.canvas_to_query``); view B is rendered with ``cv2.remap`` through the inverse
maps, as ``synth`` renders visits. Points the turned camera cannot see (behind it, or outside
its round aperture) come out as NaN.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..fire.eye_model import EyeModel, EyePairGeometry, Visit
from ..fire.synth import APERTURE_FILL, CANVAS_FILL, EYE_MODEL
from ..homography import transform_points

# Tries to find a gaze that keeps view A's centre inside the turned camera's aperture; a large
# gaze only passes when it moves the centre towards the middle (as in small-overlap pairs).
_TRIES = 30


@dataclass
class EyeView:
    """A view B made by the eye model.

    Attributes
    ----------
    geometry : EyePairGeometry
        reference = the unturned canvas (identity visit), query = the turned eye; sizes in
        model-frame pixels.
    H_b : np.ndarray
        (3, 3) homography from the query visit's pixels into view B's crop.
    crop : int
        Side of view B (pixels).
    """

    geometry: EyePairGeometry
    H_b: np.ndarray
    crop: int

    @property
    def gaze_deg(self) -> float:
        return self.geometry.query.gaze_deg

    def points(self, canvas_pts: np.ndarray) -> np.ndarray:
        """Canvas (model-frame) points (K, 2) -> view-B pixels (K, 2) float32; NaN where the
        turned camera does not see the point (behind it or outside its aperture)."""
        if len(canvas_pts) == 0:
            return np.zeros((0, 2), np.float32)
        q = self.geometry.canvas_to_query(canvas_pts)
        out = np.full(q.shape, np.nan)
        ok = _in_aperture(q, self.geometry.size)
        if ok.any():
            out[ok] = transform_points(self.H_b, q[ok])
        return out.astype(np.float32)

    def maps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """cv2.remap maps (crop, crop) float32 into the canvas, and the (crop, crop) float32
        aperture mask of the turned camera (1 inside)."""
        c = self.crop
        yy, xx = np.mgrid[0:c, 0:c].astype(np.float64)
        q = transform_points(np.linalg.inv(self.H_b), np.stack([xx.ravel(), yy.ravel()], 1))
        u = self.geometry.query_to_canvas(q)
        bad = ~np.all(np.isfinite(u), axis=1)
        u[bad] = -1e4                          # far outside: remap's constant border (0)
        inside = _in_aperture(q, self.geometry.size).reshape(c, c).astype(np.float32)
        return u[:, 0].reshape(c, c).astype(np.float32), u[:, 1].reshape(c, c).astype(np.float32), inside

    def render(self, frame_image: np.ndarray, maps=None) -> np.ndarray:
        """View B (crop, crop) of a model-frame image (canvas), black outside the aperture."""
        mx, my, inside = self.maps() if maps is None else maps
        out = cv2.remap(frame_image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return (out * inside).astype(frame_image.dtype)


def _in_aperture(q: np.ndarray, size: int) -> np.ndarray:
    """Whether visit pixels (N, 2) fall inside the camera's round aperture (synth's)."""
    c = (size - 1) / 2.0
    d = np.hypot(q[:, 0] - c, q[:, 1] - c)
    return np.isfinite(d) & (d < APERTURE_FILL * size / 2.0)


def eye_model(frame: int) -> EyeModel:
    """The eye model of a model frame: synth's eye, the fundus disc spanning CANVAS_FILL."""
    return EyeModel(int(frame), EYE_MODEL["nodal_offset"], EYE_MODEL["fov_deg"], CANVAS_FILL * frame)


def random_eye_view(rng: np.random.Generator, frame: int, crop: int, H_view: np.ndarray,
                    centre: tuple, max_gaze: float) -> EyeView:
    """Draw a gaze change and place view B's crop window on the turned eye's visit.

    Parameters
    ----------
    rng : the sampler's generator.
    frame : model-frame side (pixels), the canvas.
    crop : view side (pixels).
    H_view : (3, 3) homography canvas -> view B of the plain (homography) pair; its window is
        moved by a translation so that ``centre`` lands where it would without the gaze change.
    centre : (x, y) canvas point that must stay visible (view A's centre).
    max_gaze : largest gaze change (degrees); the angle is uniform in [0, max_gaze] with a
        uniform direction, redrawn until ``centre`` stays inside the aperture (else no turn).
    """
    eye = eye_model(frame)
    c = np.asarray(centre, np.float64).reshape(1, 2)
    visit = Visit()
    for _ in range(_TRIES):
        v = Visit(float(rng.uniform(0.0, max_gaze)), float(rng.uniform(0.0, 360.0)))
        q = v.retina_to_pixels(eye, eye.canvas_to_retina(c))
        # keep a margin of a quarter crop inside the aperture so B shows some fundus around it
        if _in_aperture(q, frame).all() and np.hypot(*(q[0] - (frame - 1) / 2)) < APERTURE_FILL * frame / 2 - crop / 4:
            visit = v
            break
    geom = EyePairGeometry(eye, Visit(), visit)
    q = geom.canvas_to_query(c)[0]
    T = np.array([[1, 0, c[0, 0] - q[0]], [0, 1, c[0, 1] - q[1]], [0, 0, 1.0]])  # query pixel -> canvas-like
    return EyeView(geom, np.asarray(H_view, np.float64) @ T, int(crop))
