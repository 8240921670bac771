"""The real same-eye pair of ../shared/data/pairs (no ground truth): how many of each model's
first-pass matches agree (< 10 px) with SIFT's homography, and how the pair registers.

    python benchmarks/real_pair.py [MODEL ...]      # default: both shipped models (bf16, fp32)

Each model runs through a copy of the default pipeline with its modelPath (``bench.pipeline_with_model``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python")]

from superretina.app import open_app  # noqa: E402
from bench import pipeline_with_model  # noqa: E402
from superretina.fire.sift import register_sift  # noqa: E402
from superretina.image_io import read_pair  # noqa: E402

PAIR = ROOT.parent / "shared" / "data" / "pairs"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", type=Path, nargs="*", default=[ROOT / "model" / "superretina_bf16.xml", ROOT / "model" / "superretina.onnx"])
    args = ap.parse_args(argv)
    if not (PAIR / "example1.jpg").is_file():
        print(f"error: {PAIR}: the example pair is not there (../shared/data)", file=sys.stderr)
        return 2
    query, refer = read_pair(PAIR / "example1.jpg", PAIR / "example2.jpg")
    H_sift = register_sift(query, refer).H
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            with open_app(None, pipeline_with_model(model, Path(tmp) / "p.pipeline"), "local") as app:
                res = app.registrar.register_images(query, refer)
            m = res.first.matches
            moved = cv2.perspectiveTransform(res.query.xy[m[:, 0]].reshape(-1, 1, 2), H_sift).reshape(-1, 2)
            right = int((np.linalg.norm(moved - res.refer.xy[m[:, 1]], axis=1) < 10).sum())
            print(f"{model}: {res.status} ({res.first.homography.method}); first pass {len(m)} matches, "
                  f"{right} agree with SIFT's homography ({100 * right / max(len(m), 1):.0f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
