"""Fine-tuned checkpoints against the shipped weights on a FIRE-format set, same engine.

Each checkpoint is exported to ONNX and run through a copy of the fp32 pipeline
(``pipeline/superretina_fp32.pipeline``, ONNX Runtime) with its modelPath; the baseline is that
pipeline as shipped (``model/superretina.onnx``), so only the weights differ. Every model is
scored with ``bash run.sh fire --transform homography`` and ``--transform quadratic``
(resumable: rerunning reuses finished pairs), then the table, per-pair better/worse counts
against the baseline (by category) and the real example pair's right-match share are printed.

    python benchmarks/finetune_eval.py out/eye_heldout out/finetune_eval NAME=CKPT [NAME=CKPT ...]
    python benchmarks/finetune_eval.py out/eye_heldout out/finetune_eval eye=runs/eye/last.pth control=runs/control/last.pth
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python"), str(ROOT / "benchmarks")]

from bench import pipeline_with_model  # noqa: E402
from superretina.fire.evaluate import read_pairs_csv  # noqa: E402

FP32 = ROOT / "pipeline" / "superretina_fp32.pipeline"
TRANSFORMS = ("homography", "quadratic")


def run(args: list) -> None:
    env = {"PYTHONPATH": str(ROOT / "python")}
    subprocess.run([sys.executable, *map(str, args)], check=True, cwd=ROOT,
                   env={**__import__("os").environ, **env})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("set", type=Path, help="FIRE-format set (e.g. out/eye_heldout)")
    ap.add_argument("out", type=Path, help="output folder (one sub-folder per model and transform)")
    ap.add_argument("models", nargs="+", metavar="NAME=CKPT", help="checkpoints ({'net': ...}) to compare")
    ap.add_argument("--jobs", type=int, default=2, help="pairs in flight per fire run (2)")
    ap.add_argument("--no-real-pair", action="store_true", help="skip benchmarks/real_pair.py")
    args = ap.parse_args(argv)
    pipelines = {"shipped": FP32}
    onnx = {"shipped": ROOT / "model" / "superretina.onnx"}
    for item in args.models:
        name, _, ckpt = item.partition("=")
        if not name or not Path(ckpt).is_file():
            print(f"error: {item}: expected NAME=CHECKPOINT with an existing checkpoint", file=sys.stderr)
            return 2
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        onnx[name] = folder / "model.onnx"
        if not onnx[name].exists() or onnx[name].stat().st_mtime < Path(ckpt).stat().st_mtime:
            run(["-m", "superretina.model.export", ckpt, onnx[name]])
        pipelines[name] = pipeline_with_model(onnx[name], folder / "fp32.pipeline", FP32)
    for name, pipe in pipelines.items():
        for t in TRANSFORMS:
            run(["-m", "superretina.cli", "fire", args.set, "--pipeline", pipe, "--transform", t,
                 "--runtime", "local", "--no-progress", "--jobs", args.jobs, "--out", args.out / name / t])
    print(f"\n{args.set}: fp32 ONNX Runtime, default post-processing")
    print("| weights | transform | Failed | Acceptable | S | P | A | mAUC |\n|---|---|---|---|---|---|---|---|")
    for t in TRANSFORMS:
        for name in pipelines:
            s = json.loads((args.out / name / t / "summary.json").read_text())
            auc = s["auc"]
            print(f"| {name} | {t} | {s['failed_pct']:.2f}% | {s['acceptable_pct']:.2f}% | {auc.get('S', float('nan')):.3f} "
                  f"| {auc.get('P', float('nan')):.3f} | {auc.get('A', float('nan')):.3f} | {s['mauc']:.3f} |")
    print("\nper pair, mean control-point error vs the shipped weights (better / worse / equal; mean diff px)")
    for t in TRANSFORMS:
        base = {r["pair"]: r for r in read_pairs_csv(args.out / "shipped" / t / "pairs.csv")}
        for name in pipelines:
            if name == "shipped":
                continue
            rows = {r["pair"]: r for r in read_pairs_csv(args.out / name / t / "pairs.csv")}
            parts = []
            for cat in ("S", "P", "A", ""):
                keys = [k for k in base if k in rows and (not cat or base[k]["category"] == cat)]
                d = np.array([rows[k]["mean_error"] - base[k]["mean_error"] for k in keys])
                parts.append(f"{cat or 'all'} {int((d < 0).sum())}/{int((d > 0).sum())}/{int((d == 0).sum())} "
                             f"({d.mean():+.3f})")
            print(f"  {t:<10} {name}: " + "; ".join(parts))
    if not args.no_real_pair:
        run([ROOT / "benchmarks" / "real_pair.py", *onnx.values()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
