"""Small pictures of a registration drawn at their own size (the batch report's thumbnails).

The full-size overlay and checkerboard of a FIRE pair are 2912x2912 each: warping, encoding and
(as `batch --pictures thumbnails` did before) decoding them again only to shrink them to 240
pixels costs more than a tenth of a second of CPU per pair. Here the photographs are shrunk
first and the transform is expressed between the shrunk frames, so each thumbnail warps 240x240
pixels. The full-size pictures (``outputs.write_outputs``) are unchanged and still made where
asked for (``--pictures full``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import viz
from .image_io import to_uint8
from .outputs import save_jpeg
from .parallel import run_all
from .registrar import RegistrationResult
from .transform import HomographyTransform, inverse_maps

THUMB_SIDE = 240            # px, longest side of a thumbnail (the reference's picture scaled)
THUMB_QUALITY = 85          # JPEG quality of the thumbnails
MAP_STEP = 8                # inverse-map grid step at thumbnail size (px)


class _Scaled:
    """A transform between shrunk frames: query pixels × ``s_q`` → reference pixels × ``s_r``."""

    def __init__(self, t, s_q: float, s_r: float):
        self.t, self.s_q, self.s_r = t, s_q, s_r

    def homography_approximation(self) -> np.ndarray:
        return np.diag([self.s_r, self.s_r, 1.0]) @ self.t.homography_approximation() @ np.diag(
            [1 / self.s_q, 1 / self.s_q, 1.0])

    def inverse(self, pts: np.ndarray, x0: np.ndarray | None = None, **kw) -> np.ndarray:
        if x0 is not None:
            kw["x0"] = x0 / self.s_q
        return self.s_q * self.t.inverse(pts / self.s_r, **kw)


def shrunk(image: np.ndarray, s: float) -> np.ndarray:
    """``image`` scaled by ``s`` <= 1 (area average, ``viz.shrink``: exact halvings first, 5-20x
    faster than one INTER_AREA resize to a thumbnail), at least one pixel a side."""
    h, w = image.shape[:2]
    return viz.shrink(image, (max(1, round(w * s)), max(1, round(h * s))))


def thumbnail_warp(res: RegistrationResult, s_q: float, s_r: float, refer_wh: tuple[int, int]):
    """What ``viz.merged``/``viz.checkerboard`` take at thumbnail size: a 3x3 homography between
    the shrunk frames, or remap maps ``(mx, my)`` of size ``refer_wh`` for another transform."""
    t = res.transform.transform if res.transform is not None else HomographyTransform(res.H)
    if isinstance(t, HomographyTransform):
        return np.diag([s_r, s_r, 1.0]) @ res.H @ np.diag([1 / s_q, 1 / s_q, 1.0])
    query_wh = (round(res.query_size[1] * s_q), round(res.query_size[0] * s_q))
    return inverse_maps(_Scaled(t, s_q, s_r), refer_wh, query_wh, step=MAP_STEP)


def write_thumbnails(res: RegistrationResult, query_img: np.ndarray, refer_img: np.ndarray, folder: Path,
                     merged: bool = True, checkerboard: bool = True, tiles: int = 8,
                     side: int = THUMB_SIDE) -> list[Path]:
    """Write ``thumb_result.jpg`` (overlay) and ``thumb_checkerboard.jpg`` into ``folder``.

    Parameters
    ----------
    res : RegistrationResult
        A registered result (nothing is written for a failed one).
    query_img, refer_img : ndarray (H, W[, 3]) uint8/uint16
        The photographs as decoded.
    side : int
        Longest side of the thumbnails: the reference scaled by ``side / max(H, W)``; the query
        by the same factor.

    Returns
    -------
    list of Path
        The files written.
    """
    if res.H is None or not (merged or checkerboard):
        return []
    s = side / max(refer_img.shape[:2])
    s_r = s_q = min(1.0, s)
    r_small = shrunk(to_uint8(refer_img), s_r)
    refer_wh = (r_small.shape[1], r_small.shape[0])
    warp = thumbnail_warp(res, s_q, s_r, refer_wh)
    jobs = []
    if merged:
        jobs.append(lambda: save_jpeg(Path(folder) / "thumb_result.jpg", viz.merged(
            shrunk(res.query_equalised, s_q), warp, shrunk(res.refer_equalised, s_r)), THUMB_QUALITY))
    if checkerboard:
        jobs.append(lambda: save_jpeg(Path(folder) / "thumb_checkerboard.jpg", viz.checkerboard(
            shrunk(to_uint8(query_img), s_q), warp, r_small, tiles), THUMB_QUALITY))
    return run_all(*jobs)   # side by side: OpenCV releases the GIL
