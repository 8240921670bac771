"""SIFT baseline for fundus registration, on the same green-channel enhancement as the model.

Pipeline: enhance each image at full resolution (``superretina.enhance.enhance``: green
channel, z-score, CLAHE, gamma), shrink it to a working size (longest side 1024 by default,
INTER_AREA), detect SIFT inside the field of view (the fundus disc, eroded so that its rim
gives no keypoints), scale keypoints back to full-resolution pixels, Lowe ratio test
(query -> reference 2-NN), RANSAC homography (threshold given in working pixels), seeded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import cv2
import numpy as np

from superretina.enhance import enhance
from superretina.image_io import read_image

from .fov import fov_mask
from .outcome import RegistrationOutcome

MIN_MATCHES = 4


@dataclass
class SiftResult:
    """Result of :func:`register_sift`.

    Attributes
    ----------
    H : ndarray (3, 3) float64 or None
        Query -> reference homography in original (full-resolution) pixels.
    num_keypoints_query, num_keypoints_refer, num_matches, num_inliers : int
    inlier_rate : float
        ``num_inliers / num_matches`` (0 without matches).
    failure_reason : str
        Why ``H`` is None ('' on success).
    """

    H: Optional[np.ndarray]
    num_keypoints_query: int = 0
    num_keypoints_refer: int = 0
    num_matches: int = 0
    num_inliers: int = 0
    inlier_rate: float = 0.0
    failure_reason: str = ""


def _working_image(bgr: np.ndarray, working_size: int, fov_erode: float):
    """Enhanced uint8 working image, its detection mask and the working->original scale."""
    h, w = bgr.shape[:2]
    enh = np.clip(enhance(bgr) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    s = min(1.0, working_size / max(h, w))
    ww, wh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    work = cv2.resize(enh, (ww, wh), interpolation=cv2.INTER_AREA) if s < 1.0 else enh
    small = cv2.resize(bgr, (ww, wh), interpolation=cv2.INTER_AREA) if s < 1.0 else bgr
    mask = fov_mask(small).astype(np.uint8) * 255
    r = int(round(fov_erode * max(ww, wh)))
    if r > 0:
        mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    if not mask.any():
        mask = None          # no disc found: detect everywhere rather than nowhere
    return work, mask, (w / ww, h / wh)


def _to_original(pts: np.ndarray, scale: tuple) -> np.ndarray:
    # cv2.resize aligns pixel areas, so centres map by (x + 0.5) * s - 0.5.
    return (pts + 0.5) * np.asarray(scale, np.float64) - 0.5


def register_sift(query_bgr: np.ndarray, refer_bgr: np.ndarray, ratio: float = 0.8,
                  working_size: int = 1024, ransac_threshold: float = 3.0, max_features: int = 5000,
                  fov_erode: float = 0.015, seed: int = 0) -> SiftResult:
    """Register a query photograph onto a reference with SIFT.

    Parameters
    ----------
    query_bgr, refer_bgr : ndarray, HxWx3 BGR (or HxW grey), uint8 or uint16
        Images at their original resolution (any sizes).
    ratio : float
        Lowe ratio: keep a match when d1 < ratio * d2.
    working_size : int
        Longest side of the detection image (smaller images are not enlarged).
    ransac_threshold : float
        RANSAC reprojection threshold in working pixels of the reference.
    max_features : int
        SIFT keypoint cap per image (0 = unlimited).
    fov_erode : float
        Erosion of the field-of-view mask, as a fraction of the working size.
    seed : int
        OpenCV RNG seed for RANSAC.

    Returns
    -------
    SiftResult
        ``H`` maps query pixels to reference pixels (original resolution).
    """
    qw, qmask, qscale = _working_image(query_bgr, working_size, fov_erode)
    rw, rmask, rscale = _working_image(refer_bgr, working_size, fov_erode)
    sift = cv2.SIFT_create(nfeatures=max_features)
    kq, dq = sift.detectAndCompute(qw, qmask)
    kr, dr = sift.detectAndCompute(rw, rmask)
    res = SiftResult(H=None, num_keypoints_query=len(kq), num_keypoints_refer=len(kr))
    if dq is None or dr is None or len(kq) < MIN_MATCHES or len(kr) < 2:
        res.failure_reason = f"too few keypoints (query {len(kq)}, reference {len(kr)})"
        return res
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dq, dr, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    res.num_matches = len(good)
    if len(good) < MIN_MATCHES:
        res.failure_reason = f"only {len(good)} matches (need {MIN_MATCHES})"
        return res
    src = _to_original(np.float64([kq[m.queryIdx].pt for m in good]), qscale)
    dst = _to_original(np.float64([kr[m.trainIdx].pt for m in good]), rscale)
    cv2.setRNGSeed(int(seed))
    H, inl = cv2.findHomography(src, dst, cv2.RANSAC, ransac_threshold * max(rscale))
    if H is None or inl is None:
        res.failure_reason = "RANSAC found no homography"
        return res
    res.num_inliers = int(inl.sum())
    res.inlier_rate = res.num_inliers / len(good)
    res.H = H.astype(np.float64)
    return res


def make_register_fn(**kwargs) -> Callable[[Path, Path], RegistrationOutcome]:
    """``register_fn(query_path, refer_path) -> RegistrationOutcome`` for the FIRE runner.

    Keyword arguments go to :func:`register_sift`. Thread-safe (no shared state).
    """

    def sift(query_path: Path, refer_path: Path) -> RegistrationOutcome:
        t0 = time.perf_counter()
        q, r = read_image(query_path), read_image(refer_path)
        res = register_sift(q, r, **kwargs)
        return RegistrationOutcome(
            status="registered" if res.H is not None else "failed", reason=res.failure_reason,
            H=res.H, num_matches=res.num_matches, num_inliers=res.num_inliers,
            inlier_rate=res.inlier_rate, seconds=time.perf_counter() - t0)

    return sift
