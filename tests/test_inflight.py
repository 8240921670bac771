"""Several pairs / images in flight give the one-at-a-time results (issue 19.3):
``parallel.in_flight``, a series' pairs in flight, OpenVINO streams ($MXLOCAL_INFER_STREAMS)."""
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from superretina.parallel import in_flight

ov = pytest.importorskip("openvino")

from mxlocal.cpu import physical_cores  # noqa: E402
from mxlocal.model_runtime import OpenVinoModel, open_shared_model, release_model  # noqa: E402
from superretina.enhance import equalise, model_input  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "model" / "superretina_bf16.xml"


# ---- parallel.in_flight ----------------------------------------------------------------------

def test_in_flight_keeps_order_and_runs_jobs_at_once():
    running, most = [0], [0]
    lock = threading.Lock()

    def job(k):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05 if k % 2 == 0 else 0.01)   # later items finish first
        with lock:
            running[0] -= 1
        return k * k, threading.current_thread().name

    out = list(in_flight(job, range(7), 3))
    assert [v for v, _ in out] == [k * k for k in range(7)]
    assert most[0] == 3 and all(n.startswith("superretina-inflight") for _, n in out)
    # one by one: in the calling thread
    assert [n for _, n in in_flight(job, range(2), 1)] == [threading.current_thread().name] * 2


def test_in_flight_raises_at_the_failing_item_and_starts_no_more():
    started = []

    def job(k):
        started.append(k)
        if k == 1:
            raise ValueError("item 1")
        time.sleep(0.02)
        return k

    got = []
    with pytest.raises(ValueError, match="item 1"):
        for v in in_flight(job, range(20), 2):
            got.append(v)
    assert got == [0] and max(started) <= 3


# ---- OpenVINO streams -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_inputs(retina_bgr):
    """Two real model inputs (the skimage fundus photograph and its mirror), 256x256."""
    x = model_input(equalise(retina_bgr), (256, 256)).reshape(1, 1, 256, 256).astype(np.float32)
    return x, np.ascontiguousarray(x[..., ::-1])


