"""Register every pair of FIRE-layout sets once (matching trick on) and save the keypoints.

For each pair: the query, reference and warped-query keypoints (original pixels) with their
descriptors (float16), the first and matching-trick passes' matches and homographies, the
Cauchy scale, image sizes and ground-truth control points. benchmarks/guided_matching.py
replays matching passes and transform choices on them without the network.

Usage:  python benchmarks/collect_features.py OUT.pkl SET_DIR [SET_DIR ...]
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python")]

import numpy as np  # noqa: E402

from superretina.app import open_app  # noqa: E402
from superretina.fire.protocol import list_pairs, load_control_points  # noqa: E402


# The passes replayed later are the ones under study: save the two network passes as they are.
NETWORK_PASSES_ONLY = {"guided": {"iterations": 0}, "matching_trick_skip_inliers": 0}


def _feat(f) -> dict:
    return {"xy": f.xy, "desc": f.descriptors.astype(np.float16), "pixel_scale": f.pixel_scale}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out, sets = Path(argv[0]), [Path(a) for a in argv[1:]]
    data = {}
    with open_app(NETWORK_PASSES_ONLY, runtime="local") as app:
        reg = app.registrar
        for set_dir in sets:
            for spec in list_pairs(set_dir):
                res = reg.register_files(spec.query_path, spec.refer_path)
                ref, qry = load_control_points(spec.gt_path)
                rec = {"set": set_dir.name, "category": spec.category, "status": res.status,
                       "gt_ref": ref, "gt_query": qry,
                       "query_wh": (res.query_size[1], res.query_size[0]),
                       "refer_wh": (res.refer_size[1], res.refer_size[0]),
                       "scale": (reg.cfg["homography"]["refine_scale"] or 3.0) * res.refer.pixel_scale,
                       "q": _feat(res.query), "r": _feat(res.refer),
                       "m1": res.first.matches, "H1": res.first.homography.H}
                if res.second is not None:
                    rec.update(w=_feat(res.warped_query), m2=res.second.matches, H2=res.second.homography.H)
                data[f"{set_dir.name}/{spec.name}"] = rec
                print(set_dir.name, spec.name, res.status, flush=True)
    out.write_bytes(pickle.dumps(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
