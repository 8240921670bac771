"""Where a batch's CPU goes: CPU seconds per thread group and the pairs' stage seconds.

    PYTHONPATH=python .venv/bin/python benchmarks/batch_cpu.py PAIRS.csv [--jobs 2] [--pictures none]

Runs ``superretina batch`` (local engine) in this process, then reads every thread's CPU time
from ``/proc/self/task/<tid>/stat`` before the engine closes, grouped by what the thread is:
the batch workers (registration, post-processing and pictures of the pairs), the image pool
(``parallel.py``: decodes/pictures side by side), each stream element of the local runtime
(decoder, enhance, tensorinfer — the tensorinfer thread's own Python work; the network's compute
runs on OpenVINO's/ONNX Runtime's native threads), the stream receivers, and native threads
(inference compute). Threads that ended before the end (none in a batch) are not counted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of every thread of this process, by native id."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def group(name: str | None) -> str:
    if name is None:
        return "native (inference compute, libraries)"
    for prefix, label in (("superretina-batch", "batch workers (register + outputs)"),
                          ("superretina-images", "image pool (parallel.py)"),
                          ("superretina-receiver", "stream receivers"),
                          ("MainThread", "main (driver, summary)")):
        if name.startswith(prefix):
            return label
    if name.startswith("mxlocal:"):
        return "element " + name.split(":", 2)[2] + " (" + name.split(":")[1] + ")"
    return "other python: " + name.rstrip("0123456789_-")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", type=Path)
    ap.add_argument("--out", type=Path, help="output folder (default: a temporary one)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--pictures", choices=("full", "thumbnails", "none"), default="none")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    import tempfile

    from superretina.batch.engines import make_engine
    from superretina.batch.pairs import read_pairs
    from superretina.batch.runner import run_batch

    jobs, extra = read_pairs(args.pairs)
    engine = make_engine("local", None, None, "local", args.jobs, None)
    with tempfile.TemporaryDirectory(prefix="batch_cpu_") as tmp:
        out = args.out or Path(tmp) / "out"
        before = thread_cpu()
        t0, c0 = time.perf_counter(), time.process_time()
        run_batch(jobs, extra, out, engine, pictures=args.pictures, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        after = thread_cpu()
        names = {t.native_id: t.name for t in threading.enumerate()}
        groups: dict[str, float] = {}
        for tid, c in after.items():
            g = group(names.get(tid))
            groups[g] = groups.get(g, 0.0) + c - before.get(tid, 0.0)
        stages: dict[str, list] = {}
        for p in sorted((out / "pairs").glob("*/result.json")):
            for k, v in json.loads(p.read_text()).get("seconds", {}).items():
                stages.setdefault(k, []).append(v)
    engine.close()
    n = len(jobs)
    print(f"{n} pairs, {args.jobs} in flight, pictures {args.pictures}: wall {wall:.1f} s ({n / wall:.3f} pairs/s), "
          f"process CPU {cpu:.1f} s ({cpu / n:.2f} s/pair, {cpu / wall:.2f} cores busy)")
    print("CPU seconds per pair by thread group:")
    for g, c in sorted(groups.items(), key=lambda kv: -kv[1]):
        if c / n >= 0.005:
            print(f"  {c / n:6.3f}  {100 * c / cpu:5.1f} %  {g}")
    print("stage seconds per pair (result.json 'seconds', median; pairs overlap, waits included):")
    print("  " + ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in stages.items()))
    if args.json:
        args.json.write_text(json.dumps({"produced_by": "benchmarks/batch_cpu.py", "pairs": n, "jobs": args.jobs,
                                         "pictures": args.pictures, "wall_s": wall, "cpu_s": cpu,
                                         "cpu_s_per_pair_by_group": {g: c / n for g, c in groups.items()},
                                         "stage_median_s": {k: statistics.median(v) for k, v in stages.items()}},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
