"""Transforms beyond the homography: fitting, inversion, warping, JSON, model choice and guards."""
import json

import cv2
import numpy as np
import pytest

from superretina.fire.evaluate import read_pairs_csv, run_pair
from superretina.fire.outcome import RegistrationOutcome
from superretina.fire.protocol import PairSpec, pair_error
from superretina.homography import transform_points
from superretina.transform import (HomographyTransform, QuadraticTransform, apply_saved_transform,
                                   choose_transform, fit_quadratic, inverse_maps, residual_stats,
                                   robust_quadratic, transform_from_json, warp_image,
                                   warp_with_saved_transform)

SIZE = 2912
SCALE = 11.4   # Cauchy scale at FIRE size (3 model px x 2912 / 768)


def _curved(rng=None):
    """A quadratic like a small-overlap pair's: a shift and rotation plus ~10 px of curvature
    over the image (normalised coordinates: centre 1456, unit = 1000 px)."""
    a = np.array([[0.05, 1.01, 0.04, 0.006, -0.004, 0.003],
                  [-0.03, -0.035, 0.99, 0.002, 0.005, -0.006]])
    return QuadraticTransform(a, [1456, 1456], 1e-3, [1500, 1420], 1e-3)


def _matches(t, rng, n=600, lo=300, hi=2600, noise=0.7, outliers=0.5):
    pq = rng.uniform(lo, hi, (n, 2))
    pr = t.apply(pq) + rng.normal(0, noise, (n, 2))
    bad = rng.random(n) < outliers
    pr[bad] = rng.uniform(0, SIZE, (int(bad.sum()), 2))
    return pq, pr


def _lmeds(pq, pr):
    H, _ = cv2.findHomography(pq, pr, cv2.LMEDS)
    return H / H[2, 2]


def test_known_quadratic_recovered_from_noiseless_points():
    rng = np.random.default_rng(0)
    truth = _curved()
    pq = rng.uniform(200, 2700, (300, 2))
    fitted, cond = fit_quadratic(pq, truth.apply(pq))
    probe = rng.uniform(200, 2700, (1000, 2))           # not the fitting points
    assert np.abs(fitted.apply(probe) - truth.apply(probe)).max() < 1e-6
    assert cond < 1e3
    # the robust fit from a homography start recovers it too (all points inliers)
    robust, _ = robust_quadratic(pq, truth.apply(pq), _lmeds(pq, truth.apply(pq)), SCALE)
    assert np.abs(robust.apply(probe) - truth.apply(probe)).max() < 1e-6


def test_inverse_round_trip_and_warp_maps_within_a_tenth_of_a_pixel():
    rng = np.random.default_rng(1)
    t = _curved()
    q = rng.uniform(300, 2600, (2000, 2))
    assert np.abs(t.inverse(t.apply(q)) - q).max() < 1e-6
    # the warp's per-pixel inverse (coarse Newton grid, enlarged) at whole reference pixels
    mx, my = inverse_maps(t, (SIZE, SIZE))
    ys = rng.integers(400, 2500, (3000, 2))
    back = np.stack([mx[ys[:, 1], ys[:, 0]], my[ys[:, 1], ys[:, 0]]], 1).astype(np.float64)
    assert np.abs(t.apply(back) - ys).max() < 0.1
    # a homography's inverse is exact
    H = HomographyTransform(np.array([[1.02, 0.03, 40], [-0.01, 0.98, -25], [1e-6, 2e-6, 1.0]]))
    assert np.abs(H.inverse(H.apply(q)) - q).max() < 1e-6


