"""Training samples: pairs of views of one fundus photograph with known correspondence.

Each photograph is enhanced and resized to the 768x768 model frame exactly as at inference,
so training crops show vessels at the scale the network sees when registering.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from superretina.enhance import equalise, model_input

from .augment import random_view, revisit, warp_points
from .eye_view import EyeView, random_eye_view
from .labels import junctions, vessel_mask_from_image


@dataclass
class Photo:
    name: str
    green: np.ndarray          # (H, W) uint8 raw green channel
    keypoints: np.ndarray      # (K, 2) float32 junctions in the model frame
    vessels: np.ndarray        # (frame, frame) bool vessel mask in the model frame


def load_photo(path: Path, frame: int, cache_dir: Path | None = None) -> Photo:
    """Read a photograph and its junction labels (vessel mask beside it, else Frangi)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not a readable image")
    h, w = bgr.shape[:2]
    mask_path = path.with_name(path.stem + "_vessels.png")
    cache = cache_dir / f"{path.stem}_{frame}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        z = np.load(cache)
        kp, vessels = z["keypoints"], z["vessels"]
    else:
        if mask_path.exists():
            mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127
        else:
            mask = vessel_mask_from_image(bgr)
        kp = junctions(mask) * np.array([frame / w, frame / h], np.float32)
        vessels = cv2.resize(mask.astype(np.uint8), (frame, frame), interpolation=cv2.INTER_NEAREST) > 0
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(cache, keypoints=kp, vessels=vessels)
    return Photo(path.stem, bgr[..., 1].copy(), kp.astype(np.float32), vessels)


def gaussian_heatmap(points: np.ndarray, size: int, sigma: float = 2.0) -> np.ndarray:
    """(size, size) float32 heatmap with a unit-peak Gaussian at each (x, y) point."""
    hm = np.zeros((size, size), np.float32)
    ip = np.round(points).astype(int)
    ok = (ip[:, 0] >= 0) & (ip[:, 0] < size) & (ip[:, 1] >= 0) & (ip[:, 1] < size)
    hm[ip[ok, 1], ip[ok, 0]] = 1.0
    # Kernel 13 with sigma 2 as in the reference, rescaled so each peak is 1.
    k = cv2.getGaussianKernel(13, sigma)
    hm = cv2.sepFilter2D(hm, -1, k, k, borderType=cv2.BORDER_CONSTANT)
    return np.minimum(hm / (k.max() ** 2), 1.0)


@dataclass
class PairSample:
    image_a: np.ndarray        # (crop, crop) float32
    image_b: np.ndarray
    heat_a: np.ndarray         # (crop, crop) float32
    heat_b: np.ndarray
    valid_b: np.ndarray        # (crop, crop) float32: 1 where view B shows the photograph
    points_a: np.ndarray       # (P, 2) float32 corresponding points, view A
    points_b: np.ndarray       # (P, 2) float32, view B
    eye: EyeView | None = None  # set when view B is an eye-model visit (augment.eye_model)


class PairSampler:
    """Draws training pairs from a list of photographs."""

    def __init__(self, photos: list[Photo], cfg: dict, seed: int = 0):
        self.photos = photos
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        self.frame = int(cfg["frame"])
        self.crop = int(cfg["crop"])

    def _enhanced(self, photo: Photo) -> np.ndarray:
        strength = float(self.cfg.get("photometric_strength", 1.0))
        artefacts = {"haze": float(self.cfg.get("haze", 0.0)), "reflections": float(self.cfg.get("reflections", 0.0))}
        green = revisit(self.rng, photo.green, strength, **artefacts) if self.rng.random() < 0.9 else photo.green
        return model_input(equalise(green), (self.frame, self.frame))

    def sample(self, index: int) -> PairSample:
        c, rng, g = self.crop, self.rng, self.cfg
        photo = self.photos[index]
        # Centre view A on a vessel pixel so crops show fundus, not the black surround.
        ys, xs = np.nonzero(photo.vessels)
        j = rng.integers(len(xs)) if len(xs) else None
        centre = None if j is None else (float(xs[j]), float(ys[j]))
        H_a = random_view(rng, self.frame, c, g["rot_a"], tuple(g["scale_a"]), 0.0, 0.0, centre)
        rel = random_view(rng, c, c, g["rot_rel"], tuple(g["scale_rel"]), g["shift_rel"], g["perspective"])
        H_b = rel @ H_a
        eye = None
        p_eye = float(g.get("eye_model", 0.0))
        # No draw at 0, so runs without the option replay exactly.
        if p_eye > 0 and rng.random() < p_eye:
            mid = warp_points(np.linalg.inv(H_a), np.array([[c / 2, c / 2]]))[0]  # A's centre on the frame
            eye = random_eye_view(rng, self.frame, c, H_b, mid, float(g.get("eye_max_gaze", 40.0)))
        img_a = cv2.warpPerspective(self._enhanced(photo), H_a, (c, c), flags=cv2.INTER_LINEAR)
        ones = np.ones((self.frame, self.frame), np.float32)
        if eye is None:
            img_b = cv2.warpPerspective(self._enhanced(photo), H_b, (c, c), flags=cv2.INTER_LINEAR)
            valid_b = cv2.warpPerspective(ones, H_b, (c, c))
            to_b = partial(warp_points, H_b)
        else:  # exact correspondences through the eye model; NaN where B cannot see a point
            maps = eye.maps()
            img_b = eye.render(self._enhanced(photo), maps)
            valid_b = eye.render(ones, maps)
            to_b = eye.points
        kp_a, kp_b = warp_points(H_a, photo.keypoints), to_b(photo.keypoints)
        kp_b = kp_b[np.all(np.isfinite(kp_b), axis=1)]
        # Correspondences for the descriptor loss: junctions plus random vessel pixels.
        n_extra = 8 * int(g["desc_points"])  # most fall outside the crop
        pick = rng.choice(len(xs), size=min(n_extra, len(xs)), replace=False) if len(xs) else []
        pts = np.concatenate([photo.keypoints, np.stack([xs[pick], ys[pick]], 1).astype(np.float32)])
        pa, pb = warp_points(H_a, pts), to_b(pts)
        m = 8
        inside = np.all((pa >= m) & (pa < c - m) & (pb >= m) & (pb < c - m), axis=1)
        pa, pb = pa[inside], pb[inside]
        if len(pa) > g["desc_points"]:
            sel = rng.choice(len(pa), size=int(g["desc_points"]), replace=False)
            pa, pb = pa[sel], pb[sel]
        return PairSample(img_a, img_b, gaussian_heatmap(kp_a, c), gaussian_heatmap(kp_b, c),
                          valid_b, pa, pb, eye)
