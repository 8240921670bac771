"""The public Python API (superretina.register / Session / load_result) with the shipped default model.

The pair is the demo's: scikit-image's CC0 retina at 700 px and its known-homography warp, so the
answer is checked against the truth, not only for shape.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import superretina
from superretina.api import PairTransform, ResultFileError
from superretina.demo import control_point_error
from superretina.homography import transform_points
from superretina.image_io import ImageReadError


@pytest.fixture(scope="module")
def result(session, demo):
    query, refer, _, _ = demo
    return session.register(query, refer)


def test_register_recovers_the_known_homography(result, demo):
    _, _, G, pts = demo
    assert result.status == "registered" and result.reason is None and result.registered
    assert result.homography.shape == (3, 3) and result.homography[2, 2] == pytest.approx(1.0)
    assert control_point_error(result.homography, G, pts) < 3.0


def test_result_fields_have_their_documented_shapes(result, demo):
    query, refer, _, _ = demo
    assert result.query_size == query.shape[:2] and result.refer_size == refer.shape[:2]
    m = result.matches
    assert m.query_xy.shape == m.refer_xy.shape == (len(m), 2) and m.inlier.dtype == bool
    assert result.quality["num_matches"] == len(m) and result.quality["num_inliers"] == int(m.inlier.sum())
    # Inlier matches sit where the homography sends them (original pixels, both images).
    moved = transform_points(result.homography, m.query_xy[m.inlier])
    assert np.median(np.linalg.norm(moved - m.refer_xy[m.inlier], axis=1)) < 3.0
    assert result.keypoints["query"].shape[1] == 2 and len(result.keypoints["refer"]) == result.quality["num_keypoints_refer"]


def test_transform_applies_and_warps_in_the_reference_frame(result, demo):
    query, refer, G, pts = demo
    t = result.transform
    assert isinstance(t, PairTransform) and t.model in ("homography", "quadratic")
    q_pts = transform_points(G, pts)                      # control points seen in the query
    assert np.linalg.norm(t.apply(q_pts) - pts, axis=1).mean() < 3.0
    assert np.abs(t.inverse(t.apply(q_pts)) - q_pts).max() < 0.1
    warped = t.warp(query)
    assert warped.shape == refer.shape
    # The warped query lines up with the reference: far closer than the unwarped query.
    gray = [cv2.cvtColor(x, cv2.COLOR_BGR2GRAY).astype(float) for x in (warped, refer, query)]
    inside = gray[0] > 10
    assert np.corrcoef(gray[0][inside], gray[1][inside])[0, 1] > np.corrcoef(gray[2][inside], gray[1][inside])[0, 1] + 0.2


def test_result_json_says_what_produced_it(result):
    info = result.to_json()
    assert info["schema_version"] == 3 and info["package_version"] == superretina.__version__
    model = Path(info["model"])
    digest = hashlib.sha256(model.read_bytes() + model.with_suffix(".bin").read_bytes()).hexdigest()
    assert model.name == "superretina_lowrank2_int8.xml" and info["model_sha256"] == digest
    assert info["config"]["matching"]["knn_thresh"] == 0.9 and info["runtime"] == "local"
    assert info["query"] is None and info["refer"] is None          # arrays, not files
    # Names a pandas or jq user can type.
    def names(x):
        if isinstance(x, dict):
            for k, v in x.items():
                yield k
                yield from names(v)
    bad = [k for k in names(info) if not k.replace("_", "a").isalnum()]
    assert not bad, bad


def test_save_then_load_result_round_trips(result, tmp_path):
    written = result.save(tmp_path / "pair")
    assert [p.name for p in written][-1] == "result.json"
    assert {"match_result.jpg", "result.jpg", "checkerboard.jpg"} <= {p.name for p in written}
    back = superretina.load_result(tmp_path / "pair")
    assert back.status == result.status and np.array_equal(back.homography, result.homography)
    assert np.allclose(back.matches.query_xy, result.matches.query_xy, atol=0.01)
    assert np.allclose(back.transform.apply([[300.0, 300.0]]), result.transform.apply([[300.0, 300.0]]))
    assert back.save(tmp_path / "again") == [tmp_path / "again" / "result.json"]   # no images: JSON only


def test_paths_gray_and_16_bit_inputs(session, demo, tmp_path):
    query, refer, G, pts = demo
    cv2.imwrite(str(tmp_path / "q.png"), query)
    cv2.imwrite(str(tmp_path / "r.jpg"), refer)
    from_files = session.register(tmp_path / "q.png", str(tmp_path / "r.jpg"))
    assert from_files.to_json()["query"] == str(tmp_path / "q.png")
    gray16 = cv2.cvtColor(query, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    bgra = cv2.cvtColor(refer, cv2.COLOR_BGR2BGRA)
    for res in (from_files, session.register(gray16, bgra)):
        assert res.registered and control_point_error(res.homography, G, pts) < 3.0


@pytest.mark.parametrize("bad, expected", [
    (np.zeros((100, 100), np.float32), "float32, expected uint8 or uint16"),
    (np.zeros((100, 100, 2), np.uint8), "shape (100, 100, 2)"),
    (np.zeros((8, 100), np.uint8), "too small"),
    ([[1, 2], [3, 4]], "expected a file path or a numpy array"),
])
def test_bad_arrays_are_named(session, demo, bad, expected):
    with pytest.raises(ImageReadError, match="^query: ") as err:
        session.register(bad, demo[1])
    assert expected in str(err.value)


def test_config_mapping_is_laid_over_the_defaults(demo):
    with superretina.Session(config={"matching": {"knn_thresh": 0.7}, "outputs": {"checkerboard": False}}) as s:
        assert s.config["matching"]["knn_thresh"] == 0.7 and s.config["keypoints"]["nms_size"] == 10
        res = s.register(demo[0], demo[1])
    assert res.to_json()["config"]["matching"]["knn_thresh"] == 0.7


def test_register_function_opens_and_closes_a_session(demo):
    res = superretina.register(demo[0], demo[1], config={"use_matching_trick": False})
    names = [p["name"] for p in res.to_json()["passes"]]
    assert res.registered and names[0] == "first" and "matching_trick" not in names


def test_load_result_errors_name_the_file(tmp_path):
    with pytest.raises(ResultFileError, match="cannot read"):
        superretina.load_result(tmp_path / "nope.json")
    (tmp_path / "old.json").write_text(json.dumps({"status": "registered"}))
    with pytest.raises(ResultFileError, match="schema_version None"):
        superretina.load_result(tmp_path / "old.json")
    (tmp_path / "junk.json").write_bytes(b"\xff\xfe not json")
    with pytest.raises(ResultFileError, match="junk.json: not a JSON file"):
        superretina.load_result(tmp_path / "junk.json")
