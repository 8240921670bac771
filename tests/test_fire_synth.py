"""Synthetic FIRE-format sets: layout, determinism, exact ground truth, category overlaps.

These tests run the version-1 homography geometry (``geometry="homography"``); the eye-model
geometry (the default) is tested in test_eye_model.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from superretina.fire.protocol import list_pairs, load_control_points
from superretina.homography import transform_points
from superretina.fire.synth import (CATEGORY_PARAMS, PairGeometry, SmoothField, choose_control_points,
                                    ground_truth, load_source, make_synthetic_set, overlap_fraction,
                                    place_on_canvas, random_homography)

SIZE = 384


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "set"
    # Two sources (the same photograph twice, once mirrored) so that indices >0 are exercised.
    _, retina = load_source("skimage:retina")
    make_synthetic_set(out, ["skimage:retina", np.ascontiguousarray(retina[:, ::-1])],
                       pairs_per_image=3, size=SIZE, seed=7, progress=False, geometry="homography")
    return out


def test_layout_and_ground_truth_format(synth_set):
    meta = json.loads((synth_set / "synthetic.json").read_text())
    assert meta["complete"] and meta["seed"] == 7 and meta["size"] == SIZE
    pairs = list_pairs(synth_set)
    assert [p.name for p in pairs] == ["A01", "A02", "P01", "P02", "S01", "S02"]
    assert (synth_set / "Masks" / "mask.png").is_file()
    for p in pairs:
        for img_path in (p.query_path, p.refer_path):
            img = cv2.imread(str(img_path))
            assert img.shape == (SIZE, SIZE, 3)
        lines = p.gt_path.read_text().splitlines()
        assert len(lines) == 10 and all(len(line.split()) == 4 for line in lines)
        ref, qry = load_control_points(p.gt_path)
        assert ((ref > 0) & (ref < SIZE - 1)).all() and ((qry > 0) & (qry < SIZE - 1)).all()
        # spread out: no two control points closer than 5 % of the side
        d = np.hypot(*(ref[:, None] - ref[None]).transpose(2, 0, 1))
        assert d[~np.eye(10, dtype=bool)].min() > 0.05 * SIZE
        rec = meta["pairs"][p.name]
        assert rec["category"] == p.category
        assert 0.5 <= rec["query_appearance"]["resolution_scale"] <= 0.8
        assert rec["query_appearance"]["jpeg_quality"] < rec["reference_appearance"]["jpeg_quality"]
        # the non-rigid field is something no homography explains
        assert rec["best_homography_error_px"] > 0.02
        if p.category == "A":
            assert any(les["kind"] == "haemorrhage" for les in rec["query_appearance"]["lesions"])
            assert any(les["kind"] == "exudate" for les in rec["query_appearance"]["lesions"])


def test_deterministic_per_seed(synth_set, tmp_path):
    _, retina = load_source("skimage:retina")
    srcs = ["skimage:retina", np.ascontiguousarray(retina[:, ::-1])]
    make_synthetic_set(tmp_path / "same", srcs, pairs_per_image=3, size=SIZE, seed=7, progress=False,
                       geometry="homography")
    assert _files(tmp_path / "same") == _files(synth_set)
    make_synthetic_set(tmp_path / "other", srcs[:1], pairs_per_image=3, size=SIZE, seed=8, progress=False,
                       geometry="homography")
    a, b = _files(tmp_path / "other"), _files(synth_set)
    for name in ["Ground Truth/control_points_S01_1_2.txt", "Images/S01_2.jpg", "Images/P01_1.jpg"]:
        assert a[name] != b[name]


def _dot_image(points, size, sigma=1.2):
    """Float image with one Gaussian dot (peak 1) at each sub-pixel point."""
    img = np.zeros((size, size), np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    for x, y in points:
        r = 6
        x0, y0 = int(x) - r, int(y) - r
        sl = (slice(max(0, y0), y0 + 2 * r + 1), slice(max(0, x0), x0 + 2 * r + 1))
        img[sl] += np.exp(-((xx[sl] - x) ** 2 + (yy[sl] - y) ** 2) / (2 * sigma ** 2))
    return img


def _centroid_error(img, points, r=5):
    errs = []
    for x, y in points:
        ix, iy = int(round(x)), int(round(y))
        patch = img[iy - r:iy + r + 1, ix - r:ix + r + 1].astype(np.float64)
        yy, xx = np.mgrid[iy - r:iy + r + 1, ix - r:ix + r + 1]
        w = patch.sum()
        assert w > 0.5, "dot not rendered near its ground-truth position"
        errs.append(np.hypot((patch * xx).sum() / w - x, (patch * yy).sum() / w - y))
    return max(errs)


def test_control_points_exact_under_distortion(synth_set):
    """Dots drawn at the canvas positions of the control points, rendered by each pair's own
    geometry (read back from synthetic.json), land on the ground-truth positions."""
    meta = json.loads((synth_set / "synthetic.json").read_text())
    for p in list_pairs(synth_set):
        geom = PairGeometry.from_dict(meta["pairs"][p.name]["geometry"])
        ref, qry = load_control_points(p.gt_path)
        canvas_pts = geom.reference_to_canvas(ref)
        np.testing.assert_allclose(canvas_pts, meta["pairs"][p.name]["canvas_points"], atol=1e-3)
        # round trip of the written (4-decimal) query points through the rendering map
        assert np.hypot(*(geom.query_to_canvas(qry) - canvas_pts).T).max() < 0.05
        canvas = _dot_image(canvas_pts, SIZE)
        assert _centroid_error(geom.render_query(canvas), qry) < 0.5
        assert _centroid_error(geom.render_reference(canvas), ref) < 0.5


def test_control_points_exact_under_strong_distortion():
    """Same dots check with a field far stronger than the generator's, so that ground truth
    that ignored the field (the homography alone) would be off by pixels and fail."""
    rng = np.random.default_rng(3)
    _, retina = load_source("skimage:retina")
    placement = place_on_canvas(retina, SIZE)
    geom = PairGeometry(SIZE, random_homography(rng, SIZE, 3, (0.97, 1.03), 0.02, 0.01),
                        random_homography(rng, SIZE, 8, (0.95, 1.05), 0.05, 0.02),
                        SmoothField.random(rng, SIZE, amplitude_px=8.0))
    ref_clean = geom.render_reference(placement.image, placement.image_to_canvas)
    ref = choose_control_points(rng, geom, placement, ref_clean)
    canvas_pts, qry = ground_truth(geom, ref)
    homography_only = transform_points(np.linalg.inv(geom.true_homography()), ref)
    assert np.hypot(*(homography_only - qry).T).max() > 1.5
    canvas = _dot_image(canvas_pts, SIZE)
    assert _centroid_error(geom.render_query(canvas), qry) < 0.5
    assert _centroid_error(geom.render_reference(canvas), ref) < 0.5


def test_field_inverse_and_grid_agree():
    rng = np.random.default_rng(0)
    geom = PairGeometry(512, np.eye(3), np.array([[1.01, 0.02, 5], [-0.02, 0.99, -7], [1e-5, 0, 1]]),
                        SmoothField.random(rng, 512, amplitude_px=4.0))
    pts = rng.uniform(0, 511, size=(200, 2))
    back = geom.query_to_canvas(geom.canvas_to_query(pts))
    assert np.abs(back - pts).max() < 1e-6
    dx, dy = geom.field.grid(512, 512, 100, 140)
    ys, xs = np.mgrid[100:140, 0:512]
    d = geom.field(np.stack([xs.ravel(), ys.ravel()], 1).astype(float))
    np.testing.assert_allclose(dx.ravel(), d[:, 0], atol=1e-9)
    np.testing.assert_allclose(dy.ravel(), d[:, 1], atol=1e-9)
    assert np.abs(geom.field(pts)).max() <= 4.0 + 1e-9


def test_category_overlaps(synth_set):
    meta = json.loads((synth_set / "synthetic.json").read_text())
    _, retina = load_source("skimage:retina")
    placements = [place_on_canvas(retina, SIZE), place_on_canvas(np.ascontiguousarray(retina[:, ::-1]), SIZE)]
    for name, rec in meta["pairs"].items():
        lo, hi = CATEGORY_PARAMS[rec["category"]]["overlap"]
        geom = PairGeometry.from_dict(rec["geometry"])
        ov = overlap_fraction(geom, placements[rec["source"]])
        assert ov == pytest.approx(rec["overlap"], abs=1e-9)
        assert lo <= ov <= hi, (name, ov)
    assert max(r["overlap"] for r in meta["pairs"].values() if r["category"] == "P") <= 0.5
    assert min(r["overlap"] for r in meta["pairs"].values() if r["category"] != "P") >= 0.75


def test_refuses_non_empty_folder(synth_set):
    with pytest.raises(FileExistsError, match="not empty"):
        make_synthetic_set(synth_set, ["skimage:retina"], pairs_per_image=1, size=SIZE, progress=False)
    with pytest.raises(ValueError, match="categories"):
        make_synthetic_set(synth_set.parent / "x", ["skimage:retina"], categories=("Q",), size=SIZE)


def test_cli_help():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "python")}
    r = subprocess.run([sys.executable, "-m", "superretina.fire.synth", "--help"], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0 and "--pairs-per-image" in r.stdout and "--from" in r.stdout


def test_visit_texture_shares_structure_not_fine_detail(retina_bgr):
    """Two visits keep the vessels (coarse structure) but not the photograph's fine texture."""
    from superretina.fire.synth import visit_texture

    img = cv2.resize(retina_bgr, (512, 512), interpolation=cv2.INTER_AREA).astype(np.float32)
    a = visit_texture(np.random.default_rng(1), img, 1.5, 0.06)[..., 1]
    b = visit_texture(np.random.default_rng(2), img, 1.5, 0.06)[..., 1]

    def band(x, lo, hi):
        return (cv2.GaussianBlur(x, (0, 0), lo) - cv2.GaussianBlur(x, (0, 0), hi)).ravel()

    fine = np.corrcoef(band(a, 0.5, 2.0), band(b, 0.5, 2.0))[0, 1]
    coarse = np.corrcoef(band(a, 4.0, 16.0), band(b, 4.0, 16.0))[0, 1]
    assert fine < 0.5 < 0.9 < coarse, (fine, coarse)
