"""End-to-end time of the default against today's passes (no guided matching, the trick always
run, the overlap guard), in one process, taking turns run by run (issue 17 Show: at most +10 %).

The pair is bench.py's (scikit-image's retina at 2912 px and the demo's warp of it, JPEG files);
each run is what ``bench.py`` times for the application: read, register, result.json and the
three pictures. Printed: median seconds per side over ``--runs`` runs after one warm-up each,
the ratio new / today, the guided stage's median time and the passes each side ran.

``--pair QUERY REFER`` times another pair instead (e.g. a fire_dev P pair, where the guided
passes run and the trick is never skipped).

Usage:  python benchmarks/guided_speed.py [--runs 7] [--size 2912] [--pair QUERY REFER]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python"), str(ROOT / "benchmarks")]

from bench import make_bench_pair  # noqa: E402

from superretina.app import open_app  # noqa: E402
from superretina.config import load_config  # noqa: E402
from superretina.image_io import read_pair  # noqa: E402
from superretina.outputs import result_json, write_outputs  # noqa: E402
from superretina.registrar import Registrar, Timer  # noqa: E402

TODAY = {"guided": {"iterations": 0}, "matching_trick_skip_inliers": 0, "transform": {"extrapolation": "overlap"}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--size", type=int, default=2912)
    ap.add_argument("--pair", nargs=2, metavar=("QUERY", "REFER"))
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, open_app(runtime="local") as app:
        pair = ({"query": a.pair[0], "refer": a.pair[1]} if a.pair
                else make_bench_pair(a.size, Path(tmp) / "pair"))
        sides = {"today": Registrar(app.stream, load_config(TODAY)), "default": Registrar(app.stream, load_config())}
        times = {k: [] for k in sides}
        guided = []
        passes = {}
        for i in range(a.runs + 1):
            for name, reg in sides.items():
                t = Timer()
                w0 = time.perf_counter()
                with t("read"):
                    q, r = read_pair(pair["query"], pair["refer"])
                res = reg.register_images(q, r, t)
                info = result_json(res, pair["query"], pair["refer"], app.provenance)
                write_outputs(res, q, r, Path(tmp) / name, info, reg.cfg)
                if i:  # the first run of each side is the warm-up
                    times[name].append(time.perf_counter() - w0)
                    if name == "default":
                        guided.append(t.seconds.get("guided", 0.0))
                passes[name] = (info["match_counts"], info["matching_trick"])
        med = {k: statistics.median(v) for k, v in times.items()}
        for k in sides:
            print(f"{k:<8} end to end {med[k]:.3f} s (median of {a.runs}); passes {passes[k]}")
        print(f"ratio default / today: {med['default'] / med['today']:.3f}; guided stage {statistics.median(guided):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
