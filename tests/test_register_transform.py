"""transform.model through the registration: the homography path is unchanged, the returned
transform and its residuals reach result.json, the pictures and the FIRE score.

Uses the shipped default model on an eye-model small-overlap (P) pair made from scikit-image's
retina at 1024 px, where the best homography is ~2-3 px off and a quadratic is not."""
import json

import cv2
import numpy as np
import pytest

from superretina.app import open_app
from superretina.fire.protocol import pair_error
from superretina.fire.synth import make_pair, place_on_canvas
from superretina import viz
from superretina.outputs import result_json, write_outputs
from superretina.transform import apply_saved_transform

SIZE = 1024


@pytest.fixture(scope="module")
def app():
    with open_app(runtime="local") as opened:
        yield opened


@pytest.fixture(scope="module")
def p_pair(retina_bgr):
    return make_pair(np.random.default_rng([21, 0, 1]), place_on_canvas(retina_bgr, SIZE), "P", SIZE)


@pytest.fixture(scope="module")
def results(app, p_pair):
    out, default = {}, app.config["transform"]["model"]
    for model in ("homography", "quadratic"):
        app.config["transform"]["model"] = model
        out[model] = app.registrar.register_images(p_pair["query"], p_pair["reference"])
    app.config["transform"]["model"] = default
    return out


def test_homography_path_does_not_depend_on_the_transform_model(results):
    h, q = results["homography"], results["quadratic"]
    assert h.status == q.status == "registered"
    # The network passes do not; the guided passes predict through the chosen transform (issue 17.1).
    assert np.array_equal(h.first.homography.H, q.first.homography.H)
    assert (h.second is None) == (q.second is None)
    if h.second is not None:
        assert np.array_equal(h.second.homography.H, q.second.homography.H)
    assert h.transform.model == "homography" and h.transform.reason is None
    assert q.transform.requested == "quadratic"


def test_quadratic_scores_better_on_a_small_overlap_pair(results, p_pair):
    q = results["quadratic"]
    assert q.transform.model == "quadratic", q.transform.reason
    hom = pair_error(q.H, p_pair["query_pts"], p_pair["ref_pts"], 0.5)
    quad = pair_error(q.H, p_pair["query_pts"], p_pair["ref_pts"], 0.5, transform=q.transform.transform)
    assert quad.mean < hom.mean, (quad.mean, hom.mean)


def test_result_json_and_pictures_carry_the_transform(app, results, p_pair, tmp_path):
    res = results["quadratic"]
    info = result_json(res, "q.jpg", "r.jpg", app.provenance)
    t = info["transform"]
    assert t["model"] == "quadratic" and t["direction"] == "query -> reference, original pixels"
    assert np.shape(t["parameters"]) == (2, 6) and {"query", "reference"} <= set(t["normalisation"])
    assert info["homography"] == res.H.tolist()
    rq, rh = info["residuals"]["transform"], info["residuals"]["homography"]
    assert 0 <= rq["within_3px"] <= rq["within_5px"] <= rq["within_10px"] <= 1
    assert rq["within_3px"] >= rh["within_3px"]          # the returned model explains more matches
    written = write_outputs(res, p_pair["query"], p_pair["reference"], tmp_path, info, app.config)
    assert {p.name for p in written} == {"match_result.jpg", "result.jpg", "checkerboard.jpg", "result.json"}
    saved = json.loads((tmp_path / "result.json").read_text())
    pts = p_pair["query_pts"]
    assert np.abs(apply_saved_transform(saved, pts) - res.transform.transform.apply(pts)).max() < 1e-9


def test_checkerboard_is_drawn_halved_unless_asked_full_size(app, results, p_pair, tmp_path):
    """checkerboard.jpg at the reference's size halved to outputs.checkerboard_max_side (its own
    warp solved at that size) shows what the full-size checkerboard, shrunk, shows; 0 = full size."""
    res = results["quadratic"]
    info = result_json(res, "q.jpg", "r.jpg", app.provenance)
    cfg = json.loads(json.dumps(app.config))
    h, w = res.refer_size
    pictures = {}
    for side in (0, max(h, w) // 2):
        cfg["outputs"]["checkerboard_max_side"] = side
        write_outputs(res, p_pair["query"], p_pair["reference"], tmp_path / str(side), info, cfg)
        pictures[side] = cv2.imread(str(tmp_path / str(side) / "checkerboard.jpg"))
    full, half = pictures[0], pictures[max(h, w) // 2]
    assert full.shape[:2] == (h, w) and half.shape[:2] == (h // 2, w // 2)
    # each picture at its own setting: the overlay follows merged_max_side, not the checkerboard's
    cfg["outputs"]["merged_max_side"] = 0
    write_outputs(res, p_pair["query"], p_pair["reference"], tmp_path / "mixed", info, cfg)
    assert cv2.imread(str(tmp_path / "mixed" / "result.jpg")).shape[:2] == (h, w)
    assert cv2.imread(str(tmp_path / "mixed" / "checkerboard.jpg")).shape[:2] == (h // 2, w // 2)
    shrunk = viz.shrink(full, (w // 2, h // 2)).astype(float)
    m = h // 16   # away from the tile edges' JPEG ringing at the frame border
    assert np.abs(half.astype(float) - shrunk)[m:-m, m:-m].mean() < 4.0
