"""How far from a homography is an eye-model visit at the scale the network is trained on?

Training shows the network 320×320 crops of the 768×768 model frame (configs/train.yaml), and
its keypoint labels are Gaussians of sigma 2 px. For each pair of an eye-model set this script
takes the exact correspondences (the generator's ray-traced maps) over the overlap and reports
the residual of the best homography (least squares on dense points), in model-frame pixels:
over the whole overlap, and inside crop-sized windows — what a training pair made from the eye
model would differ by from one made by a homography.

    .venv/bin/python benchmarks/eye_model_training_scale.py out/eye_heldout [--frame 768 --crop 320]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python")]

from superretina.fire.eye_model import EyePairGeometry  # noqa: E402
from superretina.homography import transform_points  # noqa: E402


def residual(q: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    """(mean, max) distance of the least-squares homography through q → r, in the units of r."""
    H, _ = cv2.findHomography(q, r, 0)
    d = np.linalg.norm(transform_points(H, q) - r, axis=1)
    return float(d.mean()), float(d.max())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set", type=Path, help="an eye-model set made by `bash run.sh synth` (synthetic.json)")
    ap.add_argument("--frame", type=int, default=768, help="model frame side (px)")
    ap.add_argument("--crop", type=int, default=320, help="training crop side in the model frame (px)")
    args = ap.parse_args(argv)
    meta = json.loads((args.set / "synthetic.json").read_text())
    if meta.get("geometry") != "eye":
        raise SystemExit(f"error: {args.set}: not an eye-model set")
    size = meta["size"]
    to_model = args.frame / size
    window = args.crop / to_model                     # crop side in set pixels
    rows = {c: {"whole": [], "crop": [], "crop_max": []} for c in "SPA"}
    for name, p in sorted(meta["pairs"].items()):
        geom = EyePairGeometry.from_dict(p["geometry"])
        g = np.stack(np.meshgrid(np.linspace(0, size - 1, 97), np.linspace(0, size - 1, 97)), -1).reshape(-1, 2)
        q = geom.canvas_to_query(g)
        r = geom.canvas_to_reference(g)
        ok = np.all(np.isfinite(q) & np.isfinite(r), 1) & np.all((q >= 0) & (q < size) & (r >= 0) & (r < size), 1)
        q, r = q[ok] * to_model, r[ok] * to_model
        rows[p["category"]]["whole"].append(residual(q, r)[0])
        # Crop-sized windows of the query over the overlap, each with enough points to fit.
        for x0 in np.arange(0, args.frame - args.crop + 1, args.crop / 2):
            for y0 in np.arange(0, args.frame - args.crop + 1, args.crop / 2):
                inside = np.all((q >= [x0, y0]) & (q < [x0 + args.crop, y0 + args.crop]), 1)
                if inside.sum() >= 30:
                    mean, mx = residual(q[inside], r[inside])
                    rows[p["category"]]["crop"].append(mean)
                    rows[p["category"]]["crop_max"].append(mx)
    print(f"{args.set}: {len(meta['pairs'])} pairs at {size} px; model frame {args.frame}, crops {args.crop} "
          f"({window:.0f} set px); best-homography residual in model-frame px")
    print(f"{'cat':<4}{'whole overlap, mean':>22}{'crop, median of means':>24}{'crop, largest max':>20}")
    for c, v in rows.items():
        if v["whole"]:
            print(f"{c:<4}{statistics.median(v['whole']):>22.2f}{statistics.median(v['crop']):>24.3f}"
                  f"{max(v['crop_max']):>20.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