def _concurrent(model, feeds):
    out = {}
    threads = [threading.Thread(target=lambda k=k: out.__setitem__(k, model.run([feeds[k]]))) for k in range(len(feeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [out[k] for k in range(len(feeds))]


@pytest.mark.skipif(not MODEL.is_file(), reason="the shipped model is not in this checkout")
def test_streams_give_the_latency_modes_outputs_bit_for_bit(model_inputs, monkeypatch):
    monkeypatch.setenv("MXLOCAL_INFER_STREAMS", "1")
    one = OpenVinoModel(MODEL)
    monkeypatch.setenv("MXLOCAL_INFER_STREAMS", "2")
    two = OpenVinoModel(MODEL)
    if two.streams < 2:
        pytest.skip("one compute thread here: no second stream")
    assert one.concurrency == 1 and two.concurrency == 2
    assert one.report() == two.report()   # a matter of speed: rows made either way share their setup key
    expected = [one.run([x]) for x in model_inputs]
    for got, want in zip(_concurrent(two, model_inputs), expected):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_a_failed_request_leaves_the_other_streams_usable(tmp_path, monkeypatch):
    from mxlocal_support import two_output_model
    from superretina.model.to_openvino import convert

    xml = convert(two_output_model(tmp_path / "m.onnx"), tmp_path / "m.xml", "f32")
    monkeypatch.setenv("MXLOCAL_INFER_STREAMS", "2")
    model = OpenVinoModel(xml)
    if model.streams < 2:
        pytest.skip("one compute thread here: no second stream")
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    good = model.run([x])
    with pytest.raises(Exception):
        model.run([np.zeros((1, 3), np.float32)])   # wrong rank
    for got in _concurrent(model, [x, x]):   # both requests were put back, recompiled
        for g, w in zip(got, good):
            np.testing.assert_array_equal(g, w)


@pytest.mark.skipif(not MODEL.is_file(), reason="the shipped model is not in this checkout")
def test_shared_engine_lets_as_many_runs_in_as_it_has_streams(monkeypatch, model_inputs):
    monkeypatch.setenv("MXLOCAL_INFER_STREAMS", "2")
    shared = open_shared_model(MODEL)
    try:
        if shared.concurrency < 2:
            pytest.skip("one compute thread here: no second stream")
        inside, most = [0], [0]
        lock = threading.Lock()
        real = shared.model.run

        def counting(feeds):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            try:
                return real(feeds)
            finally:
                with lock:
                    inside[0] -= 1

        shared.model.run = counting   # the engine itself runs; only counted
        _concurrent(shared, list(model_inputs) * 2)
        assert most[0] == 2
    finally:
        release_model(shared)


# ---- a series' pairs in flight ------------------------------------------------------------------

def test_series_with_pairs_in_flight_is_the_one_by_one_series(tmp_path):
    from superretina.api import Session
    from superretina.fire.series_synth import make_series
    from superretina.fire.synth import load_source
    from superretina.series import register_series

    _, img = load_source("skimage:retina")
    make_series(tmp_path / "eye", img, "visits", 3, 384, seed=1)   # 3 images: 3 pairs
    fast = {"model": {"image_width": 384, "image_height": 384}, "keypoints": {"max_keypoints": 500}}
    with Session(fast) as session:
        one = register_series([tmp_path / "eye" / "series.csv"], session=session, jobs=1)
        two = register_series([tmp_path / "eye" / "series.csv"], session=session, jobs=3)
    a, b = one.to_json(), two.to_json()
    a.pop("seconds"), b.pop("seconds")
    assert len(one.pairs) == 3 and a == b
    for p, q in zip(one.pairs, two.pairs):
        assert (p.query, p.refer) == (q.query, q.refer)
        np.testing.assert_array_equal(p.registration.homography, q.registration.homography)
        np.testing.assert_array_equal(p.registration.matches.query_xy, q.registration.matches.query_xy)


# ---- a batch: pairs in flight, and OpenVINO streams, give the one-at-a-time rows ----------------

def test_batch_rows_are_the_same_one_at_a_time_and_in_flight_with_streams(shared_data, tmp_path, monkeypatch):
    from superretina.batch.engines import LocalEngine
    from superretina.batch.pairs import read_pairs
    from superretina.batch.runner import run_batch
    from tests.batch_fixtures import make_inputs, read_summary, write_pairs

    monkeypatch.delenv("MXLOCAL_INFER_STREAMS", raising=False)
    inputs = tmp_path / "in"
    make_inputs(inputs, shared_data)
    rows = [("p1", "example1.jpg", "example2.jpg"), ("p2", "example2.jpg", "example1.jpg"),
            ("p3", "example1.jpg", "example2.jpg"), ("u", "chase.png", "example1.jpg")]
    jobs, extra = read_pairs(write_pairs(inputs / "pairs.csv", rows, extra=None))
    got = {}
    for label, n in (("one", 1), ("flight", 3)):   # 1 job: latency; more: 2 OpenVINO streams (BATCH_STREAMS)
        engine = LocalEngine(inputs / "fast.yaml", None, "local", jobs=n)
        try:
            run_batch(jobs, extra, tmp_path / label, engine, pictures="none", progress=False)
        finally:
            engine.close()
        got[label] = {r["id"]: r for r in read_summary(tmp_path / label / "summary.csv")}
    assert sorted(got["one"]) == ["p1", "p2", "p3", "u"]
    for pid, row in got["one"].items():   # everything but the time, setup key included
        assert {k: v for k, v in row.items() if k != "seconds"} == \
               {k: v for k, v in got["flight"][pid].items() if k != "seconds"}, pid
    a = json.loads((tmp_path / "one" / "pairs" / "p1" / "result.json").read_text())
    b = json.loads((tmp_path / "flight" / "pairs" / "p1" / "result.json").read_text())
    assert a["keypoints"] == b["keypoints"] and a["matches"] == b["matches"] and a["homography"] == b["homography"]
    streams = [json.loads((tmp_path / x / "summary.json").read_text())["this_run"]["inference_streams"]
               for x in ("one", "flight")]
    assert streams == [1, min(2, physical_cores())]
    # the user's setting wins, and the environment is left as it was
    monkeypatch.setenv("MXLOCAL_INFER_STREAMS", "1")
    engine = LocalEngine(inputs / "fast.yaml", None, "local", jobs=2)
    engine.close()
    assert engine.inference_streams == 1
    monkeypatch.delenv("MXLOCAL_INFER_STREAMS")
    LocalEngine(inputs / "fast.yaml", None, "local", jobs=2).close()
    assert "MXLOCAL_INFER_STREAMS" not in os.environ


def test_series_jobs_out_of_range_is_one_line_and_exit_2(tmp_path, capsys):
    from superretina.cli import main as cli_main

    with pytest.raises(SystemExit) as stop:
        cli_main(["series", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), "--jobs", "0"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--jobs must be 1 to 16, got 0" in err[0]
