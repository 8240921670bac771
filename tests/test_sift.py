"""SIFT baseline: registration accuracy on synthetic pairs, coordinate scaling, failures."""
import cv2
import numpy as np
import pytest

from superretina.fire.protocol import pair_error
from superretina.homography import transform_points
from superretina.fire.sift import make_register_fn, register_sift
from superretina.image_io import read_image
from superretina.fire.synth import make_pair, place_on_canvas


@pytest.fixture(scope="module")
def s_pair(retina_bgr):
    return make_pair(np.random.default_rng([11, 0, 0]), place_on_canvas(retina_bgr, 512), "S", 512)


def test_registers_synthetic_s_pair(s_pair):
    res = register_sift(s_pair["query"], s_pair["reference"])
    assert res.H is not None and res.failure_reason == ""
    assert res.num_inliers >= 20 and 0 < res.inlier_rate <= 1
    assert res.num_keypoints_query > res.num_matches >= res.num_inliers
    err = pair_error(res.H, s_pair["query_pts"], s_pair["ref_pts"], res.inlier_rate)
    assert err.status == "acceptable" and err.mean < 5.0


def test_keypoints_scaled_back_to_original_pixels(retina_bgr):
    """Query = reference at half size, both above the working size: H must be the exact
    pixel-centre scaling x_ref = 2 x_query + 0.5 (same for y)."""
    ref = cv2.resize(retina_bgr, (1200, 1200), interpolation=cv2.INTER_AREA)
    qry = cv2.resize(ref, (600, 600), interpolation=cv2.INTER_AREA)
    res = register_sift(qry, ref, working_size=400)
    pts = np.array([[150.0, 150.0], [450.0, 200.0], [300.0, 450.0]])
    np.testing.assert_allclose(transform_points(res.H, pts), 2 * pts + 0.5, atol=1.5)


def test_deterministic(s_pair):
    a = register_sift(s_pair["query"], s_pair["reference"])
    b = register_sift(s_pair["query"], s_pair["reference"])
    np.testing.assert_array_equal(a.H, b.H)


def test_failure_without_structure(retina_bgr):
    blank = np.zeros((300, 300, 3), np.uint8)
    res = register_sift(blank, retina_bgr)
    assert res.H is None and "keypoints" in res.failure_reason and res.inlier_rate == 0


def test_register_fn_and_unreadable_file(tmp_path, s_pair):
    q, r = tmp_path / "q.jpg", tmp_path / "r.jpg"
    cv2.imwrite(str(q), s_pair["query"])
    cv2.imwrite(str(r), s_pair["reference"])
    out = make_register_fn()(q, r)
    assert out.status == "registered" and out.seconds > 0 and out.H.shape == (3, 3)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="bad.jpg"):
        read_image(bad)
    with pytest.raises(ValueError, match="missing.jpg: file not found"):
        read_image(tmp_path / "missing.jpg")
