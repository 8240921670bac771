"""Self-checking demo: a pair with a known homography, made from scikit-image's CC0 retina.

The query is the photograph under a known homography G (reference → query) with a change of
illumination, contrast and sharpness; registering it must give H ≈ G⁻¹.  The score is the mean
distance, in reference pixels, between H·(G·p) and p over control points p spread over the fundus.
"""
from __future__ import annotations

import cv2
import numpy as np

from .homography import transform_points

# Reference → query: 8° rotation, 6 % zoom, a shift and a little perspective.
_ANGLE, _SCALE, _SHIFT, _PERSP = 8.0, 1.06, (45.0, -30.0), (2e-5, -1.5e-5)


def known_homography(size: tuple[int, int]) -> np.ndarray:
    h, w = size
    c = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1]], float)
    a = np.deg2rad(_ANGLE)
    rot = np.array([[_SCALE * np.cos(a), -_SCALE * np.sin(a), _SHIFT[0]],
                    [_SCALE * np.sin(a), _SCALE * np.cos(a), _SHIFT[1]],
                    [_PERSP[0], _PERSP[1], 1]])
    return c @ rot @ np.linalg.inv(c)


def make_pair(refer: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, G, control points) for a BGR reference photograph."""
    h, w = refer.shape[:2]
    G = known_homography((h, w))
    query = cv2.warpPerspective(refer, G, (w, h), flags=cv2.INTER_LINEAR)
    # Another visit: darker, lower contrast, uneven illumination, slightly blurred.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 0.75 + 0.35 * (xx / w)
    q = (query.astype(np.float32) / 255.0) ** 1.25 * light[..., None] * 0.9
    query = cv2.GaussianBlur(np.clip(q * 255, 0, 255).astype(np.uint8), (0, 0), 1.0)
    # Control points on a grid over the central fundus.
    g = np.linspace(0.25, 0.75, 5)
    pts = np.array([[x * w, y * h] for y in g for x in g], float)
    return query, G, pts


def control_point_error(H: np.ndarray | None, G: np.ndarray, pts: np.ndarray) -> float:
    """Mean distance (reference pixels) between H·G·p and p; inf without H."""
    if H is None:
        return float("inf")
    back = transform_points(H, transform_points(G, pts))
    return float(np.linalg.norm(back - pts, axis=1).mean())


def retina_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.retina(), cv2.COLOR_RGB2BGR)
