"""The decode stream against the driver's own reading: same keypoints, matches and homography?

    python benchmarks/stream_equivalence.py [FIRE_DIR] [--json OUT]     (default ../shared/data/fire_dev)

Every pair of a FIRE-layout folder is registered twice through one opened App (the default
pipeline and configuration): with ``input.stream_decode`` on (the JPEGs go through the decode
stream: mxpi_imagedecoder → superretina_enhance → mxpi_tensorinfer) and off (the driver decodes
and enhances, the tensor stream infers). Per pair: where each was decoded, status, whether the
keypoints of both images, the final matches and the equalised images are identical, and the
largest difference of the homographies as a distance (px) of the ground-truth query points
mapped by both. Exit 1 when any pair differs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "python") not in sys.path:
    sys.path.insert(1, str(ROOT / "python"))


def compare(a, b, points: np.ndarray) -> dict:
    """Differences of two RegistrationResults of one pair (a: stream, b: driver)."""
    from superretina.homography import transform_points

    same_kp = (np.array_equal(a.query.xy, b.query.xy) and np.array_equal(a.refer.xy, b.refer.xy))
    same_matches = np.array_equal(a.final.matches, b.final.matches)
    if a.H is None or b.H is None:
        h_px = 0.0 if a.H is None and b.H is None else float("inf")
    else:
        h_px = float(np.linalg.norm(transform_points(a.H, points) - transform_points(b.H, points), axis=1).max())
    return {"decoded_in": [a.decoded_in, b.decoded_in], "status": [a.status, b.status],
            "same_keypoints": bool(same_kp), "same_matches": bool(same_matches),
            "same_equalised": bool(np.array_equal(a.query_equalised, b.query_equalised)
                                   and np.array_equal(a.refer_equalised, b.refer_equalised)),
            "homography_max_px": h_px}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fire_dir", nargs="?", type=Path, default=ROOT.parent / "shared" / "data" / "fire_dev")
    ap.add_argument("--pipeline", type=Path, help="pipeline file (default: the shipped one)")
    ap.add_argument("--json", type=Path, help="write the per-pair rows here")
    args = ap.parse_args(argv)

    from superretina.app import open_app
    from superretina.fire.protocol import list_pairs, load_control_points

    rows = {}
    with open_app(None, args.pipeline, "local") as app:
        print(f"pipeline {app.pipeline}, model {app.model.name}")
        for spec in list_pairs(args.fire_dir):
            _, q_pts = load_control_points(spec.gt_path)
            app.config["input"]["stream_decode"] = True
            a = app.registrar.register_files(spec.query_path, spec.refer_path)
            app.config["input"]["stream_decode"] = False
            b = app.registrar.register_files(spec.query_path, spec.refer_path)
            rows[spec.name] = row = compare(a, b, q_pts)
            print(f"{spec.name}: {row}", flush=True)
    same = [r["same_keypoints"] and r["same_matches"] and r["homography_max_px"] == 0.0
            and r["decoded_in"] == ["stream", "driver"] for r in rows.values()]
    print(f"{sum(same)} of {len(same)} pairs identical (keypoints, matches, homography);"
          f" largest homography difference {max(r['homography_max_px'] for r in rows.values()):.3g} px")
    if args.json:
        args.json.write_text(json.dumps({"produced_by": "benchmarks/stream_equivalence.py",
                                         "fire_dir": str(args.fire_dir), "pairs": rows}, indent=1))
    return 0 if all(same) else 1


if __name__ == "__main__":
    sys.exit(main())
