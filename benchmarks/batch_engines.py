"""Throughput of `batch` with the local and the Ray engine: pairs/s and peak memory per worker.

    python benchmarks/batch_engines.py [--pairs 12] [--rounds 3] [--engines local,ray] [--workers 2]

A pair list of ``--pairs`` rows over the real same-eye pair of ../shared/data/pairs (1736x1824,
both orders; the default model and configuration, full pictures) is registered into a fresh
folder by each engine in turn, ``--rounds`` times, alternating engines so that changes of machine
load hit both. Each run is its own process (``--one``), so its peak memory is its own: for the
local engine the one process (one model, ``--workers`` pairs in flight), for Ray each actor
(one model each) and the driver. pairs/s counts registration only (after the engine is up: Ray's
start-up and the model loading are reported apart). Prints one line per run, then the medians,
the ratio ray/local, and the per-pair cost in core-seconds that the capacity plan in
docs/batch.md is computed from.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "pairs"


def one(engine_name: str, pairs: Path, out: Path, workers: int) -> dict:
    sys.path[:0] = [str(ROOT / "python")]
    from superretina.batch.engines import make_engine
    from superretina.batch.pairs import read_pairs
    from superretina.batch.runner import run_batch

    jobs, extra = read_pairs(pairs)
    t0 = time.perf_counter()
    engine = make_engine(engine_name, None, None, "local", workers, None)
    if engine_name == "ray":
        engine.setup("full")        # waits until every actor has opened the application
    up = time.perf_counter() - t0
    try:
        s = run_batch(jobs, extra, out, engine, progress=False)
        worker_rss = engine.peak_rss_mib() if engine_name == "ray" else None
    finally:
        engine.close()
    driver_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"engine": engine_name, "workers": engine.workers, "pairs": len(jobs),
            "registered": s["counts"]["registered"], "pairs_per_second": s["this_run"]["pairs_per_second"],
            "startup_seconds": round(up, 2), "median_seconds_per_pair_in_worker": s["seconds_per_pair"]["median"],
            "driver_peak_rss_mib": round(driver_rss, 1),
            "worker_peak_rss_mib": [round(v, 1) for v in worker_rss] if worker_rss else [round(driver_rss, 1)]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--workers", type=int, default=2, help="local: pairs in flight; ray: actors (default 2)")
    ap.add_argument("--one", nargs=3, metavar=("ENGINE", "PAIRS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], Path(args.one[1]), Path(args.one[2]), args.workers)))
        return 0
    if not (SHARED / "example1.jpg").is_file():
        print(f"error: {SHARED}/example1.jpg not found (the benchmark uses ../shared/data)", file=sys.stderr)
        return 2
    engines = args.engines.split(",")
    results: dict[str, list[dict]] = {e: [] for e in engines}
    with tempfile.TemporaryDirectory() as tmp:
        pairs = Path(tmp) / "pairs.csv"
        a, b = SHARED / "example1.jpg", SHARED / "example2.jpg"
        pairs.write_text("id,query,refer\n" + "".join(
            f"p{i:03d},{a if i % 2 else b},{b if i % 2 else a}\n" for i in range(args.pairs)))
        for r in range(args.rounds):
            for e in engines:
                out = Path(tmp) / f"{e}{r}"
                proc = subprocess.run([sys.executable, __file__, "--workers", str(args.workers), "--one", e,
                                       str(pairs), str(out)], capture_output=True, text=True)
                if proc.returncode != 0:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    return 1
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                results[e].append(res)
                print(f"round {r + 1} {e:5s}: {res['pairs_per_second']:.3f} pairs/s, {res['registered']}/{res['pairs']} "
                      f"registered, start-up {res['startup_seconds']} s, peak RSS per worker "
                      f"{res['worker_peak_rss_mib']} MiB (driver {res['driver_peak_rss_mib']} MiB)", flush=True)
    cores = os.cpu_count()
    print(f"\nmedian of {args.rounds} runs, {args.pairs} pairs of 1736x1824 px, {args.workers} workers, "
          f"{cores} cores, load average before: {os.getloadavg()[0]:.2f}")
    med = {}
    for e, rs in results.items():
        med[e] = statistics.median(r["pairs_per_second"] for r in rs)
        rss = statistics.median(max(r["worker_peak_rss_mib"]) for r in rs)
        print(f"{e:5s}: {med[e]:.3f} pairs/s = {cores / med[e]:.2f} core-seconds per pair; "
              f"peak RSS per worker {rss:.0f} MiB; start-up {statistics.median(r['startup_seconds'] for r in rs):.1f} s")
    if "local" in med and "ray" in med:
        print(f"ray / local throughput: {med['ray'] / med['local']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
