"""Register every pair of a FIRE-layout set once and save what the transform choice needs.

Writes OUT.npz-per-pair data into one file: for each pair its final matches (query/reference
original pixels), homography, Cauchy scale, image sizes and ground-truth control points, so that
model-choice criteria (benchmarks/transform_criteria.py) can be compared without the network.

Usage:  python benchmarks/collect_final_matches.py SET_DIR OUT.pkl
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python")]

from superretina.app import open_app  # noqa: E402
from superretina.fire.protocol import list_pairs, load_control_points  # noqa: E402


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    set_dir, out = Path(argv[0]), Path(argv[1])
    data = {}
    with open_app(runtime="local") as app:
        reg = app.registrar
        for spec in list_pairs(set_dir):
            res = reg.register_files(spec.query_path, spec.refer_path)
            ref, qry = load_control_points(spec.gt_path)
            rec = {"category": spec.category, "status": res.status, "gt_ref": ref, "gt_query": qry}
            if res.status == "registered":
                st = res.final
                rec.update(q=res.final_query_xy[st.matches[:, 0]], r=res.refer.xy[st.matches[:, 1]], H=res.H,
                           scale=(reg.cfg["homography"]["refine_scale"] or 3.0) * res.refer.pixel_scale,
                           query_wh=(res.query_size[1], res.query_size[0]),
                           refer_wh=(res.refer_size[1], res.refer_size[0]),
                           inlier_rate=st.homography.inlier_rate)
            data[spec.name] = rec
            print(spec.name, res.status, flush=True)
    out.write_bytes(pickle.dumps(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
