"""`batch --engine ray` on a local Ray instance gives the local engine's statuses and homographies.

Needs the cluster extra (ray); skipped with the reason when it is not installed (.ci/run
installs it). The Ray run goes through the command line, as a user starts it; it starts a
local instance of two CPUs and stops it at the end.
"""
import json

import numpy as np
import pytest

from superretina.batch.engines import LocalEngine
from superretina.batch.pairs import read_pairs
from superretina.batch.runner import run_batch
from superretina.batch.worker import H_COLUMNS
from tests.batch_fixtures import make_inputs, read_summary, write_pairs
from tests.model_fixtures import run_cli

pytest.importorskip("ray", reason="the Ray engine needs the cluster extra: pip install -e '.[cluster]'")


def test_ray_engine_matches_local_engine(tmp_path, shared_data):
    make_inputs(tmp_path, shared_data)
    pairs = write_pairs(tmp_path / "pairs.csv")
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    engine = LocalEngine(tmp_path / "fast.yaml", None, "local", jobs=2)
    try:
        jobs, extra = read_pairs(pairs)
        run_batch(jobs, extra, local_out, engine, pictures="thumbnails", progress=False)
    finally:
        engine.close()
    proc = run_cli("batch", pairs, "--out", ray_out, "--config", tmp_path / "fast.yaml", "--engine", "ray",
                   "--jobs", "2", "--thumbnails", "--no-progress", "--runtime", "local")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "with 2 ray worker(s)" in proc.stdout
    local = {r["id"]: r for r in read_summary(local_out / "summary.csv")}
    ray = {r["id"]: r for r in read_summary(ray_out / "summary.csv")}
    assert sorted(ray) == sorted(local) and len(read_summary(ray_out / "summary.csv")) == 5
    assert {k: r["status"] for k, r in ray.items()} == {k: r["status"] for k, r in local.items()}
    assert sum(r["status"] == "registered" for r in ray.values()) >= 2
    for pid, r in ray.items():
        assert r["transform"] == local[pid]["transform"] and r["reason"] == local[pid]["reason"]
        assert r["setup_sha"] == local[pid]["setup_sha"] and r["inputs_sha"] == local[pid]["inputs_sha"]
        if r["transform"]:
            hr = np.array([float(r[c]) for c in H_COLUMNS])
            hl = np.array([float(local[pid][c]) for c in H_COLUMNS])
            np.testing.assert_allclose(hr, hl, atol=1e-6, err_msg=pid)
            # The files came back from the workers to the driver's folder.
            assert sorted(p.name for p in (ray_out / "pairs" / pid).iterdir()) == sorted(
                p.name for p in (local_out / "pairs" / pid).iterdir())
    s = json.loads((ray_out / "summary.json").read_text())
    assert s["this_run"]["engine"] == "ray" and s["this_run"]["workers"] == 2
    # A rerun with the local engine reuses the Ray rows: same setup, same files.
    engine = LocalEngine(tmp_path / "fast.yaml", None, "local", jobs=1)
    try:
        s2 = run_batch(jobs, extra, ray_out, engine, pictures="thumbnails", progress=False)
    finally:
        engine.close()
    assert s2["this_run"]["reused_pairs"] == 3


def test_unreachable_cluster_is_one_line(tmp_path):
    """An --address where no cluster listens is refused at once (Ray alone retries for minutes)."""
    import socket

    from tests.model_fixtures import assert_one_line_error

    with socket.socket() as s:   # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pairs = tmp_path / "list.csv"
    pairs.write_text("query,refer\na.jpg,b.jpg\n")
    proc = run_cli("batch", pairs, "--out", tmp_path / "out", "--engine", "ray", "--address", f"127.0.0.1:{port}",
                   timeout=120)
    assert_one_line_error(proc, f"--address 127.0.0.1:{port}", "no Ray cluster answers", "ray start --head")
