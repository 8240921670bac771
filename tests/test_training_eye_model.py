"""Eye-model training pairs (augment.eye_model): off by default and unchanged when off; when on,
view B is a gaze-turned visit whose points and pixels agree with the eye model's maps."""
import hashlib

import numpy as np
import pytest
import yaml
from pathlib import Path

from superretina.homography import transform_points
from superretina.training.dataset import Photo, PairSampler
from superretina.training.eye_view import random_eye_view

CFG = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "train.yaml").read_text())
FRAME, CROP = 256, 128


def dot_photo(spacing: int = 24, sigma: float = 1.5) -> Photo:
    """A 256x256 'photograph': bright Gaussian dots on a grey disc; the dots are the junction
    labels and the vessel pixels, so every training correspondence is a dot centre."""
    yy, xx = np.mgrid[0:FRAME, 0:FRAME].astype(np.float32)
    pts = np.array([(x, y) for y in range(20, FRAME - 19, spacing) for x in range(20, FRAME - 19, spacing)
                    if np.hypot(x - 127.5, y - 127.5) < 110], np.float32)
    img = np.zeros((FRAME, FRAME), np.float32)
    for x, y in pts:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    disc = np.hypot(xx - 127.5, yy - 127.5) < 124
    green = np.where(disc, 60 + 150 * np.clip(img, 0, 1), 0).astype(np.uint8)
    vessels = np.zeros((FRAME, FRAME), bool)
    vessels[pts[:, 1].astype(int), pts[:, 0].astype(int)] = True
    return Photo("dots", green, pts, vessels)


def augment_cfg(**kw) -> dict:
    g = {k: v for k, v in CFG["augment"].items() if not k.startswith("eye_")}   # today's keys only
    g.update({"frame": FRAME, "crop": CROP, "desc_points": 64, **kw})
    return g


def sample_digest(cfg: dict, images: bool) -> str:
    s = PairSampler([dot_photo()], cfg, seed=7)
    h = hashlib.sha256()
    for _ in range(4):
        x = s.sample(0)
        arrays = [x.points_a, x.points_b] + ([x.image_a, x.image_b, x.heat_a, x.heat_b, x.valid_b] if images else [])
        for a in arrays:
            h.update(np.ascontiguousarray(a).tobytes())
    h.update(s.rng.bytes(32))           # the generator's position: the same number of draws
    return h.hexdigest()


def test_option_off_leaves_samples_and_draws_unchanged():
    base = augment_cfg()
    off = augment_cfg(eye_model=0.0, eye_max_gaze=40)
    assert sample_digest(base, images=True) == sample_digest(off, images=True)
    # Correspondences and generator position of the sampler before the option existed (commit
    # 96d4891; pure numpy, so the same on any machine): today's pairs, not just "equal to itself".
    assert sample_digest(off, images=False) == "49d998bac677b2b2add13663afdf7675e5fe4cca61243ab51d6fc78f35095df6"
    on = augment_cfg(eye_model=1.0)
    assert sample_digest(on, images=False) != sample_digest(off, images=False)


def test_eye_view_points_agree_with_the_inverse_map_and_include_large_gazes():
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(8.0, FRAME, 16), np.arange(8.0, FRAME, 16)), -1).reshape(-1, 2)
    gazes = []
    for _ in range(40):
        H_view = np.array([[1, 0, CROP / 2 - 128.0], [0, 1, CROP / 2 - 100.0], [0, 0, 1]])
        ev = random_eye_view(rng, FRAME, CROP, H_view, (128.0, 100.0), 40.0)
        gazes.append(ev.gaze_deg)
        b = ev.points(grid)
        seen = np.all(np.isfinite(b), axis=1)
        assert seen.sum() > 20
        # back through the other direction of the eye model (pixels -> retina -> canvas)
        back = ev.geometry.query_to_canvas(transform_points(np.linalg.inv(ev.H_b), b[seen]))
        np.testing.assert_allclose(back, grid[seen], atol=1e-3)   # float32 output: ~1e-5 px
        # A's centre stays where the plain homography pair would put it
        np.testing.assert_allclose(ev.points(np.array([[128.0, 100.0]])), [[CROP / 2, CROP / 2]], atol=1e-3)
    assert max(gazes) > 25 and min(gazes) < 10


def test_rendered_dots_sit_on_the_mapped_points():
    photo = dot_photo(sigma=1.2)
    frame = photo.green.astype(np.float32) / 255
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(6):
        H_view = np.array([[1.1, 0.1, CROP / 2 - 130.0], [-0.1, 1.1, CROP / 2 - 120.0], [0, 0, 1]])
        ev = random_eye_view(rng, FRAME, CROP, H_view, (127.0, 127.0), 40.0)
        maps = ev.maps()
        checked += _check_dots(ev.render(frame, maps), ev.points(photo.keypoints), tol=0.1, valid=maps[2])
    assert checked > 40


def test_sampler_eye_pairs_show_each_correspondence_on_the_same_dot():
    cfg = augment_cfg(eye_model=1.0, photometric_strength=0.0, desc_points=200)
    s = PairSampler([dot_photo(sigma=1.5)], cfg, seed=11)
    checked, gazes = 0, []
    for _ in range(4):
        x = s.sample(0)
        assert x.eye is not None
        gazes.append(x.eye.gaze_deg)
        checked += _check_dots(x.image_a, x.points_a, tol=0.4)
        checked += _check_dots(x.image_b, x.points_b, tol=0.4, valid=x.valid_b)
        # the detector target of B marks the same points
        ip = np.round(x.points_b).astype(int)
        assert (x.heat_b[ip[:, 1], ip[:, 0]] > 0.6).all()
    assert checked > 40


def _check_dots(view: np.ndarray, pts: np.ndarray, tol: float, valid=None, r: int = 4) -> int:
    """Intensity centroid of the dot around each point is within tol px (points whose window
    leaves the view or, with ``valid``, the camera's aperture are skipped: the edge cuts the dot)."""
    n = 0
    for x, y in pts:
        if not (np.isfinite(x) and r + 2 <= x < view.shape[1] - r - 2 and r + 2 <= y < view.shape[0] - r - 2):
            continue
        ix, iy = int(round(x)), int(round(y))
        if valid is not None and valid[iy - r:iy + r + 1, ix - r:ix + r + 1].min() < 0.999:
            continue
        w = view[iy - r:iy + r + 1, ix - r:ix + r + 1].astype(np.float64)
        w = np.clip(w - np.median(w), 0, None)
        if w.sum() == 0:
            continue
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        c = np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum() + [ix, iy]
        assert np.hypot(*(c - [x, y])) < tol, (x, y, c)
        n += 1
    return n
