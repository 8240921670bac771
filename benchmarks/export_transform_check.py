"""Accuracy, time and size of `export-transform` on a real FIRE-size pair.

Registers QUERY onto REFER with the default model, saves the result, and for each format reports
the median wall time of ``--runs`` exports, the file size, and how closely the exported form
reproduces the result's own mapping:

* skimage: max |PolynomialTransform / ProjectiveTransform(query pts) - transform.apply| (px);
* opencv-maps and displacement: max |transform.apply(map(p)) - p| over reference pixels p
  (every 4th) whose map lies inside the query (px), i.e. how exactly the maps invert the
  transform; also for the 32-px grid the pictures use, for comparison;
* displacement read back by SimpleITK (where installed): max |TransformPoint(p) - map(p)| (px).

Usage:  python benchmarks/export_transform_check.py [QUERY REFER] [--runs N]
        (default: ../shared/data/fire_dev/Images/P25_2.jpg onto P25_1.jpg)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python")]

from superretina.api import Session, load_result  # noqa: E402
from superretina.export_transform import MAP_STEP, export_transform  # noqa: E402
from superretina.transform import HomographyTransform, inverse_maps, transform_from_json  # noqa: E402


def inversion_error(t, mx: np.ndarray, my: np.ndarray, query_wh) -> float:
    ys, xs = np.mgrid[0:mx.shape[0]:4, 0:mx.shape[1]:4]
    q = np.stack([mx[ys, xs], my[ys, xs]], -1).reshape(-1, 2).astype(np.float64)
    p = np.stack([xs, ys], -1).reshape(-1, 2)
    inside = (q >= 0).all(1) & (q[:, 0] <= query_wh[0] - 1) & (q[:, 1] <= query_wh[1] - 1)
    return float(np.abs(t.apply(q[inside]) - p[inside]).max())


def main(argv=None) -> int:
    fire = ROOT.parent / "shared" / "data" / "fire_dev" / "Images"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pair", nargs="*", type=Path, default=[fire / "P25_2.jpg", fire / "P25_1.jpg"])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    query, refer = args.pair
    tmp = Path(tempfile.mkdtemp(prefix="export-check-"))
    with Session(runtime="local") as session:
        reg = session.register(query, refer)
    print(f"{query.name} -> {refer.name}: {reg.status}, transform {reg.transform.model if reg.transform else None}, "
          f"reference {reg.refer_size[1]}x{reg.refer_size[0]}")
    if reg.transform is None:
        return 1
    reg.save(tmp / "pair")
    reg = load_result(tmp / "pair")
    t = transform_from_json(reg.transform.to_json())
    query_wh = (reg.query_size[1], reg.query_size[0])
    rng = np.random.default_rng(0)
    pts = rng.uniform([0, 0], np.array(query_wh) - 1, (10_000, 2))
    outs = {"skimage": tmp / "t.json", "opencv-maps": tmp / "maps.npz", "displacement": tmp / "field.mha"}
    for fmt, out in outs.items():
        secs = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            export_transform(tmp / "pair", fmt, out)
            secs.append(time.perf_counter() - t0)
        line = f"{fmt:<13} {statistics.median(secs):6.2f} s (median of {args.runs}), {out.stat().st_size / 2**20:7.2f} MiB"
        if fmt == "skimage":
            import json

            from skimage.transform import PolynomialTransform, ProjectiveTransform
            d = json.loads(out.read_text())
            tf = (ProjectiveTransform(matrix=np.array(d["matrix"])) if d["class"] == "ProjectiveTransform"
                  else PolynomialTransform(np.array(d["params"])))
            line += f"; max |skimage - result| {np.abs(tf(pts) - t.apply(pts)).max():.2e} px over 10,000 points"
        elif fmt == "opencv-maps":
            with np.load(out) as z:
                mx, my = z["map_x"], z["map_y"]
            line += f"; max inversion error {inversion_error(t, mx, my, query_wh):.2e} px (step {MAP_STEP})"
            if not isinstance(t, HomographyTransform):
                cx, cy = inverse_maps(t, (reg.refer_size[1], reg.refer_size[0]), query_wh)
                line += f", {inversion_error(t, cx, cy, query_wh):.2e} px with the pictures' 32-px grid"
        else:
            try:
                import SimpleITK as sitk
            except ImportError:
                line += "; SimpleITK not installed: not read back"
            else:
                tx = sitk.DisplacementFieldTransform(sitk.Cast(sitk.ReadImage(str(out)), sitk.sitkVectorFloat64))
                with np.load(outs["opencv-maps"]) as z:
                    mx, my = z["map_x"], z["map_y"]
                sample = rng.integers([0, 0], [reg.refer_size[1], reg.refer_size[0]], (2000, 2))
                got = np.array([tx.TransformPoint([float(x), float(y)]) for x, y in sample])
                want = np.stack([mx[sample[:, 1], sample[:, 0]], my[sample[:, 1], sample[:, 0]]], 1)
                line += f"; SimpleITK TransformPoint vs the maps: max {np.abs(got - want).max():.2e} px over 2,000 pixels"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
