"""Batch throughput of versions and variants in one run: pairs/s with pictures, with thumbnails
only and without pictures; CPU seconds per pair, peak memory, per-stage seconds.

    python benchmarks/batch_throughput.py [--variants 0.2.0,new,new:fast] [--pairs 0] [--rounds 2]
                                          [--workers 2] [--modes full,thumbnails,none]

Variants (``--variants``, comma-separated, the first is the baseline of the ratios):

* ``0.2.0`` (or ``base``): git ``--baseline`` (default ``6edbbc6``, version 0.2.0, main before the
  decode stream): its ``python/ plugins/ pipeline/ configs/`` are extracted with ``git archive``
  into a temporary folder (the model files, which git does not hold, are linked from this tree's
  ``model/``), so the baseline is the code as it was, not a switch in today's code; its default
  pipeline and model.
* ``new``: this tree with its default pipeline; ``new:NAME``: this tree with ``--model NAME``
  (a shipped pipeline, e.g. ``fast``, or the old model by its name once the default changes).
  This tree's batch runs OpenVINO with 2 CPU streams when 2+ pairs are in flight
  (``batch.engines.BATCH_STREAMS``); ``new+streams1`` measures it with LATENCY instead.
* a ``+streamsN`` suffix on either runs it with ``$MXLOCAL_INFER_STREAMS=N`` (OpenVINO CPU
  streams: N requests at once; e.g. ``new+streams2``);
* a ``+blasN`` suffix runs it with ``$SUPERRETINA_BLAS_THREADS=N`` (``new+blas0``: numpy's BLAS
  left on its own threads, as before 0.7.0).

Every variant runs ``superretina batch`` (local engine, ``--workers`` pairs in flight, default
configuration) over the same pair list — by default all 13 pairs of ../shared/data/fire_dev
(2912x2912 JPEGs: 5 S, 6 P, 2 A; 12 of them run the matching trick, only S61's first pass is
conclusive); ``--pairs 4`` keeps the first 4 (A13, A14, P25, P30: all run the trick), the set of the
0.3.0 README — each run in its own process (its own peak memory), taking turns run by run and
mode by mode (the order reversed every other round) so that changes of machine load hit all of
them. pairs/s counts registration and writing (after the engine is open); CPU s/pair is the run
process's CPU time (all its threads) per pair, less sensitive than pairs/s to other work on a
shared machine. Stages: the median over the run's pairs of result.json's ``seconds`` (what the
registrar timed; with pairs in flight these overlap and include waiting).
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


def one(pairs: Path, out: Path, pictures: str, workers: int, model: str | None = None) -> dict:
    """One batch run in this process (the side's code comes first on PYTHONPATH)."""
    from superretina.batch.engines import make_engine
    from superretina.batch.pairs import read_pairs
    from superretina.batch.runner import run_batch

    pipeline = None
    if model:   # this tree's shipped pipeline of that name (the baseline has no --model)
        from superretina.models import choose_pipeline
        pipeline = choose_pipeline(model, None)
    jobs, extra = read_pairs(pairs)
    t0 = time.perf_counter()
    engine = make_engine("local", None, pipeline, "local", workers, None)
    up = time.perf_counter() - t0
    try:
        t1, c1 = time.perf_counter(), time.process_time()
        s = run_batch(jobs, extra, out, engine, pictures=pictures, progress=False)
        wall, cpu = time.perf_counter() - t1, time.process_time() - c1
    finally:
        engine.close()
    stages: dict[str, list] = {}
    infos = [json.loads(p.read_text()) for p in sorted((out / "pairs").glob("*/result.json"))]
    for info in infos:
        for k, v in info.get("seconds", {}).items():
            stages.setdefault(k, []).append(v)
    return {"pairs": len(jobs), "registered": s["counts"]["registered"], "errors": s["counts"]["error"],
            "pairs_per_second": len(jobs) / wall, "cpu_seconds_per_pair": cpu / len(jobs),
            "startup_seconds": round(up, 2),
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "stages_median": {k: round(statistics.median(v), 4) for k, v in stages.items()},
            "model": infos[0].get("model") if infos else None, "engine": infos[0].get("engine") if infos else None,
            "code": str(Path(sys.modules["superretina"].__file__).parents[1])}


def parse_variant(text: str) -> dict:
    """``0.2.0`` / ``base`` / ``new`` / ``new:MODEL``, optionally ``+streamsN`` (OpenVINO streams) or
    ``+blasN`` (numpy's BLAS threads, 0: left as numpy has them, as before 0.7.0): code side, model, env."""
    name, _, suffix = text.partition("+")
    env = {}
    settings = {"streams": "MXLOCAL_INFER_STREAMS", "blas": "SUPERRETINA_BLAS_THREADS"}
    if suffix:
        key = suffix.rstrip("0123456789")
        if key not in settings or not suffix[len(key):].isdigit():
            raise SystemExit(f"error: --variants: {text!r}: the suffixes are +streamsN and +blasN")
        env[settings[key]] = suffix[len(key):]
    side, _, model = name.partition(":")
    if side in ("0.2.0", "base", "baseline"):
        if model:
            raise SystemExit(f"error: --variants: {text!r}: the baseline runs its own default model")
        side = "baseline"
    elif side != "new":
        raise SystemExit(f"error: --variants: {text!r}: expected 0.2.0, new or new:MODEL")
    return {"label": text, "side": side, "model": model or None, "env": env}


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
    ap.add_argument("--baseline", default=DEFAULT_BASELINE, help=f"git revision of 0.2.0 (default {DEFAULT_BASELINE})")
    ap.add_argument("--variants", default="0.2.0,new,new:fast",
                    help="comma-separated, the first is the ratios' baseline (default 0.2.0,new,new:fast)")
    ap.add_argument("--pairs", type=int, default=0, help="first N pairs of fire_dev (default 0: all 13)")
    ap.add_argument("--rounds", type=int, default=2, help="alternations (default 2)")
    ap.add_argument("--workers", type=int, default=2, help="pairs in flight (batch --jobs, default 2)")
    ap.add_argument("--modes", default=",".join(MODES), help="pictures modes (default full,thumbnails,none)")
    ap.add_argument("--json", type=Path, help="write every run's numbers here")
    ap.add_argument("--one", nargs=3, metavar=("PAIRS", "OUT", "PICTURES"), help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(Path(args.one[0]), Path(args.one[1]), args.one[2], args.workers, args.model)))
        return 0
    variants = [parse_variant(v.strip()) for v in args.variants.split(",") if v.strip()]
    sys.path.insert(1, str(ROOT / "python"))
    from superretina.fire.protocol import list_pairs

    if not FIRE_DEV.is_dir():
        print(f"error: {FIRE_DEV} not found (the benchmark uses ../shared/data/fire_dev)", file=sys.stderr)
        return 2
    modes = args.modes.split(",")
    labels = [v["label"] for v in variants]
    runs: dict = {(v, m): [] for v in labels for m in modes}
    with tempfile.TemporaryDirectory(prefix="batch_throughput_") as tmp:
        tmp = Path(tmp)
        code = {"new": ROOT / "python"}
        if any(v["side"] == "baseline" for v in variants):
            code["baseline"] = extract(args.baseline, tmp / "baseline") / "python"
        specs = list_pairs(FIRE_DEV)
        specs = specs[: args.pairs] if args.pairs > 0 else specs
        pairs = tmp / "pairs.csv"
        pairs.write_text("id,query,refer\n" + "".join(f"{s.name},{s.query_path},{s.refer_path}\n" for s in specs))
        for r in range(args.rounds):
            for m in modes:
                for v in (variants if r % 2 == 0 else variants[::-1]):
                    env = {**os.environ, "PYTHONPATH": str(code[v["side"]]), **v["env"]}
                    for name in ("MXLOCAL_INFER_STREAMS", "SUPERRETINA_BLAS_THREADS"):
                        if name not in v["env"]:
                            env.pop(name, None)
                    out = tmp / f"{len(runs[(v['label'], m)])}-{m}-{labels.index(v['label'])}"
                    cmd = [sys.executable, __file__, "--workers", str(args.workers), "--one", str(pairs), str(out), m]
                    proc = subprocess.run(cmd + (["--model", v["model"]] if v["model"] else []),
                                          capture_output=True, text=True, env=env)
                    if proc.returncode != 0:
                        print(proc.stderr[-3000:], file=sys.stderr)
                        return 1
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                    runs[(v["label"], m)].append(res)
                    print(f"round {r} {v['label']:16s} {m:10s} {res['pairs_per_second']:.3f} pairs/s  "
                          f"{res['cpu_seconds_per_pair']:.2f} CPU s/pair  "
                          f"peak {res['peak_rss_mib']:.0f} MiB  registered {res['registered']}/{res['pairs']}"
                          f"  model {res.get('model')}  code {res['code']}", flush=True)
    base = labels[0]
    print(f"\n{len(specs)} fire_dev pairs, {args.workers} in flight, {os.cpu_count()} CPUs; 0.2.0 = git {args.baseline},"
          f" new = this tree; median of {args.rounds} runs; ratios against {base}")
    table = {}
    for m in modes:
        table[m] = {}
        b = statistics.median(x["pairs_per_second"] for x in runs[(base, m)])
        for label in labels:
            xs = runs[(label, m)]
            pps = statistics.median(x["pairs_per_second"] for x in xs)
            table[m][label] = {"pairs_per_second": pps, "ratio": pps / b,
                               "cpu_seconds_per_pair": statistics.median(x["cpu_seconds_per_pair"] for x in xs),
                               "peak_rss_mib": max(x["peak_rss_mib"] for x in xs)}
    print(f"{'pictures':12s} {'variant':16s} {'pairs/s':>8s} {'ratio':>6s} {'CPU s/pair':>11s} {'peak MiB':>9s}")
    for m in modes:
        for label in labels:
            t = table[m][label]
            print(f"{m:12s} {label:16s} {t['pairs_per_second']:8.3f} {t['ratio']:6.2f} {t['cpu_seconds_per_pair']:11.2f}"
                  f" {t['peak_rss_mib']:9.0f}")
    print("\nmedian stage seconds per pair (result.json 'seconds'; overlapping pairs, waits included):")
    for m in modes:
        for label in labels:
            st = runs[(label, m)][-1]["stages_median"]
            print(f"  {m:10s} {label:16s} " + ", ".join(f"{k} {v:.3f}" for k, v in st.items()))
    if args.json:
        args.json.write_text(json.dumps({"produced_by": "benchmarks/batch_throughput.py", "baseline": args.baseline,
                                         "variants": labels, "pairs": [s.name for s in specs], "workers": args.workers,
                                         "rounds": args.rounds, "table": table,
                                         "runs": {f"{v}/{m}": x for (v, m), x in runs.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