def test_warp_image_puts_dots_where_the_transform_sends_them():
    t = QuadraticTransform(_curved().coeffs, [256, 256], 5.0e-3, [265, 250], 5.0e-3)
    pts = np.array([[150.3, 170.7], [350.2, 140.9], [260.8, 330.1], [120.5, 380.4]])
    img = np.zeros((512, 512), np.float32)
    for x, y in pts:
        cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), 4 * 16, 1.0, -1, cv2.LINE_AA, shift=4)
    warped = warp_image(img, t, (512, 512))
    mapped = t.apply(pts)
    for (x, y), (mx_, my_) in zip(pts, mapped):
        win = (slice(int(my_) - 10, int(my_) + 11), slice(int(mx_) - 10, int(mx_) + 11))
        w = warped[win]
        yy, xx = np.mgrid[win]
        c = np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()
        assert np.hypot(*(c - (mx_, my_))) < 0.3
    # a homography still goes through warpPerspective exactly
    H = np.array([[1.01, 0.02, 5], [-0.02, 0.99, -7], [1e-5, 0, 1.0]])
    assert np.array_equal(warp_image(img, H, (512, 512)), cv2.warpPerspective(img, H, (512, 512)))


def test_json_round_trip_and_saved_transform_functions(tmp_path):
    t = _curved()
    t.domain = np.array([300.0, 300.0, 2600.0, 2600.0])
    d = t.to_json()
    assert d["model"] == "quadratic" and d["direction"].startswith("query -> reference")
    assert set(d["normalisation"]) >= {"query", "reference"}
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"transform": d, "homography": np.eye(3).tolist()}))
    pts = np.array([[500.0, 600.0], [2000.0, 1500.0]])
    assert np.abs(apply_saved_transform(path, pts) - t.apply(pts)).max() < 1e-9
    img = (np.arange(256 * 256) % 251).astype(np.uint8).reshape(256, 256)
    small = QuadraticTransform(t.coeffs, [128, 128], 1 / 90, [130, 126], 1 / 90)
    assert np.array_equal(warp_with_saved_transform({"transform": small.to_json()}, img, (256, 256)),
                          warp_image(img, small, (256, 256)))
    H = HomographyTransform(np.array([[1, 0, 3.0], [0, 1, -2], [0, 0, 1]]))
    assert np.allclose(transform_from_json(H.to_json()).H, H.H)
    with pytest.raises(ValueError, match="transform.parameters"):
        transform_from_json({"model": "quadratic", "parameters": [[1, 2]], "normalisation": {}})
    with pytest.raises(ValueError, match="transform.model"):
        transform_from_json({"model": "spline"})


def test_quadratic_chosen_on_curved_matches_and_homography_on_flat_ones():
    rng = np.random.default_rng(2)
    t = _curved()
    pq, pr = _matches(t, rng)
    H = _lmeds(pq, pr)
    for model in ("quadratic", "auto"):
        c = choose_transform(model, pq, pr, H, SCALE, (SIZE, SIZE), (SIZE, SIZE))
        assert c.model == "quadratic" and c.reason is None, c.reason
        assert c.held_out["quadratic"] < 0.9 * c.held_out["homography"]
        probe = rng.uniform(400, 2500, (500, 2))
        assert np.abs(c.transform.apply(probe) - t.apply(probe)).max() < 1.0
    # the homography's own residuals are several px, the quadratic's at the noise level
    good = np.linalg.norm(t.apply(pq) - pr, axis=1) < 3
    assert residual_stats(c.transform, pq[good], pr[good])["median_px"] < 1.2
    assert residual_stats(HomographyTransform(H), pq[good], pr[good])["median_px"] > 1.5
    # matches that a homography explains: auto keeps the homography and says why
    Ht = np.array([[1.02, 0.03, 40], [-0.01, 0.98, -25], [1e-6, 2e-6, 1.0]])
    pq2 = rng.uniform(300, 2600, (600, 2))
    pr2 = transform_points(Ht, pq2) + rng.normal(0, 0.7, (600, 2))
    c = choose_transform("auto", pq2, pr2, _lmeds(pq2, pr2), SCALE, (SIZE, SIZE), (SIZE, SIZE))
    assert c.model == "homography" and "held-out" in c.reason
    assert choose_transform("homography", pq, pr, H, SCALE, (SIZE, SIZE), (SIZE, SIZE)).reason is None


@pytest.mark.parametrize("layout,reason", [
    ("few", "only"), ("collinear", "collinear"), ("clustered", "cover"), ("circle", "ill-conditioned"),
    ("near-circle", "ill-conditioned")])
