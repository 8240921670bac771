"""Pair registration through the real stream pipeline (method §2), and what the CLI reports.

* keypoints come back in original-image pixels (x*W/768, y*H/768 per axis);
* several pairs in flight at once, from threads, give bit for bit the sequential results;
* the matching trick sends only the warped query through the network the second time;
* result.json carries the homography, keypoints, matches, inliers, timings, model, pipeline and
  runtime; a pair that cannot be registered is reported (exit code 1), not crashed on;
* configuration and runtime mistakes are one-line errors naming the file and key (exit code 2).

The model is the session's random-weights SuperRetina (tests/model_fixtures.py): its homographies
are not accurate, so nothing here checks accuracy.  A pair made of one photograph and itself
registers exactly (identical keypoints and descriptors), which gives the matching trick a first
homography to work with.
"""
import json
import threading

import cv2
import numpy as np
import pytest

from superretina.app import AppError, open_app
from superretina.config import ConfigError, load_config
from superretina.enhance import enhance, to_model_input
from superretina.homography import refine_homography, transform_points
from superretina.registrar import Registrar
from tests.model_fixtures import (assert_one_line_error, cli_env, random_superretina,  # noqa: F401
                                  run_cli, write_pipeline)

MODEL = 768


class SpyStream:
    """Wraps the real SuperRetinaStream: delegates every call, records batches and outputs."""

    def __init__(self, stream):
        self.stream = stream
        self.calls = []                      # (batch copy, detector, descriptor)
        self._lock = threading.Lock()

    def infer(self, batch):
        det, desc = self.stream.infer(batch)
        with self._lock:
            self.calls.append((np.array(batch, np.float32, copy=True), det, desc))
        return det, desc

    def __getattr__(self, name):             # anything else goes to the real stream
        return getattr(self.stream, name)


def resized(bgr, width, height):
    return cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def two_pass_config(random_superretina, tmp_path_factory):
    """The fast config with both network passes on every pair and nothing after them that moves
    the homography: the trick is never skipped (test_guided.py checks the skip) and patch
    correlation is off (test_patch_refine.py checks it). The CLI runs here take it too."""
    import yaml

    cfg = yaml.safe_load(random_superretina.fast_config.read_text()) or {}
    cfg.update({"matching_trick_skip_inliers": 0, "patch_refine": {"half": 0}})
    path = tmp_path_factory.mktemp("two_pass") / "two_pass.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def app(random_superretina, two_pass_config):
    with open_app(two_pass_config, random_superretina.pipeline, "local") as opened:
        assert opened.config["matching_trick_skip_inliers"] == 0 and opened.registrar.cfg is opened.config
        yield opened


@pytest.fixture(scope="module")
def pairs(retina_bgr):
    """name -> (query, refer) BGR uint8."""
    rng = np.random.default_rng(7)
    same = resized(retina_bgr, 512, 512)
    return {
        "same": (same, same.copy()),                                            # registers exactly
        "scaled": (resized(retina_bgr, 640, 480), resized(retina_bgr, 512, 512)),  # non-square query
        "noise": (rng.integers(0, 256, (384, 384, 3), dtype=np.uint8),
                  rng.integers(0, 256, (416, 352, 3), dtype=np.uint8)),
    }


@pytest.fixture(scope="module")
def sequential(app, pairs):
    """name -> (RegistrationResult, SpyStream): each pair registered alone, one after the other."""
    out = {}
    for name, (query, refer) in pairs.items():
        spy = SpyStream(app.stream)
        out[name] = (Registrar(spy, app.config).register_images(query, refer), spy)
    return out


# -- keypoints in original pixels --------------------------------------------------------------
def test_keypoints_scaled_to_original_pixels_per_axis(sequential):
    res, _ = sequential["scaled"]
    assert res.query_size == (480, 640) and res.refer_size == (512, 512)
    for feats, (h, w) in ((res.query, res.query_size), (res.refer, res.refer_size)):
        assert len(feats.xy) > 0 and feats.model_xy.shape == feats.xy.shape
        expected = feats.model_xy.astype(np.float64) * np.array([w / MODEL, h / MODEL])
        np.testing.assert_array_equal(feats.xy, expected)
        # Model-frame keypoints are (x, y) inside the border (config: 4 px).
        assert (feats.model_xy >= 4).all() and (feats.model_xy < MODEL - 4).all()
    # Non-square: the two axes really scale differently (a swapped x/y would not pass above).
    assert not np.allclose(res.query.xy[:, 0] / res.query.model_xy[:, 0],
                           res.query.xy[:, 1] / res.query.model_xy[:, 1])
    if res.warped_query is not None:  # the warped query lives in the reference frame
        wq = res.warped_query
        np.testing.assert_array_equal(wq.xy, wq.model_xy.astype(np.float64) * np.array([512 / MODEL, 512 / MODEL]))


