"""Guided matching (issue 17.1) and the skipped second pass (issue 19.2).

- ``guided_match`` / ``guided_refinement`` on keypoints built so that the global ratio test keeps
  few matches (every descriptor has a near twin far away): the guided passes recover the known
  homography from a rough start with most of the true matches.
- Through the registrar with the shipped model on an eye-model pair made from scikit-image's
  retina: the counts of every pass reach result.json, and a skipped matching trick is recorded
  there (and makes no second inference).
- The new settings are range-checked like the others.
"""
import cv2
import numpy as np
import pytest

from superretina.app import open_app
from superretina.config import ConfigError, load_config
from superretina.fire.synth import make_pair, place_on_canvas
from superretina.guided import guided_match, guided_refinement
from superretina.homography import transform_points
from superretina.matching import ratio_match
from superretina.outputs import result_json
from superretina.registrar import Registrar
from superretina.transform import choose_transform

H_TRUE = np.array([[1.02, 0.03, 35.0], [-0.025, 0.99, -20.0], [2e-5, -1e-5, 1.0]])


def _twin_scene(n: int = 300, seed: int = 3):
    """Reference keypoints in a 1200 px frame, their query positions through H_TRUE⁻¹ (0.3 px
    noise), and unit descriptors where every reference descriptor has a twin (closer than the query noise)
    on a keypoint at least 300 px away: the global ratio test rejects nearly all matches."""
    rng = np.random.default_rng(seed)
    r_xy = rng.uniform(100, 1100, (n, 2))
    q_xy = transform_points(np.linalg.inv(H_TRUE), r_xy) + rng.normal(0, 0.3, (n, 2))
    base = rng.normal(size=(n // 2, 64))
    desc_r = np.empty((n, 64))
    order = np.argsort(r_xy[:, 0])                       # twins: left half with right half
    left, right = order[: n // 2], order[n // 2:]
    desc_r[left] = base
    desc_r[right] = base + rng.normal(0, 0.003, base.shape)
    desc_q = desc_r + rng.normal(0, 0.01, desc_r.shape)  # nearest: the counterpart or its twin
    norm = lambda d: (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return q_xy, norm(desc_q), r_xy, norm(desc_r)


def _choose(H_model="homography"):
    return lambda q, r, H: choose_transform(H_model, q, r, H, 3.0, (1200, 1200), (1200, 1200))


def test_global_ratio_test_keeps_few_of_the_twin_scene():
    q_xy, dq, r_xy, dr = _twin_scene()
    assert len(ratio_match(dq, dr, 0.9)) < 0.1 * len(q_xy)


def test_guided_match_finds_true_pairs_near_the_prediction():
    q_xy, dq, r_xy, dr = _twin_scene()
    m = guided_match(transform_points(H_TRUE, q_xy), dq, r_xy, dr, radius=20.0)
    assert len(m) > 0.9 * len(q_xy)
    assert (m[:, 0] == m[:, 1]).mean() > 0.99                       # built with index i <-> i
    assert len(np.unique(m[:, 0])) == len(m) == len(np.unique(m[:, 1]))  # one-to-one (mutual)


def test_guided_refinement_recovers_the_transform_from_a_rough_start():
    q_xy, dq, r_xy, dr = _twin_scene()
    # A start 6-8 px off over the frame (as a homography fitted to a handful of matches is).
    H0 = np.array([[1.0, 0.0, 6.0], [0.0, 1.0, -4.0], [0.0, 0.0, 1.0]]) @ H_TRUE
    corners = np.array([[100, 100], [1100, 100], [1100, 1100], [100, 1100]], float)
    before = np.linalg.norm(transform_points(H0, corners) - transform_points(H_TRUE, corners), axis=1).max()
    assert before > 5
    passes = guided_refinement(q_xy, dq, r_xy, dr, H0, _choose(), 3.0, 1.0, radius=15.0, ratio=0.9,
                               iterations=3, min_gain=0.05)
    assert passes
    last = passes[-1]
    assert len(last.matches) > 0.9 * len(q_xy)
    err = np.linalg.norm(transform_points(last.H, corners) - transform_points(H_TRUE, corners), axis=1).max()
    assert err < 0.5, err


def test_guided_refinement_keeps_given_matches():
    q_xy, dq, r_xy, dr = _twin_scene()
    keep = np.array([[5, 5], [17, 17], [40, 40], [41, 41]])
    passes = guided_refinement(q_xy, dq, r_xy, dr, H_TRUE, _choose(), 3.0, 1.0, radius=10.0, ratio=0.9,
                               iterations=2, min_gain=0.05, keep=keep)
    m = passes[-1].matches
    assert {tuple(k) for k in keep.tolist()} <= {tuple(x) for x in m.tolist()}
    assert len(np.unique(m[:, 0])) == len(m) and (np.diff(m[:, 0]) > 0).all()


def test_guided_match_without_candidates_is_empty():
    q_xy, dq, r_xy, dr = _twin_scene(40)
    far = transform_points(H_TRUE, q_xy) + 5000.0
    assert guided_match(far, dq, r_xy, dr, radius=10.0).shape == (0, 2)
    nan = np.full_like(q_xy, np.nan)
    assert guided_match(nan, dq, r_xy, dr, radius=10.0).shape == (0, 2)


# -- through the registrar ------------------------------------------------------------------
class CountingBackend:
    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def infer(self, batch):
        self.calls.append(batch.shape)
        return self.inner.infer(batch)


@pytest.fixture(scope="module")
def app():
    with open_app(runtime="local") as opened:
        yield opened


@pytest.fixture(scope="module")
def p_pair(retina_bgr):
    return make_pair(np.random.default_rng([21, 0, 1]), place_on_canvas(retina_bgr, 768), "P", 768)


def _register(app, pair, **overrides):
    cfg = load_config(overrides)
    spy = CountingBackend(app.stream)
    res = Registrar(spy, cfg).register_images(pair["query"], pair["reference"])
    return res, spy, result_json(res, None, None, app.provenance)


def test_counts_of_every_pass_reach_result_json(app, p_pair):
    # without the patch-refined pass, which would follow the guided ones (test_patch_refine)
    res, spy, info = _register(app, p_pair, matching_trick_skip_inliers=0, guided={"max_inliers": 0},
                               patch_refine={"half": 0})
    assert res.status == "registered"
    # the trick inferred the whole model frame (matching_trick_crop_margin -1, the default)
    assert len(spy.calls) == 2 and info["matching_trick"] == {
        "ran": True, "skipped_reason": None, "inferred_box": {"x": 0, "y": 0, "width": 768, "height": 768}}
    counts = info["match_counts"]
    names = [p["name"] for p in info["passes"]]
    assert names[:2] == ["first", "matching_trick"] and len(names) == 2 + len(counts["guided"])
    assert counts["guided"], "no guided pass ran on a registered pair"
    assert [counts["first"], counts["matching_trick"], *counts["guided"]] == [p["matches"] for p in info["passes"]]
    assert info["num_matches"] == counts["guided"][-1]          # the last guided pass is the final one
    assert np.allclose(info["homography"], res.guided[-1].homography.H)


def test_guided_passes_keep_the_network_matches(app, p_pair):
    res, _, _ = _register(app, p_pair, matching_trick_skip_inliers=0, guided={"max_inliers": 0})
    net = {tuple(m) for m in res.second.matches.tolist()}
    assert net <= {tuple(m) for m in res.guided[-1].matches.tolist()}


def test_guided_passes_skip_pairs_with_many_inliers(app, p_pair):
    res, _, info = _register(app, p_pair, matching_trick_skip_inliers=0, guided={"max_inliers": 1})
    assert res.second.homography.num_inliers >= 1
    assert info["match_counts"]["guided"] == [] and "guided" not in info["seconds"]


def test_guided_off_keeps_the_two_network_passes(app, p_pair):
    res, _, info = _register(app, p_pair, guided={"iterations": 0}, matching_trick_skip_inliers=0,
                             patch_refine={"half": 0})
    assert info["match_counts"]["guided"] == [] and [p["name"] for p in info["passes"]] == ["first", "matching_trick"]
    H = res.second.homography.H @ res.first.homography.H
    assert np.allclose(res.H, H / H[2, 2])


def test_skipped_second_pass_is_recorded(app, p_pair):
    res, spy, info = _register(app, p_pair, matching_trick_skip_inliers=4)
    assert res.status == "registered" and res.first.homography.num_inliers >= 4
    assert len(spy.calls) == 1 and res.second is None                # one inference: the pair
    assert info["matching_trick"]["ran"] is False and info["matching_trick"]["inferred_box"] is None
    assert "conclusive" in info["matching_trick"]["skipped_reason"]
    assert info["match_counts"]["matching_trick"] is None
    assert "matching_trick" not in [p["name"] for p in info["passes"]]


def test_second_pass_runs_below_the_inlier_criterion(app, p_pair):
    res, spy, info = _register(app, p_pair, matching_trick_skip_inliers=100_000)
    assert len(spy.calls) == 2 and info["matching_trick"]["ran"] is True


# -- settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize("override, key", [
    ({"guided": {"iterations": -1}}, "guided.iterations"),
    ({"guided": {"iterations": 11}}, "guided.iterations"),
    ({"guided": {"iterations": 1.5}}, "guided.iterations"),
    ({"guided": {"radius": 0}}, "guided.radius"),
    ({"guided": {"radius": 100}}, "guided.radius"),
    ({"guided": {"ratio": 0}}, "guided.ratio"),
    ({"guided": {"ratio": 1.5}}, "guided.ratio"),
    ({"guided": {"min_gain": -0.1}}, "guided.min_gain"),
    ({"guided": {"max_inliers": -1}}, "guided.max_inliers"),
    ({"matching_trick_skip_inliers": -1}, "matching_trick_skip_inliers"),
    ({"matching_trick_skip_inliers": True}, "matching_trick_skip_inliers"),
    ({"transform": {"extrapolation": "everywhere"}}, "transform.extrapolation"),
])
def test_new_settings_are_range_checked(override, key):
    with pytest.raises(ConfigError) as info:
        load_config(override)
    assert f"{key} must be" in str(info.value) and "\n" not in str(info.value)


# -- the extrapolation guard (issue 17.2) ------------------------------------------------------
def test_hull_guard_keeps_a_bend_the_overlap_guard_refuses():
    """Matches on a round field of view, mapped by a radial bend: inside the disc the quadratic
    stays near the homography, at the frame's corners (where no match can be) it departs far."""
    rng = np.random.default_rng(5)
    ang, rad = rng.uniform(0, 2 * np.pi, 400), 380 * np.sqrt(rng.uniform(0, 1, 400))
    q = np.stack([500 + rad * np.cos(ang), 500 + rad * np.sin(ang)], 1)
    bend = 0.12 * ((q[:, 0] - 500) ** 2 + (q[:, 1] - 500) ** 2) / 500
    r = np.stack([q[:, 0] + bend, q[:, 1]], 1) + rng.normal(0, 0.3, q.shape)
    H = cv2.findHomography(q, r, 0)[0]
    kw = dict(scale_px=3.0, query_wh=(1000, 1000), refer_wh=(1000, 1000))
    overlap = choose_transform("quadratic", q, r, H, extrapolation="overlap", **kw)
    hull = choose_transform("quadratic", q, r, H, extrapolation="hull", **kw)
    assert overlap.model == "homography" and "inside the overlap" in overlap.reason
    assert hull.model == "quadratic", hull.reason
    assert np.abs(hull.transform.apply(q) - r).max() < 2.0
