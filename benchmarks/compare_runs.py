"""Two evaluations of one FIRE-format set, pair by pair: how far apart their homographies are and
which one is closer to the ground truth.

    python benchmarks/compare_runs.py SET RUN_A RUN_B
    python benchmarks/compare_runs.py out/heldout_synth out/accuracy_variants/fp32 out/accuracy_variants/bf16

RUN_A/RUN_B: folders with a ``pairs.csv`` written by ``bash run.sh fire``/``compare`` or
``benchmarks/accuracy_variants.py`` (any models or configs). Prints |H_A - H_B| at the query
control points (mean, max, pairs within 1 px) and the pairs where B's mean error is below / above A's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python"), str(ROOT / "benchmarks")]

from accuracy_variants import compare_homographies  # noqa: E402
from superretina.fire.evaluate import read_pairs_csv  # noqa: E402
from superretina.fire.protocol import list_pairs  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("set", type=Path, help="the FIRE-format set both runs evaluated")
    ap.add_argument("run_a", type=Path, help="folder with pairs.csv (the base)")
    ap.add_argument("run_b", type=Path, help="folder with pairs.csv")
    args = ap.parse_args(argv)
    runs = []
    for folder in (args.run_a, args.run_b):
        if not (folder / "pairs.csv").is_file():
            print(f"error: {folder}: no pairs.csv", file=sys.stderr)
            return 2
        runs.append({"rows": {r["pair"]: r for r in read_pairs_csv(folder / "pairs.csv")}})
    pairs = list_pairs(args.set)
    d = compare_homographies(runs[0], runs[1], pairs)
    print(f"|H_A - H_B|: mean {d['mean_px']:.2f} px, max {d['max_px']:.2f} px, {d['agree']}/{d['n']} within 1 px")
    a, b = runs[0]["rows"], runs[1]["rows"]
    diff = np.array([b[k]["mean_error"] - a[k]["mean_error"] for k in a if k in b])
    print(f"mean error vs truth, B - A: {diff.mean():+.3f} px (sd {diff.std():.3f}); B better on "
          f"{int((diff < 0).sum())} pairs, worse on {int((diff > 0).sum())}, equal on {int((diff == 0).sum())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