# -- matching trick -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["same", "scaled"])
def test_matching_trick_infers_only_the_warped_query(sequential, pairs, name):
    res, spy = sequential[name]
    query, refer = pairs[name]
    if not res.first.homography.ok:
        pytest.skip(f"random-weights model did not register {name!r} on the first pass")
    shapes = [c[0].shape for c in spy.calls]
    assert shapes == [(2, 1, MODEL, MODEL), (1, 1, MODEL, MODEL)]
    eq = enhance(query)
    first = spy.calls[0][0]
    np.testing.assert_array_equal(first[0, 0], to_model_input(eq, (MODEL, MODEL)))
    np.testing.assert_array_equal(first[1, 0], to_model_input(enhance(refer), (MODEL, MODEL)))
    # Second call: the query warped by H1 into the reference frame, nothing else. Default
    # (matching_trick_warp: model): the query's model input warped between the two model frames.
    H1 = res.first.homography.H
    (hq, wq), (hr, wr) = query.shape[:2], refer.shape[:2]
    Hm = np.diag([MODEL / wr, MODEL / hr, 1.0]) @ H1 @ np.diag([wq / MODEL, hq / MODEL, 1.0])
    warped = cv2.warpPerspective(first[0, 0], Hm, (MODEL, MODEL), flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(spy.calls[1][0][0, 0], warped)
    assert res.second is not None and res.warped_query is not None
    if res.guided:  # guided passes refit the homography last (issue 17.1)
        np.testing.assert_array_equal(res.H, res.guided[-1].homography.H)
    elif res.second.homography.ok:
        expected = res.second.homography.H @ H1
        np.testing.assert_allclose(res.H, expected / expected[2, 2], rtol=1e-12, atol=1e-12)
    if name == "same":  # identical images: both passes find the identity, every match an inlier
        np.testing.assert_allclose(res.H, np.eye(3), atol=1e-6)
        assert res.first.homography.inlier_rate == 1.0 and res.status == "registered"


def test_matching_trick_full_warp_is_the_references(app, pairs):
    """matching_trick_warp: full warps the full-size enhanced query by H1, then resizes (reference)."""
    cfg = {**app.config, "matching_trick_warp": "full"}
    spy = SpyStream(app.stream)
    query, refer = pairs["same"]
    res = Registrar(spy, cfg).register_images(query, refer)
    assert res.first.homography.ok
    warped = cv2.warpPerspective(enhance(query), res.first.homography.H, (refer.shape[1], refer.shape[0]),
                                 flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(spy.calls[1][0][0, 0], to_model_input(warped, (MODEL, MODEL)))


def test_failed_first_pass_makes_no_second_inference(sequential):
    res, spy = sequential["noise"]
    if res.first.homography.ok:
        pytest.skip("random-weights model found a homography between two noise images")
    assert [c[0].shape[0] for c in spy.calls] == [2]
    assert res.status == "failed" and res.reason and res.H is None and res.second is None


def test_lmeds_inlier_mask_is_opencv_default(sequential):
    """LMEDS marks inliers with OpenCV's default 3 px, as the reference (reproj_threshold is for
    RANSAC); with the refinement on (the default) they are the matches within 3 px of the polished
    model, which starts from OpenCV's LMEDS estimate."""
    checked = 0
    for name in ("scaled", "noise", "same"):
        res, _ = sequential[name]
        m = res.first.matches
        if len(m) < 4 or res.first.homography.H is None or res.first.homography.method != "LMEDS":
            continue  # (a pair LMEDS failed on went to the fallback estimator)
        q = res.query.xy[m[:, 0]].astype(np.float32)
        r = res.refer.xy[m[:, 1]].astype(np.float32)
        H_cv, mask = cv2.findHomography(q, r, cv2.LMEDS)
        H_cv /= H_cv[2, 2]
        refined = refine_homography(q, r, H_cv, 3.0 * res.refer.pixel_scale)
        np.testing.assert_allclose(res.first.homography.H, refined, rtol=0, atol=1e-9)
        within = np.linalg.norm(transform_points(refined, q) - r, axis=1) <= 3.0
        np.testing.assert_array_equal(res.first.homography.inlier_mask, within)
        checked += 1
    assert checked, "no pair of the random-weights model found a homography"


# -- several pairs in flight ----------------------------------------------------------------------
def _same_result(a, b) -> None:
    assert (a.status, a.reason) == (b.status, b.reason)
    for x, y in ((a.H, b.H), (a.query.xy, b.query.xy), (a.refer.xy, b.refer.xy),
                 (a.query.descriptors, b.query.descriptors), (a.refer.descriptors, b.refer.descriptors),
                 (a.first.matches, b.first.matches), (a.first.homography.inlier_mask, b.first.homography.inlier_mask)):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)
    assert (a.second is None) == (b.second is None)
    if a.second is not None:
        np.testing.assert_array_equal(a.second.matches, b.second.matches)
        np.testing.assert_array_equal(a.warped_query.descriptors, b.warped_query.descriptors)


def test_pairs_from_threads_equal_sequential_runs(app, pairs, sequential):
    names = ["scaled", "same", "noise"]
    results, errors = [None] * len(names), []
    barrier = threading.Barrier(len(names))

    def work(i, name):
        try:
            barrier.wait(timeout=60)
            results[i] = app.registrar.register_images(*pairs[name])
        except Exception as exc:  # reported below, with the thread's name
            errors.append((name, repr(exc)))

    threads = [threading.Thread(target=work, args=(i, n)) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and not any(t.is_alive() for t in threads), errors
    for name, res in zip(names, results):
        _same_result(res, sequential[name][0])


def test_batches_in_flight_come_back_to_their_callers(app, sequential):
    """Queue several recorded batches before collecting any result: each future gets its own maps."""
    calls = sequential["noise"][1].calls[:1] + sequential["scaled"][1].calls[1:] + sequential["same"][1].calls[1:]
    assert [c[0].shape[0] for c in calls] == [2, 1, 1]     # a pair batch and two warped queries
    futures = [app.stream.infer_async(batch) for batch, _, _ in calls]
    for fut, (batch, det, desc) in zip(futures, calls):
        got_det, got_desc = fut.result(timeout=300)
        assert got_det.shape == (batch.shape[0], MODEL, MODEL)
        np.testing.assert_array_equal(got_det, det)
        np.testing.assert_array_equal(got_desc, desc)


# -- result.json and the CLI ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair_files(tmp_path_factory, pairs, retina_bgr):
    d = tmp_path_factory.mktemp("pair_files")
    paths = {}
    for name, (q, r) in pairs.items():
        paths[name] = (d / f"{name}_query.png", d / f"{name}_refer.png")
        cv2.imwrite(str(paths[name][0]), q)
        cv2.imwrite(str(paths[name][1]), r)
    grey = d / "uniform_grey.png"
    cv2.imwrite(str(grey), np.full((400, 400, 3), 128, np.uint8))
    paths["grey"] = (grey, paths["scaled"][1])
    return paths


def test_result_json_of_a_registered_pair(random_superretina, two_pass_config, pair_files, sequential, tmp_path):
    query, refer = pair_files["scaled"]
    out = tmp_path / "out"
    proc = run_cli(query, refer, "--out", out, "--pipeline", random_superretina.pipeline,
                   "--config", two_pass_config)
    res = sequential["scaled"][0]
    assert proc.returncode == (0 if res.status == "registered" else 1), proc.stderr
    assert "Traceback" not in proc.stderr
    info = json.loads((out / "result.json").read_text())

    assert info["status"] == res.status and info["reason"] == res.reason
    assert info["query"] == str(query) and info["refer"] == str(refer)
    assert info["query_size"] == {"height": 480, "width": 640}
    assert info["refer_size"] == {"height": 512, "width": 512}
    if res.H is None:
        assert info["homography"] is None
    else:  # same inputs, same model: the subprocess finds the in-process homography
        H = np.array(info["homography"])
        assert H.shape == (3, 3)
        np.testing.assert_allclose(H, res.H, rtol=1e-9, atol=1e-9)
    assert info["homography_direction"].startswith("query -> reference")
    np.testing.assert_allclose(np.array(info["keypoints"]["query"]), res.query.xy, atol=0.005)
    np.testing.assert_allclose(np.array(info["keypoints"]["refer"]), res.refer.xy, atol=0.005)
    assert info["num_keypoints"] == {"query": len(res.query.xy), "refer": len(res.refer.xy)}
    m = info["matches"]
    n = len(res.final.matches)
    assert len(m["query_xy"]) == len(m["refer_xy"]) == len(m["inlier"]) == n == info["num_matches"]
    assert info["num_inliers"] == sum(m["inlier"]) == res.final.homography.num_inliers
    assert info["inlier_rate"] == pytest.approx(info["num_inliers"] / n if n else 0.0, abs=1e-6)
    # The reference points of the matches are reference keypoints, in reference pixels.
    ref_kp = {tuple(p) for p in np.round(res.refer.xy, 2).tolist()}
    assert all(tuple(p) in ref_kp for p in m["refer_xy"])
    assert [p["name"] for p in info["passes"]][0] == "first"
    for p in info["passes"]:
        assert {"matches", "inliers", "inlier_rate", "homography", "failure_reason"} <= set(p)
    stages = {"enhance", "inference", "keypoints", "descriptors", "matching", "homography"}
    assert stages <= set(info["seconds"]) and all(v >= 0 for v in info["seconds"].values())
    if res.second is not None:
        assert {"trick_warp", "trick_inference", "trick_homography"} <= set(info["seconds"])
        assert len(info["passes"]) == 2 + len(res.guided)     # first, matching trick, guided passes
    assert info["model"] == str(random_superretina.onnx.resolve())
    assert info["pipeline"] == str(random_superretina.pipeline)
    assert info["runtime"] == "local"
    # Printed summary and the pictures.
    assert f"status: {res.status}" in proc.stdout
    assert (out / "match_result.jpg").is_file()
    assert (out / "result.jpg").is_file() == (res.H is not None)


def test_failed_pair_is_reported_not_crashed(random_superretina, pair_files, tmp_path):
    grey, refer = pair_files["grey"]
    out = tmp_path / "out"
    proc = run_cli(grey, refer, "--out", out, "--pipeline", random_superretina.pipeline,
                   "--config", random_superretina.fast_config)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr.lower()
    info = json.loads((out / "result.json").read_text())
    assert info["status"] == "failed" and isinstance(info["reason"], str) and info["reason"]
    assert info["homography"] is None
    assert f"status: failed ({info['reason']})" in proc.stdout
    picture = cv2.imread(str(out / "match_result.jpg"))
    assert picture is not None and picture.shape[0] == 1000
    assert not (out / "result.jpg").exists() and not (out / "checkerboard.jpg").exists()


# -- configuration and runtime errors -----------------------------------------------------------
CONFIG_ERRORS = {
    "unknown-key": ("keypoints:\n  nms_sise: 10\n", ["nms_sise"]),
    "unknown-section": ("matcher:\n  knn_thresh: 0.8\n", ["matcher"]),
    "wrong-type": ("keypoints:\n  nms_size: ten\n", ["keypoints.nms_size", "integer", "ten"]),
    "bad-method": ("homography:\n  method: RANSACK\n", ["homography.method", "RANSACK"]),
    "bad-fallback": ("homography:\n  fallback: MAGSAC\n", ["homography.fallback", "MAGSAC"]),
    "negative-refine": ("homography:\n  refine_scale: -1\n", ["homography.refine_scale", ">= 0", "-1"]),
    "zero-size": ("model:\n  image_width: 0\n", ["model.image_width", "multiple of 16"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_config_error_names_file_and_key(case, tmp_path):
    text, fragments = CONFIG_ERRORS[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert all(f in message for f in fragments), message


@pytest.mark.parametrize("case", ["unknown-key", "wrong-type", "bad-method"])
def test_config_error_through_cli(case, random_superretina, pair_files, tmp_path):
    text, fragments = CONFIG_ERRORS[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    proc = run_cli(*pair_files["same"], "--out", tmp_path / "out", "--pipeline", random_superretina.pipeline,
                   "--config", path)
    assert_one_line_error(proc, f"{path}: ", *fragments)


def test_runtime_ascend_without_sdk(random_superretina, pair_files, tmp_path):
    proc = run_cli(*pair_files["same"], "--out", tmp_path / "out", "--pipeline", random_superretina.pipeline,
                   "--runtime", "ascend")
    assert_one_line_error(proc, "MindX SDK", "set_env.sh", "--runtime local")


def test_bad_runtime_environment_variable(random_superretina, pair_files, tmp_path):
    env = {**cli_env(), "SUPERRETINA_RUNTIME": "gpu"}
    proc = run_cli(*pair_files["same"], "--out", tmp_path / "out", "--pipeline", random_superretina.pipeline,
                   env=env)
    assert_one_line_error(proc, "SUPERRETINA_RUNTIME", "'gpu'")


def test_om_model_with_local_runtime(random_superretina, pair_files, tmp_path):
    om = tmp_path / "superretina.om"
    om.write_bytes(b"\0" * 64)   # the check is on the file type, the content is never read locally
    pipeline = write_pipeline(tmp_path / "om.pipeline", om.name)
    with pytest.raises(AppError, match=r"\.om model; the local runtime runs \.onnx"):
        open_app(random_superretina.fast_config, pipeline, "local")
    proc = run_cli(*pair_files["same"], "--out", tmp_path / "out", "--pipeline", pipeline)
    assert_one_line_error(proc, f"{pipeline}: ", "superretina.om", "local runtime")
