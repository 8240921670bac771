"""Benchmark of the transform step (transform.choose_transform) against the homography path.

For each pair given (default: the first S and P pair of a FIRE-layout set, 2912x2912), the
pair is registered once with the default model (configs/default.yaml, default pipeline) to get
its final matches; then, on those same matches, each is timed as the median of --runs runs:

  homography path  the first pass's estimate_homography (LMEDS + checks + Cauchy refinement, as
                   the driver calls it) -- the baseline of the ratio
  transform <m>    choose_transform(m) for m = homography, quadratic, auto: the step that
                   transform.model adds after the homography (robust quadratic, guards,
                   held-out check)
  warp maps        transform.inverse_maps of the returned quadratic at the reference's size
                   (what each picture adds; not part of the registration)

Usage:  python benchmarks/bench_transform.py SET_DIR [--pairs S01 P01] [--runs 15]
Prints one table: milliseconds (median) and ratio to the homography path.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python")]

import numpy as np  # noqa: E402

from superretina.app import open_app  # noqa: E402
from superretina.fire.protocol import list_pairs  # noqa: E402
from superretina.transform import MODELS, inverse_maps  # noqa: E402


def median_ms(fn, runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1000 * float(np.median(ts))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set_dir", type=Path, help="FIRE-layout folder (e.g. an eye-model synthetic set)")
    ap.add_argument("--pairs", nargs="+", help="pair names (default: the first S and P pair)")
    ap.add_argument("--runs", type=int, default=15, help="timed runs per step (median reported)")
    args = ap.parse_args(argv)
    pairs = {p.name: p for p in list_pairs(args.set_dir)}
    names = args.pairs or [next(n for n in sorted(pairs) if n.startswith(c)) for c in "SP" if
                           any(n.startswith(c) for n in pairs)]
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"median of {args.runs} runs")
    print(f"{'pair':<5} {'matches':>7} {'step':<22} {'ms':>8} {'x homography':>13}")
    with open_app(runtime="local") as app:
        reg = app.registrar
        for name in names:
            spec = pairs[name]
            res = reg.register_files(spec.query_path, spec.refer_path)
            if res.status != "registered":
                print(f"{name}: not registered ({res.reason}); skipped")
                continue
            st = res.final
            q = res.final_query_xy[st.matches[:, 0]]
            r = res.refer.xy[st.matches[:, 1]]
            base = median_ms(lambda: reg._estimate(q, r, reg.cfg["homography"]["method"], res.refer.pixel_scale),
                             args.runs)
            rows = [("homography path", base)]
            chosen = None
            for m in MODELS:
                rows.append((f"transform {m}", median_ms(lambda: reg.choose_transform(res, m), args.runs)))
                c = reg.choose_transform(res, m)
                if c.model == "quadratic":
                    chosen = c
            if chosen is not None:
                size, qsize = (res.refer_size[1], res.refer_size[0]), (res.query_size[1], res.query_size[0])
                rows.append(("warp maps (picture)", median_ms(lambda: inverse_maps(chosen.transform, size, qsize),
                                                              max(3, args.runs // 3), 1)))
            for step, ms in rows:
                print(f"{name:<5} {len(q):>7} {step:<22} {ms:8.2f} {ms / base:13.2f}")
            print(f"{name:<5} returned: " + ", ".join(
                f"{m} -> {reg.choose_transform(res, m).model}" for m in MODELS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
