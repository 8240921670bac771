"""Matches refined by patch correlation (``patch_refine.refine_points``, ``patch_refine.*``).

- On scikit-image's fundus photograph warped by a known homography: points given 0.6 px off
  (and a transform 0.5 px off) move to within ~0.1 px of their true counterparts; points the
  correlation cannot place (outside the photograph, on its flat black surround, a start beyond
  the search window) stay exactly where they were.
- Through the registrar on eye-model pairs rendered from the same photograph: the refined
  matches are the final pass (result.json's last pass, its counts, the returned homography),
  the matches of the network passes are untouched, and the control-point error falls.
- The settings are range-checked like the others.
"""
import cv2
import numpy as np
import pytest

from superretina.app import open_app
from superretina.config import ConfigError, load_config
from superretina.enhance import EnhanceSettings, equalise, model_input
from superretina.fire.synth import make_pair, place_on_canvas
from superretina.homography import transform_points
from superretina.outputs import result_json
from superretina.patch_refine import refine_points
from superretina.registrar import Registrar

H_TRUE = np.array([[0.97, 0.06, 20.0], [-0.05, 1.01, -12.0], [3e-5, -2e-5, 1.0]])  # query -> reference
SHIFT = np.array([[1.0, 0.0, 0.4], [0.0, 1.0, -0.3], [0.0, 0.0, 1.0]])           # the estimate's error


@pytest.fixture(scope="module")
def scene(retina_bgr):
    """Reference: the photograph as the network's 768² input; query: the reference seen through
    H_TRUE (query pixel x shows reference pixel H_TRUE x); anchors: strong corners of the
    vessel tree (reference pixels) whose counterparts lie well inside the query."""
    refer = model_input(equalise(retina_bgr, EnhanceSettings()), (768, 768))
    query = cv2.warpPerspective(refer, H_TRUE, (768, 768), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    corners = cv2.goodFeaturesToTrack(refer, 300, 0.05, 12, blockSize=7)[:, 0].astype(np.float64)
    true_q = transform_points(np.linalg.inv(H_TRUE), corners)
    inner = ((true_q > 40) & (true_q < 728)).all(axis=1) & ((corners > 40) & (corners < 728)).all(axis=1)
    return query, refer, corners[inner], true_q[inner]


def test_points_move_to_their_true_counterparts(scene):
    query, refer, r_xy, true_q = scene
    start = true_q + np.random.default_rng(4).normal(0, 0.6, true_q.shape)
    out = refine_points(query, refer, SHIFT @ H_TRUE, start, r_xy)
    assert len(r_xy) > 100 and out.moved.mean() > 0.5
    before = np.linalg.norm(start - true_q, axis=1)[out.moved]
    after = np.linalg.norm(out.query_xy - true_q, axis=1)[out.moved]
    assert np.median(before) > 0.5 and np.median(after) < 0.12 and np.percentile(after, 90) < 0.4
    assert np.array_equal(out.query_xy[~out.moved], start[~out.moved])   # the others stay
    assert np.all(out.ncc[out.moved] >= 0.7)


def test_points_the_correlation_cannot_place_stay(scene):
    query, refer, r_xy, true_q = scene
    anchors = np.array([[3.0, 3.0],        # patch outside the photograph
                        [20.0, 20.0],      # on the flat black surround of the fundus
                        r_xy[0], r_xy[1]])
    start = np.array([[3.0, 3.0], [20.0, 20.0],
                      true_q[0] + [9.0, 0.0],   # beyond the search window (3 px)
                      true_q[1] + [0.3, 0.2]])  # placeable: moves
    out = refine_points(query, refer, H_TRUE, start, anchors)
    assert out.moved.tolist() == [False, False, False, True]
    assert np.array_equal(out.query_xy[:3], start[:3])
    assert np.linalg.norm(out.query_xy[3] - true_q[1]) < 0.2


def test_no_points():
    out = refine_points(np.zeros((64, 64), np.float32), np.zeros((64, 64), np.float32), np.eye(3),
                        np.zeros((0, 2)), np.zeros((0, 2)))
    assert out.query_xy.shape == (0, 2) and out.moved.shape == (0,)


# -- through the registrar ------------------------------------------------------------------
@pytest.fixture(scope="module")
def app():
    with open_app(runtime="local") as opened:
        yield opened


@pytest.fixture(scope="module")
def pairs(retina_bgr):
    placed = place_on_canvas(retina_bgr, 1024)
    return [make_pair(np.random.default_rng([31, i]), placed, cat, 1024) for i, cat in enumerate("SSAP")]


def _register(app, pair, **overrides):
    res = Registrar(app.stream, load_config(overrides)).register_images(pair["query"], pair["reference"])
    err = np.linalg.norm(transform_points(res.H, pair["query_pts"]) - pair["ref_pts"], axis=1).mean()
    return res, float(err)


def test_refined_matches_are_the_final_pass(app, pairs):
    res, _ = _register(app, pairs[0], patch_refine={"half": 7, "max_inliers": 0})
    assert res.status == "registered" and res.refined is not None
    info = result_json(res, None, None, app.provenance)
    assert info["passes"][-1]["name"] == "patch_refined"
    assert info["num_matches"] == len(res.refined.matches) == info["match_counts"]["patch_refined"]
    assert np.allclose(info["homography"], res.refined.homography.H)
    # network passes as they were: the refined stage's reference side are reference keypoints
    assert res.network_final is not res.refined
    assert set(res.refined.matches[:, 1]) <= set(range(len(res.refer.xy)))


def test_refinement_lowers_the_control_point_error(app, pairs):
    errors = [[_register(app, p, patch_refine={"half": h, "max_inliers": 0})[1] for h in (0, 7)] for p in pairs]
    off, on = np.array(errors).T
    assert on.mean() < off.mean() and (on <= off + 0.3).all(), errors


def test_refinement_off_leaves_no_trace(app, pairs):
    res, _ = _register(app, pairs[0], patch_refine={"half": 0})
    info = result_json(res, None, None, app.provenance)
    assert res.refined is None and "patch_refined" not in [p["name"] for p in info["passes"]]
    assert info["match_counts"]["patch_refined"] is None and "patch_refine" not in info["seconds"]


def test_pairs_with_many_inliers_are_not_refined(app, pairs):
    res, _ = _register(app, pairs[0], patch_refine={"half": 7, "max_inliers": 0})
    many = res.network_final.homography.num_inliers
    res, _ = _register(app, pairs[0], patch_refine={"half": 7, "max_inliers": many})
    assert res.refined is None and "patch_refine" not in res.seconds
    res, _ = _register(app, pairs[0], patch_refine={"half": 7, "max_inliers": many + 1})
    assert res.refined is not None


@pytest.mark.parametrize("override, key", [
    ({"patch_refine": {"half": -1}}, "patch_refine.half"),
    ({"patch_refine": {"half": 33}}, "patch_refine.half"),
    ({"patch_refine": {"search": 0}}, "patch_refine.search"),
    ({"patch_refine": {"min_ncc": 1.5}}, "patch_refine.min_ncc"),
    ({"patch_refine": {"min_curvature": -0.1}}, "patch_refine.min_curvature"),
    ({"patch_refine": {"max_inliers": -1}}, "patch_refine.max_inliers"),
])
def test_settings_are_range_checked(override, key):
    with pytest.raises(ConfigError) as info:
        load_config(override)
    assert f"{key} must be" in str(info.value) and "\n" not in str(info.value)
