"""Issue 20.8: ``load_result`` on hostile result.json files: one error type, shapes and consistency checked.

The valid file is written here in result.json's documented layout (schema 2) with a homography
and a quadratic transform of a known shift; every case changes one thing in it.
"""
from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest

import superretina
from tests.mxlocal_support import call_with_timeout
from superretina.api import ResultFileError
from superretina.outputs import SCHEMA_VERSION


def _valid() -> dict:
    rng = np.random.default_rng(0)
    q = rng.uniform(0, 500, (296, 2)).round(2)
    r = (q + [3.0, -2.0]).round(2)
    inlier = [bool(i % 3) for i in range(296)]
    return {
        "schema_version": SCHEMA_VERSION, "status": "registered", "reason": None,
        "query": "q.jpg", "refer": "r.jpg",
        "query_size": {"height": 512, "width": 512}, "refer_size": {"height": 512, "width": 512},
        "homography": [[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]],
        "transform": {"model": "homography", "parameters": [[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]],
                      "normalisation": None},
        "keypoints": {"query": q.tolist(), "refer": r.tolist()},
        "num_keypoints": {"query": 296, "refer": 296},
        "matches": {"query_xy": q.tolist(), "refer_xy": r.tolist(), "inlier": inlier},
        "num_matches": 296, "num_inliers": sum(inlier), "inlier_rate": round(sum(inlier) / 296, 6),
        "seconds": {"total": 0.5},
    }


def _write(tmp_path, info, raw: str | None = None):
    path = tmp_path / "result.json"
    path.write_text(raw if raw is not None else json.dumps(info))
    return path


def test_valid_file_loads(tmp_path):
    reg = superretina.load_result(_write(tmp_path, _valid()))
    assert reg.registered and len(reg.matches) == 296
    np.testing.assert_allclose(reg.transform.apply([[10.0, 20.0]]), [[13.0, 18.0]])


def _set(path: str, value):
    def change(info):
        *parents, last = path.split(".")
        d = info
        for p in parents:
            d = d[p]
        d[last] = value
    return change


CASES = [
    ("2x2 homography", _set("homography", [[1.0, 0.0], [0.0, 1.0]]), "homography: shape (2, 2)"),
    ("NaN homography", _set("homography", [[float("nan")] * 3] * 3), "homography: not finite"),
    ("10 flags for 296 matches", _set("matches.inlier", [True] * 10), "10 flags for 296 matches"),
    ("inliers miscounted", _set("num_inliers", 3), "num_inliers: 3"),
    ("fewer reference points", lambda i: i["matches"]["refer_xy"].pop(), "matches: 296 query and 295"),
    ("3-column keypoints", _set("keypoints.query", [[1.0, 2.0, 3.0]] * 296), "keypoints.query: shape (296, 3)"),
    ("keypoint count", _set("num_keypoints.refer", 5), "num_keypoints.refer says 5"),
    ("size is a list", _set("query_size", [512, 512]), "query_size.height: missing"),
    ("size is text", _set("refer_size.width", "512"), "refer_size.width: expected a non-negative integer"),
    ("status unknown", _set("status", 5), "status: expected one of"),
    ("registered without homography", _set("homography", None), "homography: null"),
    ("flags are numbers", _set("matches.inlier", [1] * 296), "matches.inlier: expected true/false"),
    ("infinite point", _set("matches.query_xy", [[float("inf"), 0.0]] * 296), "matches.query_xy: not finite"),
    ("rate above 1", _set("inlier_rate", 7), "inlier_rate: expected a number from 0 to 1"),
    ("transform garbage", _set("transform", {"model": "quadratic", "parameters": [[1]]}), "transform"),
    ("matches not an object", _set("matches", "all of them"), "matches.query_xy: missing"),
    ("seconds a list", _set("seconds", [1, 2]), "seconds: expected an object"),
]


@pytest.mark.parametrize("name, change, fragment", CASES, ids=[c[0] for c in CASES])
def test_inconsistent_content_is_one_error_naming_the_field(tmp_path, name, change, fragment):
    info = copy.deepcopy(_valid())
    change(info)
    path = _write(tmp_path, info)
    with pytest.raises(ResultFileError) as err:
        superretina.load_result(path)
    assert str(err.value).startswith(str(path)) and fragment in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("raw, fragment", [
    ("[" * 100_000 + "]" * 100_000, "not a JSON file"),           # RecursionError in json
    ("[1, 2, 3]", "schema_version None"),                          # not an object
    ('{"schema_version": 3, "status": "registered"}', "missing"),  # most fields absent
    ("\udcff".encode("utf-8", "surrogatepass").decode("latin-1"), "not a JSON file"),
])
def test_hostile_json_is_one_error(tmp_path, raw, fragment):
    path = _write(tmp_path, None, raw)
    with pytest.raises(ResultFileError) as err:
        superretina.load_result(path)
    assert fragment in str(err.value), str(err.value)


def test_fifo_result_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "result.json"
    os.mkfifo(fifo)
    with pytest.raises(ResultFileError, match="FIFO"):
        call_with_timeout(superretina.load_result, fifo, timeout=20)
