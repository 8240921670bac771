"""`batch`: a pair list from ../shared/data plus bad rows, through the real model and stream.

Resumability is tested as users meet it: a rerun reuses finished rows, a changed --config is
refused, SIGKILL of a real subprocess mid-run then a rerun gives the same rows with no
duplicates, and Ctrl-C (SIGINT) keeps every finished row and exits 130.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from superretina.batch.engines import LocalEngine
from superretina.batch.pairs import BatchInputError, read_pairs
from superretina.batch.runner import run_batch
from superretina.batch.worker import H_COLUMNS
from superretina.report import build_report
from tests.batch_fixtures import make_inputs, read_summary, write_pairs
from tests.model_fixtures import PROJECT_ROOT, assert_one_line_error, cli_env, run_cli


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("batch_inputs")
    make_inputs(folder, shared_data)
    return folder


@pytest.fixture(scope="module")
def first_run(inputs, tmp_path_factory):
    """One CLI batch over the five pairs: (pairs.csv, out folder, completed process)."""
    pairs = write_pairs(inputs / "pairs.csv")
    out = tmp_path_factory.mktemp("batch") / "out"
    proc = run_cli("batch", pairs, "--out", out, "--config", inputs / "fast.yaml", "--no-progress")
    return pairs, out, proc


def _by_id(rows):
    return {r["id"]: r for r in rows}


def _homographies(rows):
    return {r["id"]: np.array([float(r[c]) for c in H_COLUMNS]) for r in rows if r["transform"]}


def test_batch_writes_rows_pictures_summary_and_report(first_run):
    pairs, out, proc = first_run
    assert proc.returncode == 0, proc.stderr
    assert "5 pairs: " in proc.stdout and "Traceback" not in proc.stderr
    rows = read_summary(out / "summary.csv")
    by = _by_id(rows)
    assert sorted(by) == ["corrupt", "missing", "p1", "p2", "unrelated"]
    assert by["missing"]["status"] == "error" and "nothere.jpg: file not found" in by["missing"]["reason"]
    assert by["corrupt"]["status"] == "error" and "not a readable image" in by["corrupt"]["reason"]
    for pid in ("p1", "p2"):  # the same eye: registered, a full homography, sane quality numbers
        r = by[pid]
        assert r["status"] == "registered" and r["transform"] in ("homography", "quadratic"), r
        assert float(r["h22"]) == pytest.approx(1.0) and int(r["inliers"]) >= 8
        assert 0 <= float(r["residual_median_px"]) < 10 and float(r["within_10px_pct"]) > 20 and float(r["seconds"]) > 0
        if r["transform"] == "quadratic":  # its parameters in the named columns are result.json's
            t = json.loads((out / "pairs" / pid / "result.json").read_text())["transform"]
            assert float(r["qy_yy"]) == pytest.approx(t["parameters"][1][5]) and float(r["q_refer_scale"]) > 0
        folder = out / "pairs" / pid
        for name in ("result.json", "result.jpg", "checkerboard.jpg", "match_result.jpg",
                     "thumb_checkerboard.jpg", "thumb_result.jpg"):
            assert (folder / name).is_file(), name
        info = json.loads((folder / "result.json").read_text())
        assert np.allclose(np.array(info["homography"]).ravel(), [float(r[c]) for c in H_COLUMNS], atol=1e-9)
    assert by["unrelated"]["status"] in ("registered", "failed")
    assert [r["patient"] for r in rows if r["id"] == "p2"] == ["P1"]  # carried through
    assert len({r["setup_sha"] for r in rows}) == 1 and all(r["inputs_sha"] for r in rows)
    s = json.loads((out / "summary.json").read_text())
    assert s["pairs"] == 5 and s["counts"]["error"] == 2 and sum(s["counts"].values()) == 5
    assert s["setup"]["method"] == "superretina" and s["setup"]["config"].endswith("fast.yaml")
    assert s["this_run"]["new_pairs"] == 5 and s["this_run"]["pairs_per_second"] > 0
    assert (out / "index.html").is_file() and (out / "report" / "rows-000.js").is_file()


def test_rerun_reuses_finished_rows(first_run):
    pairs, out, proc = first_run
    before = _by_id(read_summary(out / "summary.csv"))
    again = run_cli("batch", pairs, "--out", out, "--config", pairs.parent / "fast.yaml", "--no-progress")
    assert again.returncode == 0, again.stderr
    after = read_summary(out / "summary.csv")
    assert len(after) == 5 and len({r["id"] for r in after}) == 5
    s = json.loads((out / "summary.json").read_text())
    # Only the two error rows (whose files may have been fixed) were tried again.
    assert s["this_run"]["reused_pairs"] == 3 and s["this_run"]["new_pairs"] == 2
    for pid in ("p1", "p2", "unrelated"):
        assert _by_id(after)[pid] == before[pid]


def test_changed_config_is_refused_then_restart(first_run, tmp_path):
    pairs, out, _ = first_run
    other = tmp_path / "other.yaml"
    other.write_text((pairs.parent / "fast.yaml").read_text() + "matching:\n  knn_thresh: 0.8\n")
    proc = run_cli("batch", pairs, "--out", out, "--config", other, "--no-progress")
    assert_one_line_error(proc, str(out), "another setup", "config", "--restart")
    assert len(read_summary(out / "summary.csv")) == 5      # nothing touched
    proc = run_cli("batch", pairs, "--out", out, "--config", other, "--no-progress", "--restart")
    assert proc.returncode == 0, proc.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["this_run"]["new_pairs"] == 5 and s["setup"]["config"].endswith("other.yaml")


def test_changed_input_file_is_redone(inputs, tmp_path):
    pairs = write_pairs(tmp_path / "pairs.csv", [("a", str(inputs / "example1.jpg"), str(inputs / "example2.jpg"))],
                        extra=None)
    engine = LocalEngine(inputs / "fast.yaml", None, "local", jobs=1)
    try:
        jobs, extra = read_pairs(pairs)
        run_batch(jobs, extra, tmp_path / "out", engine, pictures="none", progress=False)
        assert sorted(p.name for p in (tmp_path / "out" / "pairs" / "a").iterdir()) == ["result.json"]
        assert run_batch(jobs, extra, tmp_path / "out", engine, "none", progress=False)["this_run"]["new_pairs"] == 0
        os.utime(inputs / "example2.jpg")          # a newer file at the same path
        s = run_batch(jobs, extra, tmp_path / "out", engine, "none", progress=False)
        assert s["this_run"]["new_pairs"] == 1 and len(read_summary(tmp_path / "out" / "summary.csv")) == 1
    finally:
        engine.close()


def _rows_when(path, n, proc, timeout=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and proc.poll() is None:
        if path.is_file() and path.read_text().count("\n") >= n + 1:
            return
        time.sleep(0.02)
    pytest.fail(f"batch did not write {n} rows (rc {proc.poll()})")


KILL_ROWS = [(f"k{i}", "example1.jpg" if i % 2 else "example2.jpg", "example2.jpg" if i % 2 else "example1.jpg")
             for i in range(6)]


def test_sigkill_mid_run_then_rerun_loses_and_duplicates_nothing(inputs, tmp_path):
    pairs = write_pairs(inputs / "kill.csv", KILL_ROWS, extra=None)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "superretina.cli", "batch", str(pairs), "--out", str(out),
           "--config", str(inputs / "fast.yaml"), "--jobs", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _rows_when(out / "summary.csv", 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    killed = read_summary(out / "summary.csv")
    assert 2 <= len(killed) < len(KILL_ROWS)
    assert not (out / "summary.json").exists()      # no stale counts for a run that did not end
    page = build_report(out).read_text()             # `report DIR` works on the killed run
    assert '"complete": false' in page and f'"pairs": {len(killed)}' in page
    again = subprocess.run(cmd, cwd=PROJECT_ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    rows = read_summary(out / "summary.csv")
    assert sorted(r["id"] for r in rows) == sorted(p for p, _, _ in KILL_ROWS)   # all, once each
    s = json.loads((out / "summary.json").read_text())
    assert s["this_run"]["reused_pairs"] == len(killed)
    assert s["this_run"]["new_pairs"] == len(KILL_ROWS) - len(killed)
    assert not (out / "pairs" / ".partial").exists() or not any((out / "pairs" / ".partial").iterdir())
    # Same rows as one uninterrupted run: k0, k2, k4 and k1, k3, k5 are the same pair.
    H = _homographies(rows)
    assert {r["status"] for r in rows} == {"registered"}
    for a, b in (("k0", "k2"), ("k0", "k4"), ("k1", "k3"), ("k1", "k5")):
        np.testing.assert_allclose(H[a], H[b], atol=1e-6)


def test_ctrl_c_keeps_finished_rows_and_exits_130(inputs, tmp_path):
    pairs = write_pairs(inputs / "int.csv", KILL_ROWS, extra=None)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "superretina.cli", "batch", str(pairs), "--out", str(out),
           "--config", str(inputs / "fast.yaml"), "--jobs", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,   # SIGINT as a terminal's Ctrl-C gives it, even under a suite that ignores it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _rows_when(out / "summary.csv", 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err and "terminate called" not in err
    rows = read_summary(out / "summary.csv")
    assert 1 <= len(rows) and len({r["id"] for r in rows}) == len(rows)
    s = json.loads((out / "summary.json").read_text())
    assert s["this_run"]["interrupted"] is True and s["pairs"] == len(rows)


@pytest.mark.parametrize("text, fragment", [
    ("query,other\na.jpg,b.jpg\n", "missing column(s) refer"),
    ("id,query,refer\nx,a.jpg,b.jpg\nx,c.jpg,d.jpg\n", "id 'x' repeats line 2"),
    ("id,query,refer\n../up,a.jpg,b.jpg\n", "id '../up' must be"),
    ("query,refer\na.jpg,\n", "line 2: empty refer path"),
    ("query,refer\n", "no pairs"),
])
def test_bad_pair_lists_are_one_line_errors(tmp_path, text, fragment):
    path = tmp_path / "pairs.csv"
    path.write_text(text)
    with pytest.raises(BatchInputError) as err:
        read_pairs(path)
    assert str(err.value).startswith(str(path)) and fragment in str(err.value)


def test_cli_bad_pair_list_and_out(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("query;refer\na.jpg;b.jpg\n")
    assert_one_line_error(run_cli("batch", path, "--out", tmp_path / "o"), str(path), "missing column")
    assert_one_line_error(run_cli("batch", tmp_path / "none.csv", "--out", tmp_path / "o"), "not found")
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_one_line_error(run_cli("batch", path, "--out", afile), "must be a folder")
    assert_one_line_error(run_cli("report", tmp_path), "no summary.csv")
    (tmp_path / "pairs.csv").write_text("id,query,refer\na.jpg,b.jpg\n")   # a pair list, not a run's results
    assert_one_line_error(run_cli("report", tmp_path), "no summary.csv")


@pytest.mark.parametrize("command, fragments", [
    ("batch", ["usage:", "PAIRS.csv", "query,refer", "summary.csv", "--engine", "--address", "--restart",
               "--thumbnails", "--no-pictures", "130"]),
    ("report", ["usage:", "index.html", "interrupted"]),
])
def test_help(command, fragments):
    proc = run_cli(command, "--help")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stdout, fragment
    top = run_cli("--help").stdout
    assert f"superretina {command}" in top