def test_degenerate_matches_fall_back_to_the_homography_with_a_reason(layout, reason):
    rng = np.random.default_rng(3)
    t = _curved()
    if layout == "few":
        pq = rng.uniform(300, 2600, (20, 2))
    elif layout == "collinear":           # along a vessel: a thin band
        s = rng.uniform(300, 2600, 300)
        pq = np.stack([s, 0.3 * s + 500 + rng.normal(0, 5, 300)], 1)
    elif layout == "clustered":           # one corner of the overlap
        pq = rng.uniform(300, 800, (300, 2))
    else:                                 # on a circle: x^2 + y^2 is constant, the basis degenerate
        a = rng.uniform(0, 2 * np.pi, 300)
        radius = 1000.0 + (rng.normal(0, 1e-3, 300) if layout == "near-circle" else 0.0)
        pq = 1456 + np.stack([radius * np.cos(a), radius * np.sin(a)], 1)
    pr = t.apply(pq)
    H = cv2.findHomography(pq, pr, 0)[0]
    c = choose_transform("quadratic", pq, pr, H, SCALE, (SIZE, SIZE), (SIZE, SIZE))
    assert c.model == "homography" and np.array_equal(c.transform.H, H / H[2, 2])
    assert reason in c.reason, c.reason


def test_fire_protocol_scores_a_quadratic_transform(tmp_path):
    """Control points mapped through the returned quadratic: exact truth scores 0 px where the
    best homography through the same points cannot."""
    rng = np.random.default_rng(4)
    t = _curved()
    q = rng.uniform(500, 2400, (10, 2))
    r = t.apply(q)
    H = cv2.findHomography(q, r, 0)[0]
    assert pair_error(H, q, r, 0.5).mean > 0.5
    pe = pair_error(H, q, r, 0.5, transform=t)
    assert pe.mean < 1e-9 and pe.status == "acceptable"
    assert pair_error(None, q, r, 0.5, transform=t).status == "failed"   # failure rules unchanged
    # through the batch runner: pairs.csv records the model
    gt = tmp_path / "control_points_P01_1_2.txt"
    gt.write_text("".join(f"{a} {b} {c} {d}\n" for (a, b), (c, d) in zip(r, q)))
    img = tmp_path / "P01_1.jpg"
    img.write_bytes(b"x")
    spec = PairSpec("P01", "P", img, img, gt)
    row = run_pair(spec, lambda qp, rp: RegistrationOutcome("registered", H=H, num_matches=9, num_inliers=5,
                                                            inlier_rate=5 / 9, transform=t))
    assert row["model"] == "quadratic" and row["mean_error"] < 1e-9
    from superretina.fire.evaluate import evaluate
    fn = lambda qp, rp: RegistrationOutcome("registered", H=H, num_matches=9, num_inliers=5,  # noqa: E731
                                            inlier_rate=5 / 9, transform=t)
    evaluate([spec], fn, tmp_path / "run", progress=False, verbose=False, method="quadratic-oracle")
    back = read_pairs_csv(tmp_path / "run" / "pairs.csv")
    assert back[0]["model"] == "quadratic" and back[0]["mean_error"] < 1e-6


def test_pairs_csv_from_before_the_model_column_reads_as_homography(tmp_path):
    from superretina.fire.evaluate import CSV_COLUMNS

    old = tmp_path / "pairs.csv"
    old.write_text(",".join(CSV_COLUMNS[: CSV_COLUMNS.index("reason") + 1]) + "\nS01,S,1.5,1.4,2.0,acceptable,100,60,0.600000,0.5000,"
                   + " ".join(["1", "0", "0", "0", "1", "0", "0", "0", "1"]) + ",\n")
    rows = read_pairs_csv(old)
    assert len(rows) == 1 and rows[0]["model"] == "homography" and rows[0]["mean_error"] == 1.5


def test_bad_transform_model_in_a_config_is_a_one_line_error(tmp_path):
    from superretina.config import ConfigError, load_config

    bad = tmp_path / "my.yaml"
    bad.write_text("transform:\n  model: spline\n")
    with pytest.raises(ConfigError, match=r"my\.yaml: transform\.model must be one of homography, quadratic, auto, got .spline."):
        load_config(bad)
    assert load_config()["transform"]["model"] == "quadratic"
