"""Random geometry and visit-to-visit appearance changes for training pairs.

Geometry is expressed as 3x3 homographies from the 768x768 model frame into a crop; the
photometric changes act on the raw photograph before enhancement, as a second visit would.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..homography import transform_points


def random_view(rng: np.random.Generator, frame: int, crop: int, rot_deg: float, scale: tuple,
                shift: float, perspective: float, centre=None) -> np.ndarray:
    """Homography mapping the model frame (frame x frame) into a crop x crop view.

    The view looks at a window of the frame around ``centre`` (x, y; random when None), rotated by up to ``rot_deg`` degrees,
    scaled by ``scale``=(lo, hi) and shifted by up to ``shift`` of the crop size, with a small
    random perspective component.
    """
    a = np.deg2rad(rng.uniform(-rot_deg, rot_deg))
    s = rng.uniform(*scale)
    # Window centre: keep most of the crop on the frame.
    cx, cy = rng.uniform(crop * 0.4, frame - crop * 0.4, size=2) if centre is None else centre
    tx, ty = rng.uniform(-shift, shift, size=2) * crop
    to_origin = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], float)
    rot = np.array([[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0], [0, 0, 1]])
    persp = np.eye(3)
    persp[2, :2] = rng.uniform(-perspective, perspective, size=2) / crop
    to_crop = np.array([[1, 0, crop / 2 + tx], [0, 1, crop / 2 + ty], [0, 0, 1]], float)
    return to_crop @ persp @ rot @ to_origin


def warp_points(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a homography to (K, 2) points."""
    if len(pts) == 0:
        return pts.reshape(0, 2).astype(np.float32)
    return transform_points(H, pts).astype(np.float32)


def revisit(rng: np.random.Generator, green: np.ndarray, strength: float = 1.0, haze: float = 0.0,
            reflections: float = 0.0) -> np.ndarray:
    """Appearance of another visit: illumination field, gamma, contrast, blur, noise, resolution;
    optionally media haze and lens reflections (:func:`hazy`, :func:`reflections_of_lens`).

    green: (H, W) uint8 raw green channel. haze: the largest veil fraction (0 = never);
    reflections: the probability of lens reflections (0 = never). With both 0 the random draws
    are those of the original augmentation, so earlier training runs replay exactly.
    Returns (H, W) uint8.
    """
    h, w = green.shape
    g = green.astype(np.float32) / 255.0
    # Smooth illumination field (uneven flash, vignetting).
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (max(h, w) ** 2)
    g *= 1.0 + strength * rng.uniform(-0.35, 0.35) * np.exp(-r2 * rng.uniform(1, 4))
    g = np.clip(g, 0, 1) ** rng.uniform(1 - 0.35 * strength, 1 + 0.45 * strength)
    g = g * rng.uniform(1 - 0.3 * strength, 1 + 0.2 * strength) + rng.uniform(-0.05, 0.05) * strength
    if rng.random() < 0.5:  # a lower-resolution camera
        f = rng.uniform(0.45, 0.9)
        small = cv2.resize(g, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
        g = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        g = cv2.GaussianBlur(g, (0, 0), rng.uniform(0.3, 1.5 * strength + 0.3))
    g = g + rng.normal(0, rng.uniform(0, 0.02 * strength), g.shape).astype(np.float32)
    if rng.random() < 0.5 * strength:
        g = lesions(rng, g)
    if haze > 0 and rng.random() < 0.5:  # (the field of view from the photograph as taken)
        g = hazy(rng, g, rng.uniform(0.2, 1.0) * haze, field_of_view(green.astype(np.float32) / 255.0))
    if reflections > 0 and rng.random() < reflections:
        g = reflections_of_lens(rng, g)
    return (np.clip(g, 0, 1) * 255 + 0.5).astype(np.uint8)


def hazy(rng: np.random.Generator, g: np.ndarray, veil: float, fundus: np.ndarray) -> np.ndarray:
    """Media opacity (cataract, vitreous haze): a bright, blurred veil over the fundus, so that
    vessels keep ``1 - veil`` of their contrast. g: (H, W) float32 in [0, 1]; fundus: its
    :func:`field_of_view`."""
    h, w = g.shape
    level = float(np.percentile(g[fundus > 0.5], 90)) if (fundus > 0.5).any() else 0.5
    sigma = 0.05 * max(h, w)  # the local brightness, from inside the field of view only (no dark rim)
    local = cv2.GaussianBlur(g * fundus, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(fundus, (0, 0), sigma), 1e-3)
    light = local * rng.uniform(0.3, 0.6) + level * rng.uniform(0.5, 0.8)
    return g * (1 - veil * fundus) + veil * light * fundus


def field_of_view(g: np.ndarray) -> np.ndarray:
    """Soft mask (float32, 0..1) of the camera's round field of view of a photograph as taken
    (g in [0, 1]): filled, dim periphery and dark vessels included (a per-pixel threshold would
    leave holes there)."""
    side = max(g.shape)
    inside = (cv2.GaussianBlur(g, (0, 0), 0.003 * side) > 10 / 255).astype(np.uint8)  # surround: < ~5 grey levels
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(0.05 * side) | 1,) * 2)
    inside = cv2.morphologyEx(inside, cv2.MORPH_CLOSE, k).astype(np.float32)
    return cv2.GaussianBlur(inside, (0, 0), 0.002 * side)


def reflections_of_lens(rng: np.random.Generator, g: np.ndarray) -> np.ndarray:
    """Reflections off the camera's optics: a few small, soft, near-saturated spots over the
    fundus and a broad glare patch. g: (H, W) float32 in [0, 1]."""
    h, w = g.shape
    side = max(h, w)
    spots = np.zeros_like(g)
    ys, xs = np.nonzero(g > 0.08)
    if len(xs) == 0:
        return g
    for _ in range(rng.integers(2, 10)):
        i = rng.integers(len(xs))
        r = rng.uniform(0.004, 0.015) * side
        cv2.circle(spots, (int(xs[i]), int(ys[i])), max(1, int(r)), float(rng.uniform(0.5, 1.0)), -1)
    spots = cv2.GaussianBlur(spots, (0, 0), max(1.0, 0.003 * side))
    i = rng.integers(len(xs))
    glare = np.zeros_like(g)
    cv2.circle(glare, (int(xs[i]), int(ys[i])), int(rng.uniform(0.05, 0.15) * side), float(rng.uniform(0.1, 0.35)), -1)
    glare = cv2.GaussianBlur(glare, (0, 0), 0.04 * side)
    return np.clip(g + (1 - g) * np.clip(spots + glare, 0, 1), 0, 1)


def lesions(rng: np.random.Generator, g: np.ndarray) -> np.ndarray:
    """Anatomical change between visits: soft dark (haemorrhage-like) and bright (exudate-like) spots.

    g: (H, W) float32 in [0, 1]; spots are drawn where the fundus is (not on the black surround).
    """
    h, w = g.shape
    ys, xs = np.nonzero(g > 0.08)
    if len(xs) == 0:
        return g
    spots = np.zeros_like(g)
    for _ in range(rng.integers(1, 15)):
        i = rng.integers(len(xs))
        r = rng.uniform(0.004, 0.03) * max(h, w)
        cv2.circle(spots, (int(xs[i]), int(ys[i])), max(1, int(r)), float(rng.choice([-0.6, 0.5])), -1)
    spots = cv2.GaussianBlur(spots, (0, 0), max(1.0, 0.004 * max(h, w)))
    return np.clip(g * (1 + spots), 0, 1)
