"""Issue 20.1, 20.3, 20.5, 20.6: a batch's output folder and rows under concurrent and hostile use.

Real photographs from ../shared/data (resized), the shipped model, the local engine opened
once for the module; every pair list is one or two pairs with pictures off, so each run takes
seconds.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import pytest

from superretina.batch.engines import LocalEngine
from superretina.batch.pairs import BatchInputError, read_pairs
from superretina.batch.runner import run_batch
from tests.batch_fixtures import make_inputs, read_summary, write_pairs
from tests.model_fixtures import PROJECT_ROOT, assert_one_line_error, cli_env, run_cli


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("edge_inputs")
    make_inputs(folder, shared_data)
    return folder


@pytest.fixture(scope="module")
def engine(inputs):
    eng = LocalEngine(inputs / "fast.yaml", None, "local", jobs=1)
    yield eng
    eng.close()


def _pairs(path, rows, header=("id", "query", "refer")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _one_pair_list(inputs, folder):
    """pairs.csv in ``folder`` with one row: "a", example1.jpg onto example2.jpg."""
    return write_pairs(folder / "pairs.csv", [("a", str(inputs / "example1.jpg"), str(inputs / "example2.jpg"))],
                       extra=None)


def _holder(out):
    """A second process holding ``out`` as a running batch does (an exclusive flock on
    OUT/.superretina.lock, its pid and host written in it) until its stdin closes."""
    code = ("import fcntl, os, socket, sys\nos.makedirs(sys.argv[1], exist_ok=True)\n"
            "fd = os.open(os.path.join(sys.argv[1], '.superretina.lock'), os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, f'pid {os.getpid()} on {socket.gethostname()}'.encode())\n"
            "print('held', flush=True)\nsys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], cwd=PROJECT_ROOT, env=cli_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


# --------------------------------------------------------------------------- 20.1 one run per folder
def test_second_run_on_a_held_folder_is_refused_naming_the_holder(inputs, engine, tmp_path):
    pairs = _one_pair_list(inputs, tmp_path)
    out = tmp_path / "out"
    holder = _holder(out)
    try:
        jobs, extra = read_pairs(pairs)
        with pytest.raises(BatchInputError, match=f"in use by another run \\(pid {holder.pid} on "):
            run_batch(jobs, extra, out, engine, pictures="none", progress=False)
        proc = run_cli("batch", pairs, "--out", out, "--config", inputs / "fast.yaml", "--no-progress")
        assert_one_line_error(proc, str(out), "in use by another run", f"pid {holder.pid}", "another --out")
        assert not (out / "summary.csv").exists() and not (out / "pairs").exists()   # nothing touched
    finally:
        holder.kill()          # SIGKILL: the kernel drops the lock, no stale lock is left
        holder.wait(30)
    s = run_batch(jobs, extra, out, engine, pictures="none", progress=False)
    assert s["this_run"]["new_pairs"] == 1 and (out / "pairs" / "a" / "result.json").is_file()


def test_two_concurrent_cli_runs_one_refused_and_every_row_complete(inputs, tmp_path):
    """The reproduction of issue 20.1: two batches at once on one --out."""
    rows = [(f"c{i}", "example1.jpg", "example2.jpg") for i in range(3)]
    pairs = write_pairs(inputs / "concurrent.csv", rows, extra=None)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "superretina.cli", "batch", str(pairs), "--out", str(out),
           "--config", str(inputs / "fast.yaml"), "--no-pictures", "--no-progress"]
    procs = [subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=cli_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(300), *p.communicate()) for p in procs]
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for rc, _, err in results if rc == 2)
    assert "in use by another run" in refused and "Traceback" not in refused
    for r in read_summary(out / "summary.csv"):
        assert (out / "pairs" / r["id"] / "result.json").is_file(), r["id"]


def test_fire_run_on_a_held_folder_is_refused(tmp_path, shared_data):
    """`fire` and `compare` share the batch's store, and its lock: the API and the CLI."""
    from superretina.fire.evaluate import evaluate
    from superretina.fire.protocol import PairSpec

    out = tmp_path / "fire_out"
    holder = _holder(out)
    try:
        pairs = [PairSpec("S01", "S", tmp_path / "q.jpg", tmp_path / "r.jpg", tmp_path / "gt.txt")]
        with pytest.raises(BatchInputError, match=f"in use by another run \\(pid {holder.pid} "):
            evaluate(pairs, lambda q, r: None, out, progress=False, verbose=False)
        proc = run_cli("fire", shared_data / "fire_dev", "--method", "sift", "--out", out, "--no-progress")
        assert_one_line_error(proc, str(out), "in use by another run", f"pid {holder.pid}")
        assert sorted(os.listdir(out)) == [".superretina.lock"]      # nothing written
    finally:
        holder.kill()
        holder.wait(30)


