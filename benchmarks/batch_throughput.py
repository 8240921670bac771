"""Batch throughput, today's code against this tree's, in one run: pairs/s with pictures, with
thumbnails only and without pictures; per-stage seconds and peak memory.

    python benchmarks/batch_throughput.py [--baseline REF] [--pairs 4] [--rounds 2] [--workers 2]

``--baseline`` is a git revision of this repository (default ``6edbbc6``, main before the decode
stream): its ``python/ plugins/ pipeline/ configs/`` are extracted with ``git archive`` into a
temporary folder (the model files, which git does not hold, are linked from this tree's
``model/``), so the baseline is the code as it was, not a switch in today's code. Both sides run
``superretina batch`` (local engine, ``--workers`` pairs in flight, default model and
configuration) over the same pair list — the first ``--pairs`` pairs of ../shared/data/fire_dev
(2912x2912 JPEGs) — each run in its own process (its own peak memory), taking turns run by run
and mode by mode so that changes of machine load hit both. pairs/s counts registration and
writing (after the engine is open); CPU s/pair is the run process's CPU time (all its threads) per
pair, less sensitive than pairs/s to other work on a shared machine. Stages: the median over the run's pairs of result.json's
``seconds`` (what the registrar timed; with pairs in flight these overlap and include waiting).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRE_DEV = ROOT.parent / "shared" / "data" / "fire_dev"
MODES = ("full", "thumbnails", "none")
DEFAULT_BASELINE = "6edbbc6"


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def one(pairs: Path, out: Path, pictures: str, workers: int) -> dict:
    """One batch run in this process (the side's code comes first on PYTHONPATH)."""
    from superretina.batch.engines import make_engine
    from superretina.batch.pairs import read_pairs
    from superretina.batch.runner import run_batch

    jobs, extra = read_pairs(pairs)
    t0 = time.perf_counter()
    engine = make_engine("local", None, None, "local", workers, None)
    up = time.perf_counter() - t0
    try:
        t1, c1 = time.perf_counter(), time.process_time()
        s = run_batch(jobs, extra, out, engine, pictures=pictures, progress=False)
        wall, cpu = time.perf_counter() - t1, time.process_time() - c1
    finally:
        engine.close()
    stages: dict[str, list] = {}
    for info in (json.loads(p.read_text()) for p in sorted((out / "pairs").glob("*/result.json"))):
        for k, v in info.get("seconds", {}).items():
            stages.setdefault(k, []).append(v)
    return {"pairs": len(jobs), "registered": s["counts"]["registered"], "errors": s["counts"]["error"],
            "pairs_per_second": len(jobs) / wall, "cpu_seconds_per_pair": cpu / len(jobs),
            "startup_seconds": round(up, 2),
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "stages_median": {k: round(statistics.median(v), 4) for k, v in stages.items()},
            "code": str(Path(sys.modules["superretina"].__file__).parents[1])}


def extract(ref: str, dst: Path) -> Path:
    """``git archive`` of ``ref``'s code into ``dst``; its model/ is this tree's (untracked files)."""
    dst.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "python", "plugins", "pipeline", "configs"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dst)], input=archive, check=True)
    (dst / "model").symlink_to(ROOT / "model")
    return dst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default=DEFAULT_BASELINE, help=f"git revision of today's code (default {DEFAULT_BASELINE})")
    ap.add_argument("--pairs", type=int, default=4, help="pairs of fire_dev in the list (default 4)")
    ap.add_argument("--rounds", type=int, default=2, help="alternations (default 2)")
    ap.add_argument("--workers", type=int, default=2, help="pairs in flight (batch --jobs, default 2)")
    ap.add_argument("--modes", default=",".join(MODES), help="pictures modes (default full,thumbnails,none)")
    ap.add_argument("--json", type=Path, help="write every run's numbers here")
    ap.add_argument("--one", nargs=3, metavar=("PAIRS", "OUT", "PICTURES"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(Path(args.one[0]), Path(args.one[1]), args.one[2], args.workers)))
        return 0
    sys.path.insert(1, str(ROOT / "python"))
    from superretina.fire.protocol import list_pairs

    if not FIRE_DEV.is_dir():
        print(f"error: {FIRE_DEV} not found (the benchmark uses ../shared/data/fire_dev)", file=sys.stderr)
        return 2
    modes = args.modes.split(",")
    runs: dict = {(side, m): [] for side in ("baseline", "new") for m in modes}
    with tempfile.TemporaryDirectory(prefix="batch_throughput_") as tmp:
        tmp = Path(tmp)
        code = {"baseline": extract(args.baseline, tmp / "baseline") / "python", "new": ROOT / "python"}
        specs = list_pairs(FIRE_DEV)[: args.pairs]
        pairs = tmp / "pairs.csv"
        pairs.write_text("id,query,refer\n" + "".join(f"{s.name},{s.query_path},{s.refer_path}\n" for s in specs))
        for r in range(args.rounds):
            for m in modes:
                for side in (("baseline", "new") if r % 2 == 0 else ("new", "baseline")):
                    env = {**os.environ, "PYTHONPATH": str(code[side])}
                    out = tmp / f"{side}-{m}-{r}"
                    proc = subprocess.run([sys.executable, __file__, "--workers", str(args.workers), "--one",
                                           str(pairs), str(out), m], capture_output=True, text=True, env=env)
                    if proc.returncode != 0:
                        print(proc.stderr[-3000:], file=sys.stderr)
                        return 1
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                    runs[(side, m)].append(res)
                    print(f"round {r} {side:8s} {m:10s} {res['pairs_per_second']:.3f} pairs/s  "
                          f"{res['cpu_seconds_per_pair']:.2f} CPU s/pair  "
                          f"peak {res['peak_rss_mib']:.0f} MiB  registered {res['registered']}/{res['pairs']}"
                          f"  code {res['code']}", flush=True)
    print(f"\n{len(specs)} fire_dev pairs, {args.workers} in flight, {os.cpu_count()} CPUs;"
          f" baseline = git {args.baseline}, new = this tree; median of {args.rounds} runs")
    print(f"{'pictures':12s} {'baseline pairs/s':>17s} {'new pairs/s':>12s} {'new/baseline':>13s}"
          f" {'CPU s/pair base/new':>20s} {'peak MiB base/new':>18s}")
    table = {}
    for m in modes:
        b = statistics.median(x["pairs_per_second"] for x in runs[("baseline", m)])
        n = statistics.median(x["pairs_per_second"] for x in runs[("new", m)])
        mb = max(x["peak_rss_mib"] for x in runs[("baseline", m)])
        mn = max(x["peak_rss_mib"] for x in runs[("new", m)])
        cb = statistics.median(x["cpu_seconds_per_pair"] for x in runs[("baseline", m)])
        cn = statistics.median(x["cpu_seconds_per_pair"] for x in runs[("new", m)])
        table[m] = {"baseline_pairs_per_second": b, "new_pairs_per_second": n, "ratio": n / b,
                    "cpu_seconds_per_pair": [cb, cn], "peak_rss_mib": [mb, mn]}
        print(f"{m:12s} {b:17.3f} {n:12.3f} {n / b:13.2f} {cb:10.2f} / {cn:<8.2f} {mb:8.0f} / {mn:.0f}")
    print("\nmedian stage seconds per pair (result.json 'seconds'; overlapping pairs, waits included):")
    for m in modes:
        for side in ("baseline", "new"):
            st = runs[(side, m)][-1]["stages_median"]
            print(f"  {m:10s} {side:8s} " + ", ".join(f"{k} {v:.3f}" for k, v in st.items()))
    if args.json:
        args.json.write_text(json.dumps({"produced_by": "benchmarks/batch_throughput.py", "baseline": args.baseline,
                                         "pairs": len(specs), "workers": args.workers, "table": table,
                                         "runs": {f"{s}/{m}": v for (s, m), v in runs.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
