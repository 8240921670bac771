"""Pictures of a registration: matches side by side, two-colour overlay, checkerboard."""
from __future__ import annotations

import cv2
import numpy as np

from .image_io import to_uint8

GREEN, RED, WHITE = (80, 220, 80), (60, 60, 230), (255, 255, 255)


def _bgr8(image: np.ndarray) -> np.ndarray:
    img = to_uint8(image)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img


def _label(img: np.ndarray, lines: list[str]) -> None:
    scale = max(0.5, img.shape[0] / 1400)
    y = int(30 * scale)
    for text in lines:
        cv2.putText(img, text, (int(10 * scale), y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), int(4 * scale) + 1, cv2.LINE_AA)
        cv2.putText(img, text, (int(10 * scale), y), cv2.FONT_HERSHEY_SIMPLEX, scale, WHITE, int(1.5 * scale) + 1, cv2.LINE_AA)
        y += int(32 * scale)


def draw_matches(query: np.ndarray, refer: np.ndarray, pts_q: np.ndarray, pts_r: np.ndarray,
                 inliers: np.ndarray, lines: list[str], height: int = 1000, max_lines: int = 150) -> np.ndarray:
    """Side-by-side picture, both images scaled to ``height``; matched points as dots (green:
    inlier, red: outlier) and lines for at most ``max_lines`` inliers, evenly chosen, so the
    picture stays readable with hundreds of matches.

    pts_q, pts_r: (M, 2) matched points in original pixels; inliers: (M,) bool.
    """
    q, r = _bgr8(query), _bgr8(refer)
    sq, sr = height / q.shape[0], height / r.shape[0]
    q = cv2.resize(q, (round(q.shape[1] * sq), height), interpolation=cv2.INTER_AREA)
    r = cv2.resize(r, (round(r.shape[1] * sr), height), interpolation=cv2.INTER_AREA)
    canvas = np.concatenate([q, r], axis=1)
    off = q.shape[1]
    inlier_idx = np.flatnonzero(inliers)
    with_line = set(inlier_idx[np.linspace(0, len(inlier_idx) - 1, min(max_lines, len(inlier_idx))).astype(int)]
                    if len(inlier_idx) else [])
    for i, ((xq, yq), (xr, yr), ok) in enumerate(zip(pts_q, pts_r, inliers)):
        a = (int(round(xq * sq)), int(round(yq * sq)))
        b = (int(round(xr * sr)) + off, int(round(yr * sr)))
        if i in with_line:
            cv2.line(canvas, a, b, GREEN, 1, cv2.LINE_AA)
        cv2.circle(canvas, a, 3, GREEN if ok else RED, -1, cv2.LINE_AA)
        cv2.circle(canvas, b, 3, GREEN if ok else RED, -1, cv2.LINE_AA)
    _label(canvas, lines)
    return canvas


def warp_to_reference(query: np.ndarray, H: np.ndarray, refer_shape: tuple) -> np.ndarray:
    h, w = refer_shape[:2]
    return cv2.warpPerspective(_bgr8(query), H, (w, h), flags=cv2.INTER_LINEAR)


def merged(warped_query: np.ndarray, refer: np.ndarray) -> np.ndarray:
    """Warped query in the red channel, reference in the green: aligned vessels turn yellow."""
    gq = cv2.cvtColor(_bgr8(warped_query), cv2.COLOR_BGR2GRAY)
    gr = cv2.cvtColor(_bgr8(refer), cv2.COLOR_BGR2GRAY)
    eq = cv2.createCLAHE(2.0, (8, 8))
    return cv2.merge([np.zeros_like(gr), eq.apply(gr), eq.apply(gq)])


def checkerboard(warped_query: np.ndarray, refer: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Alternating tiles of the warped query and the reference; misalignment breaks vessels at tile edges."""
    a, b = _bgr8(warped_query), _bgr8(refer)
    h, w = b.shape[:2]
    # Tile parity per row and per column, combined by broadcasting: an (H, W) bool mask and no
    # full-size int64 grids (those took ~2 GB for an 8000x8000 reference).
    row = (np.arange(h) * tiles // h % 2).astype(np.uint8)
    col = (np.arange(w) * tiles // w % 2).astype(np.uint8)
    mask = (row[:, None] ^ col[None, :]).astype(bool)
    out = b.copy()
    np.copyto(out, a, where=mask[..., None])
    return out
