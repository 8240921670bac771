"""Calibration of the eye model (fire/synth.py EYE_MODEL): overlap and best-homography residual
against the gaze change, for several nodal-point offsets, at FIRE's 2912 px.

For each setting the reference visit is the unturned eye and the query the eye turned by the
gaze angle (no roll, zoom or shift: those are similarities and add no residual). Over a 64x64
grid of the fundus disc seen by both visits (the overlap) the least-squares homography is
fitted to the exact correspondences; the table gives the overlap (share of the reference's
disc the query also sees) and that homography's mean residual (px).

Usage:  python benchmarks/eye_model_calibration.py [--fov 45] [--offsets 0.3 0.4 0.5 0.6]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "python")]

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from superretina.fire.eye_model import EyeModel, EyePairGeometry, Visit  # noqa: E402
from superretina.homography import transform_points  # noqa: E402
from superretina.fire.synth import APERTURE_FILL, CANVAS_FILL, FIRE_SIZE  # noqa: E402

GAZES = (2, 3, 5, 10, 20, 30, 35, 40)


def row(offset: float, fov: float, gaze: float, size: int = FIRE_SIZE) -> tuple[float, float]:
    eye = EyeModel(size, offset, fov, CANVAS_FILL * size)
    g = (np.arange(64) + 0.5) * size / 64 - 0.5
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    c = (size - 1) / 2
    canvas = pts[np.hypot(*(pts - c).T) < CANVAS_FILL * size / 2]
    geom = EyePairGeometry(eye, Visit(), Visit(gaze, 30.0))
    R, Q = geom.canvas_to_reference(canvas), geom.canvas_to_query(canvas)
    ap = APERTURE_FILL * size / 2
    in_r, in_q = np.hypot(*(R - c).T) < ap, np.hypot(*(Q - c).T) < ap
    both = in_r & in_q
    H, _ = cv2.findHomography(Q[both], R[both], 0)
    return both.sum() / in_r.sum(), float(np.hypot(*(transform_points(H, Q[both]) - R[both]).T).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fov", type=float, default=45.0)
    ap.add_argument("--offsets", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6])
    args = ap.parse_args()
    print(f"field of view {args.fov:g} deg, {FIRE_SIZE} px; cells: overlap / best-homography mean residual px")
    print(f"{'offset':>6} " + " ".join(f"{f'gaze {g}':>13}" for g in GAZES))
    for off in args.offsets:
        cells = [row(off, args.fov, g) for g in GAZES]
        print(f"{off:6.2f} " + " ".join(f"{ov:5.2f} / {e:5.2f}" for ov, e in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
