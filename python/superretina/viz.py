"""Pictures of a registration: matches side by side, two-colour overlay, checkerboard."""
from __future__ import annotations

import cv2
import numpy as np

from .image_io import to_uint8
from .transform import inverse_maps

GREEN, RED, WHITE = (80, 220, 80), (60, 60, 230), (255, 255, 255)
JPEG_MAX_SIDE = 65_000  # JPEG stores sides in 16 bits (65535); OpenCV refuses wider pictures


def fit_jpeg(image: np.ndarray, max_side: int = JPEG_MAX_SIDE) -> np.ndarray:
    """``image`` scaled down (area average, aspect kept) so that no side exceeds ``max_side``.

    A side-by-side picture of a 1:65 image is wider than JPEG can store; scaling it keeps the
    picture instead of failing the run. Pictures within the limit are returned unchanged.
    """
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, min(max_side, round(w * scale))), max(1, min(max_side, round(h * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


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
    """Side-by-side picture, both images scaled to ``height`` (less where the picture would be
    wider than JPEG's limit); matched points as dots (green:
    inlier, red: outlier) and lines for at most ``max_lines`` inliers, evenly chosen, so the
    picture stays readable with hundreds of matches.

    pts_q, pts_r: (M, 2) matched points in original pixels; inliers: (M,) bool.
    """
    q, r = _bgr8(query), _bgr8(refer)
    # Lower than ``height`` when the two side by side would be wider than JPEG allows (a 1:70 image).
    height = max(16, min(height, int(JPEG_MAX_SIDE / (q.shape[1] / q.shape[0] + r.shape[1] / r.shape[0]))))
    sq, sr = height / q.shape[0], height / r.shape[0]
    # the last step after the exact halvings is under 2x: bilinear, ~8x cheaper than area there
    q = shrink(q, (round(q.shape[1] * sq), height), cv2.INTER_LINEAR)
    r = shrink(r, (round(r.shape[1] * sr), height), cv2.INTER_LINEAR)
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


def shrink(img: np.ndarray, size: tuple[int, int], last: int = cv2.INTER_AREA) -> np.ndarray:
    """Area-average resize to ``size`` (w, h); exact halvings first while the image is over twice
    the target (OpenCV's integer-factor path: half the time at FIRE size, same look), then the
    rest of the way with ``last`` (area by default)."""
    while img.shape[1] >= 2 * size[0] and img.shape[0] >= 2 * size[1]:
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(img, size, interpolation=last)


def merged(query_equalised: np.ndarray, H, refer_equalised: np.ndarray) -> np.ndarray:
    """The contrast-equalised query warped by H in the red channel, the reference in the green:
    aligned vessels turn yellow.

    Both inputs are the registration's own uint8 CLAHE images (``enhance.equalise``), so the
    picture costs one single-channel warp. ``H``: a 3x3 homography, or for another transform its
    cv2.remap maps ``(mx, my)`` at the reference's size (``transform.inverse_maps``) or the
    transform object itself.
    """
    h, w = refer_equalised.shape[:2]
    if not isinstance(H, np.ndarray):
        mx, my = H if isinstance(H, tuple) else inverse_maps(H, (w, h))
        warped = cv2.remap(query_equalised, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return cv2.merge([np.zeros_like(refer_equalised), refer_equalised, warped])
    warped = cv2.warpPerspective(query_equalised, H, (w, h), flags=cv2.INTER_LINEAR)
    return cv2.merge([np.zeros_like(refer_equalised), refer_equalised, warped])


def checkerboard(query: np.ndarray, H, refer: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Alternating tiles of the query warped by H and of the reference; misalignment breaks
    vessels at tile edges. Tile (i, j) shows the query when i + j is odd.

    Only the query's tiles are warped, each through H followed by a shift to the tile's corner:
    half the work of warping the whole image, and no full-size warped copy. ``H`` may also be
    remap maps ``(mx, my)`` or a transform object, as in :func:`merged` (each tile remapped).
    """
    q, out = _bgr8(query), _bgr8(refer).copy()
    if not isinstance(H, np.ndarray):
        mx, my = H if isinstance(H, tuple) else inverse_maps(H, (out.shape[1], out.shape[0]))
        for i, (y0, y1) in enumerate(_tile_bounds(out.shape[0], tiles)):
            for j, (x0, x1) in enumerate(_tile_bounds(out.shape[1], tiles)):
                if (i + j) % 2:
                    out[y0:y1, x0:x1] = cv2.remap(q, mx[y0:y1, x0:x1], my[y0:y1, x0:x1], cv2.INTER_LINEAR,
                                                  borderMode=cv2.BORDER_CONSTANT)
        return out
    for i, (y0, y1) in enumerate(_tile_bounds(out.shape[0], tiles)):
        for j, (x0, x1) in enumerate(_tile_bounds(out.shape[1], tiles)):
            if (i + j) % 2:
                to_tile = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]]) @ H
                out[y0:y1, x0:x1] = cv2.warpPerspective(q, to_tile, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
    return out


def _tile_bounds(n: int, tiles: int) -> list[tuple[int, int]]:
    """[start, stop) of each tile along an axis of length n: pixel p is in tile p * tiles // n."""
    index = np.arange(n) * tiles // n
    starts = np.flatnonzero(np.diff(index, prepend=-1))
    return list(zip(starts.tolist(), [*starts[1:].tolist(), n]))