def test_rerun_redoes_a_reused_row_whose_result_json_is_gone(inputs, engine, tmp_path):
    rows = [("a", str(inputs / "example1.jpg"), str(inputs / "example2.jpg")),
            ("b", str(inputs / "example2.jpg"), str(inputs / "example1.jpg"))]
    jobs, extra = read_pairs(write_pairs(tmp_path / "pairs.csv", rows, extra=None))
    out = tmp_path / "out"
    run_batch(jobs, extra, out, engine, pictures="none", progress=False)
    (out / "pairs" / "b" / "result.json").unlink()
    s = run_batch(jobs, extra, out, engine, pictures="none", progress=False)
    assert s["this_run"]["reused_pairs"] == 1 and s["this_run"]["new_pairs"] == 1
    assert (out / "pairs" / "b" / "result.json").is_file()


# --------------------------------------------------------------------------- 20.3 links in --out
def test_links_planted_in_out_are_never_written_through(inputs, engine, tmp_path):
    jobs, extra = read_pairs(_one_pair_list(inputs, tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    victims = tmp_path / "victims"
    victims.mkdir()
    for name in ("summary.csv.tmp", "run.json.tmp", "summary.json.tmp", "index.html.tmp",
                 "summary.json", "run.json", "index.html"):
        (victims / name).write_text("precious")
        (out / name).symlink_to(victims / name)
    run_batch(jobs, extra, out, engine, pictures="none", progress=False)
    for name in os.listdir(victims):
        assert (victims / name).read_text() == "precious", name
    for name in ("summary.json", "run.json", "index.html"):
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0


def test_linked_pairs_folder_is_refused_and_its_target_untouched(inputs, engine, tmp_path):
    jobs, extra = read_pairs(_one_pair_list(inputs, tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "elsewhere"
    (target / "a").mkdir(parents=True)
    (target / "a" / "keep.txt").write_text("precious")
    (target / ".partial").mkdir()
    (target / ".partial" / "keep.txt").write_text("precious")
    (out / "pairs").symlink_to(target, target_is_directory=True)
    with pytest.raises(BatchInputError, match="pairs: is a symbolic link"):
        run_batch(jobs, extra, out, engine, pictures="none", progress=False)
    assert (target / "a" / "keep.txt").read_text() == "precious"
    assert (target / ".partial" / "keep.txt").read_text() == "precious"


# --------------------------------------------------------------------------- 20.5 read-time key
class _ReplaceAfterRead:
    """The local engine, with the query file replaced while each pair is in flight: after the
    worker has decoded it, before the runner commits the row (the race of issue 20.5)."""

    def __init__(self, engine, path, new_bytes):
        self._e, self._path, self._new = engine, path, new_bytes
        self.name = engine.name

    def setup(self, pictures):
        return self._e.setup(pictures)

    def map(self, jobs, pictures, dest_for):
        for job, output in self._e.map(jobs, pictures, dest_for):
            time.sleep(0.01)                           # a different mtime, whatever the clock's grain
            tmp = self._path.with_name("replacement.tmp")
            tmp.write_bytes(self._new)
            os.replace(tmp, self._path)
            yield job, output

    def drain(self):
        return self._e.drain()

    @property
    def workers(self):
        return self._e.workers


def test_file_replaced_in_flight_is_redone_on_rerun(inputs, engine, tmp_path):
    query = tmp_path / "query.jpg"
    query.write_bytes((inputs / "example1.jpg").read_bytes())
    jobs, extra = read_pairs(write_pairs(tmp_path / "pairs.csv", [("a", str(query), str(inputs / "example2.jpg"))],
                                         extra=None))
    out = tmp_path / "out"
    replacing = _ReplaceAfterRead(engine, query, (inputs / "chase.png").read_bytes())
    run_batch(jobs, extra, out, replacing, pictures="none", progress=False)
    # The row describes example1 (what was decoded); the file now holds another eye: redo it.
    s = run_batch(jobs, extra, out, engine, pictures="none", progress=False)
    assert s["this_run"]["new_pairs"] == 1 and s["this_run"]["reused_pairs"] == 0
    assert run_batch(jobs, extra, out, engine, pictures="none", progress=False)["this_run"]["reused_pairs"] == 1


# --------------------------------------------------------------------------- 20.6 CSV
def test_pair_list_is_read_by_the_csv_module(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text('id,query,refer,note\n'
                    'a,q1.jpg,r1.jpg,"first line\nsecond line"\n'
                    'b,q2.jpg,r2.jpg,with\u2028separator and \x0c form feed\n', encoding="utf-8", newline="")
    jobs, extra = read_pairs(path)
    assert [j.id for j in jobs] == ["a", "b"] and extra == ["note"]
    assert jobs[0].extra["note"] == "first line\nsecond line"
    assert jobs[1].extra["note"] == "with\u2028separator and \x0c form feed"
    path.write_text("id,query,refer\na,q.jpg,r.jpg\nb," + "x" * 200_000 + ",r.jpg\n")   # over csv's field limit
    with pytest.raises(BatchInputError, match=r"line 3: not CSV \(field larger than field limit"):
        read_pairs(path)


def test_formula_cells_are_neutralised_in_summary_csv(inputs, engine, tmp_path):
    rows = [("a", str(inputs / "example1.jpg"), str(inputs / "example2.jpg"),
             "=HYPERLINK(\"http://x\",\"y\")", "-3.5", "@SUM(A1)", "+1+1", "-cmd|' /C calc'!A0")]
    path = _pairs(tmp_path / "pairs.csv", rows, ("id", "query", "refer", "f1", "f2", "f3", "f4", "f5"))
    jobs, extra = read_pairs(path)
    out = tmp_path / "out"
    run_batch(jobs, extra, out, engine, pictures="none", progress=False)
    row = read_summary(out / "summary.csv")[0]
    assert row["f1"] == "'=HYPERLINK(\"http://x\",\"y\")" and row["f2"] == "-3.5"     # numbers stay numbers
    assert row["f3"] == "'@SUM(A1)" and row["f4"] == "'+1+1" and row["f5"] == "'-cmd|' /C calc'!A0"
    assert float(row["h00"]) and row["status"] == "registered"                       # our own cells unchanged
    again = run_batch(jobs, extra, out, engine, pictures="none", progress=False)   # reused rows: same cells
    assert again["this_run"]["reused_pairs"] == 1 and read_summary(out / "summary.csv")[0]["f1"] == row["f1"]


def test_colliding_carried_columns_are_refused(inputs, tmp_path):
    path = _pairs(tmp_path / "pairs.csv", [("a", "q.jpg", "r.jpg", "x", "y")],
                  ("id", "query", "refer", "status", "in_status"))
    proc = run_cli("batch", path, "--out", tmp_path / "out", "--config", inputs / "fast.yaml", timeout=120)
    assert_one_line_error(proc, str(path), "columns 'status' and 'in_status' would both be 'in_status'", "rename one")
    assert not (tmp_path / "out").exists()
    jobs, extra = read_pairs(path)
    with pytest.raises(BatchInputError, match="in_status"):
        run_batch(jobs, extra, tmp_path / "out", None)
