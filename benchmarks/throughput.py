"""Batch throughput: pairs per second with 1 and with 2 pairs in flight through the stream.

    python benchmarks/throughput.py [--pairs 6] [--size 2912] [--model PATH] [--rounds 2]

A small synthetic FIRE-format set (``superretina.fire.synth`` from held-out photographs of
../shared/data/fundus, or scikit-image's retina without it) is evaluated with
``superretina.fire.evaluate.evaluate(..., jobs=N)`` through one opened App, for N = 1 and 2,
alternating ``--rounds`` times so that changes of machine load hit both; the table gives the
pairs/s of each round and the median. With N = 2 one pair's pre/post-processing (Python,
OpenCV, BLAS) overlaps the other's inference in the stream (``SuperRetinaStream.infer_async``).

``--no-sanity-checks`` accepts any homography (untrained weights give degenerate ones, and a
rejected first homography skips the matching trick, i.e. a third of the network work).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=6, help="pairs in the set (default 6)")
    ap.add_argument("--size", type=int, default=2912, help="image side (default 2912, FIRE)")
    ap.add_argument("--model", type=Path, help="model, .onnx or OpenVINO .xml (default: the pipeline's)")
    ap.add_argument("--jobs", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2],
                    help="pairs in flight to compare, comma-separated (default 1,2)")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the job counts (default 2)")
    ap.add_argument("--max-keypoints", type=int, help="override keypoints.max_keypoints")
    ap.add_argument("--no-sanity-checks", action="store_true", help="accept any homography (untrained weights)")
    args = ap.parse_args(argv)

    from superretina.app import open_app
    from bench import default_model, pipeline_with_model
    from superretina.fire.evaluate import evaluate
    from superretina.fire.superretina import make_register_fn
    from superretina.fire.synth import make_synthetic_set

    fundus = ROOT.parent / "shared" / "data" / "fundus"
    if fundus.is_dir():
        from superretina.data_split import split
        sources = split(fundus)[1][: args.pairs]
    else:
        sources = ["skimage:retina"] * args.pairs
    model = (args.model or default_model()).resolve()
    with tempfile.TemporaryDirectory(prefix="throughput_") as tmp:
        tmp = Path(tmp)
        pairs = make_synthetic_set(tmp / "set", sources, pairs_per_image=1, size=args.size, seed=0,
                                   progress=False)[: args.pairs]
        pipe = pipeline_with_model(model, tmp / "p.pipeline")
        results = {j: [] for j in args.jobs}
        loads = [os.getloadavg()[0]]
        with open_app(pipeline=pipe) as app:
            if args.max_keypoints is not None:
                app.config["keypoints"]["max_keypoints"] = args.max_keypoints
            if args.no_sanity_checks:
                from bench import _lenient
                from superretina.homography import estimate_homography
                app.registrar.estimator = _lenient(estimate_homography)
            fn = make_register_fn(app)
            fn(pairs[0].query_path, pairs[0].refer_path)  # warm-up
            for r in range(args.rounds):
                for j in (args.jobs if r % 2 == 0 else args.jobs[::-1]):
                    s = evaluate(pairs, fn, tmp / f"eval_{j}_{r}", jobs=j, restart=True, progress=False,
                                 verbose=False)
                    results[j].append(s.pairs_per_second)
                    print(f"round {r + 1} jobs={j}: {s.pairs_per_second:.3f} pairs/s "
                          f"({s.seconds_per_pair:.2f} s per pair as timed inside)", file=sys.stderr)
                    loads.append(os.getloadavg()[0])
    print(f"{len(pairs)} pairs of {args.size}x{args.size}, model {model.name}, load average "
          f"{min(loads):.1f}..{max(loads):.1f} on {os.cpu_count()} CPUs")
    base = statistics.median(results[args.jobs[0]])
    for j in args.jobs:
        med = statistics.median(results[j])
        print(f"jobs={j}: {med:.3f} pairs/s (rounds: {', '.join(f'{v:.3f}' for v in results[j])}), "
              f"x{med / base:.2f} vs jobs={args.jobs[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
