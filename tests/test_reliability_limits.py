"""Issue 20.9: the smaller edges. A full disk names the file; an out-of-range
$MXLOCAL_GET_PROTOBUF_TIMEOUT_MS neither overflows nor turns into a zero wait; arrays are held
to input.max_pixels like files; --jobs has an upper bound; a refused run leaves no --out behind.
"""
from __future__ import annotations

import csv
import json
import logging
import resource
import subprocess
import sys
import threading

import numpy as np
import pytest

from superretina.batch.runner import STORE_COLUMNS
from superretina.image_io import ImageReadError
from tests.mxlocal_support import add_model, keys, protobuf_in, tensor_package_list
from tests.model_fixtures import PROJECT_ROOT, assert_one_line_error, cli_env, run_cli


def _limit_file_size(n: int):
    def apply():   # in the child: files beyond n bytes fail with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return apply


def test_full_disk_message_names_the_file(tmp_path):
    code = ("import sys\nfrom superretina.outputs import write_file\n"
            "try:\n    write_file(sys.argv[1] + '/result.json', b'x' * 100_000)\n"
            "except OSError as exc:\n    print(exc.filename, exc.strerror)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=PROJECT_ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=60, preexec_fn=_limit_file_size(1000))
    assert proc.stdout.strip() == f"{tmp_path / 'result.json'} File too large", proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == []          # no temporary file left behind


def test_full_disk_in_report_is_one_line_naming_the_file(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, STORE_COLUMNS, restval="")
        w.writeheader()
        w.writerow({"id": "p1", "query": "a.jpg", "refer": "b.jpg", "status": "registered"})
    proc = subprocess.run([sys.executable, "-m", "superretina.cli", "report", str(out)], cwd=PROJECT_ROOT,
                          env=cli_env(), capture_output=True, text=True, timeout=60,
                          preexec_fn=_limit_file_size(4000))
    assert_one_line_error(proc, str(out / "index.html"), "File too large")


@pytest.mark.parametrize("value", ["99999999999999999999", "0", "-1"])
def test_get_protobuf_timeout_out_of_range(api, tmp_path, monkeypatch, caplog, value):
    """The wait neither overflows (a traceback) nor becomes zero (every request failing at once):
    GetProtobuf is still waiting after a second, and returns when the stream is destroyed."""
    monkeypatch.setenv("MXLOCAL_GET_PROTOBUF_TIMEOUT_MS", value)
    stream = {"s": {"appsrc0": {"factory": "appsrc", "next": "mxpi_tensorinfer0"},
                    "appsrc1": {"factory": "appsrc", "next": "mxpi_tensorinfer0:1"},
                    "mxpi_tensorinfer0": {"factory": "mxpi_tensorinfer", "next": "appsink0",
                                          "props": {"dataSource": "appsrc0,appsrc1",
                                                    "modelPath": str(add_model(tmp_path / "add.onnx"))}},
                    "appsink0": {"factory": "appsink"}}}
    assert api.CreateMultipleStreams(json.dumps(stream).encode()) == 0
    x = np.ones((1, 3), np.float32)
    assert api.SendProtobuf(b"s", 0, protobuf_in(tensor_package_list(x))) == 0   # appsrc1 never sends
    box = {}

    def get():
        try:
            box["out"] = api.GetProtobuf(b"s", 0, keys(b"mxpi_tensorinfer0"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            box["error"] = exc

    with caplog.at_level(logging.WARNING, logger="mxlocal"):
        waiter = threading.Thread(target=get, daemon=True)
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive(), box          # neither an OverflowError nor an instant 1011
        api.DestroyAllStreams()
        waiter.join(30)
    assert not waiter.is_alive() and "error" not in box and box["out"].size() == 0
    assert any("MXLOCAL_GET_PROTOBUF_TIMEOUT_MS" in r.getMessage() for r in caplog.records)


def test_arrays_are_held_to_input_max_pixels():
    import superretina

    with superretina.Session({"input": {"max_pixels": 1_000_000}}) as session:
        big = np.zeros((1001, 1000), np.uint8)
        with pytest.raises(ImageReadError, match=r"query: array of 1000x1001 = 1001000 pixels; at most 1000000"):
            session.register(big, np.zeros((100, 100), np.uint8))
        with pytest.raises(ImageReadError, match="refer: array of"):
            session.register(np.zeros((100, 100), np.uint8), big)


def test_jobs_upper_bound(tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("query,refer\na.jpg,b.jpg\n")
    line = assert_one_line_error(run_cli("batch", pairs, "--out", tmp_path / "o", "--jobs", "17"),
                                 "--jobs must be 1 to 16", "got 17")
    assert "--engine local" in line and not (tmp_path / "o").exists()
    assert_one_line_error(run_cli("batch", pairs, "--out", tmp_path / "o", "--jobs", "0"), "--jobs must be 1 to 16")
    assert_one_line_error(run_cli("fire", tmp_path, "--out", tmp_path / "o", "--jobs", "32", "--method", "sift"),
                          "--jobs must be 1 to 16")


def test_refused_runs_leave_no_out_folder(tmp_path, retina_bgr):
    import cv2

    image = tmp_path / "eye.png"
    cv2.imwrite(str(image), retina_bgr)
    missing = tmp_path / "no.pipeline"
    out = tmp_path / "deep" / "er" / "out"
    assert_one_line_error(run_cli(image, image, "--pipeline", missing, "--out", out), "no.pipeline")
    assert not (tmp_path / "deep").exists()
    assert_one_line_error(run_cli(image, tmp_path / "nothere.png", "--out", out), "nothere.png")
    assert not (tmp_path / "deep").exists()
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"query,refer\n{image},{image}\n")
    assert_one_line_error(run_cli("batch", pairs, "--pipeline", missing, "--out", out), "no.pipeline")
    assert not (tmp_path / "deep").exists()
