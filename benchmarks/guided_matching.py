"""Replay matching passes and transform choices on saved keypoints (issue 17.1, 17.2, 19.2).

Input: files from benchmarks/collect_features.py. Each variant starts from the saved first pass
(H1) and, where it says so, the saved matching-trick pass; the guided passes and the transform
choice run through the application's own functions (``registrar.guided_refinement``,
``transform.choose_transform``). Printed per set: FIRE AUC per category, mAUC, mean error per
category, the final match count (median), and per pair the mean control-point error.

Usage:  python benchmarks/guided_matching.py out/feat_fire.pkl [out/feat_eye.pkl ...] [--pairs]
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python")]

import numpy as np  # noqa: E402

from superretina.config import load_config  # noqa: E402
from superretina.fire.protocol import category_auc  # noqa: E402
from superretina.guided import guided_refinement  # noqa: E402
from superretina.homography import transform_points  # noqa: E402
from superretina.transform import choose_transform  # noqa: E402


def first_inliers(rec: dict) -> int:
    """3-px inliers of the first pass's homography (the registrar's count)."""
    m = rec["m1"]
    d = np.linalg.norm(transform_points(rec["H1"], rec["q"]["xy"][m[:, 0]]) - rec["r"]["xy"][m[:, 1]], axis=1)
    return int((d <= 3.0).sum())


def _final(rec: dict, use_trick):
    """(query xy, descriptors, matches, H) of the saved last network pass. ``use_trick``: True,
    False, or an int N: the trick is skipped when the first pass has at least N 3-px inliers."""
    if not isinstance(use_trick, bool):
        use_trick = first_inliers(rec) < use_trick
    if use_trick and rec.get("H2") is not None:
        H1 = rec["H1"]
        wq = transform_points(np.linalg.inv(H1), rec["w"]["xy"])
        H = rec["H2"] @ H1
        return wq, rec["w"]["desc"], rec["m2"], H / H[2, 2]
    return rec["q"]["xy"], rec["q"]["desc"], rec["m1"], rec["H1"]


def run_variant(rec: dict, v: dict, cfg: dict):
    """Returned transform and final match count of one pair under variant ``v``."""
    qxy, qdesc, m, H = _final(rec, v.get("trick", True))
    rxy, rdesc = rec["r"]["xy"], rec["r"]["desc"]
    c = cfg["transform"]
    model = v.get("model", c["model"])  # every variant names its extrapolation guard
    choose = lambda q, r, H0: choose_transform(model, q, r, H0, rec["scale"], rec["query_wh"], rec["refer_wh"],  # noqa: E731
                                               c["min_matches"], c["auto_gain"], **v.get("choose", {}))
    q, r = qxy[m[:, 0]], rxy[m[:, 1]]
    start = choose(q, r, H)
    g = v.get("guided")
    if g and g.get("max_inliers", 0) > 0:  # guided only where the last network pass is weak
        if int((np.linalg.norm(transform_points(H, q) - r, axis=1) <= 3.0).sum()) >= g["max_inliers"]:
            g = None
    if g:  # as Registrar._guided_passes: from the transform chosen on the last network pass
        passes = guided_refinement(qxy, qdesc, rxy, rdesc, H, choose, rec["scale"], rec["r"]["pixel_scale"],
                                   g.get("radius", 8.0), g.get("ratio", 0.9), g.get("iterations", 3),
                                   g.get("min_gain", 0.05), start=start, start_count=len(m),
                                   keep=m if g.get("union") else None)
        if passes:
            last = passes[-1]
            return last.transform.transform, len(last.matches), [len(p.matches) for p in passes]
    return start.transform, len(m), []


VARIANTS = {
    "today: trick, overlap guard": dict(choose=dict(extrapolation="overlap")),
    "no trick, overlap guard": dict(trick=False, choose=dict(extrapolation="overlap")),
    "trick + guided r8, overlap guard": dict(guided=dict(radius=8), choose=dict(extrapolation="overlap")),
    "default, no deviation guard": dict(choose=dict(extrapolation="none")),
    "default, hull deviation": dict(choose=dict(extrapolation="hull")),
    "default, held-out extrap.": dict(choose=dict(extrapolation="held_out")),
    "trick + guided r8, no deviation guard": dict(guided=dict(radius=8), choose=dict(extrapolation="none")),
    "trick + guided r8, hull deviation": dict(guided=dict(radius=8), choose=dict(extrapolation="hull")),
    "trick + guided r8, held-out extrap.": dict(guided=dict(radius=8), choose=dict(extrapolation="held_out")),
    "no trick + guided r8, hull": dict(trick=False, guided=dict(radius=8), choose=dict(extrapolation="hull")),
    "skip trick >=50 inl. + guided, hull": dict(trick=50, guided=dict(radius=8), choose=dict(extrapolation="hull")),
    "skip trick >=80 inl. + guided, hull": dict(trick=80, guided=dict(radius=8), choose=dict(extrapolation="hull")),
    "skip trick >=120 inl. + guided, hull": dict(trick=120, guided=dict(radius=8), choose=dict(extrapolation="hull")),
    "trick + guided r8 if <30 inl., hull": dict(guided=dict(radius=8, max_inliers=30), choose=dict(extrapolation="hull")),
    "trick + guided r8 if <50 inl., hull": dict(guided=dict(radius=8, max_inliers=50), choose=dict(extrapolation="hull")),
    "trick + guided r4 if <30 inl., hull": dict(guided=dict(radius=4, max_inliers=30), choose=dict(extrapolation="hull")),
    "trick + guided r12 if <30 inl., hull": dict(guided=dict(radius=12, max_inliers=30), choose=dict(extrapolation="hull")),
    "skip>=80 + guided r8 if <30, hull": dict(trick=80, guided=dict(radius=8, max_inliers=30), choose=dict(extrapolation="hull")),
    "skip>=120 + guided r8 if <30, hull": dict(trick=120, guided=dict(radius=8, max_inliers=30), choose=dict(extrapolation="hull")),
    "skip>=80, hull (no guided)": dict(trick=80, choose=dict(extrapolation="hull")),
    "skip>=120, hull (no guided)": dict(trick=120, choose=dict(extrapolation="hull")),
    "trick + guided r8 union, hull": dict(guided=dict(radius=8, union=True), choose=dict(extrapolation="hull")),
    "trick + guided r4 union, hull": dict(guided=dict(radius=4, union=True), choose=dict(extrapolation="hull")),
    "trick + guided r12 union, hull": dict(guided=dict(radius=12, union=True), choose=dict(extrapolation="hull")),
    "skip>=120 + guided r8 union, hull": dict(trick=120, guided=dict(radius=8, union=True), choose=dict(extrapolation="hull")),
    "trick + guided r4 union if <30, hull": dict(guided=dict(radius=4, union=True, max_inliers=30), choose=dict(extrapolation="hull")),
    "trick + guided r4 union if <60, hull": dict(guided=dict(radius=4, union=True, max_inliers=60), choose=dict(extrapolation="hull")),
    "trick + guided r4 union if <100, hull": dict(guided=dict(radius=4, union=True, max_inliers=100), choose=dict(extrapolation="hull")),
    "trick + guided r8 union if <60, hull": dict(guided=dict(radius=8, union=True, max_inliers=60), choose=dict(extrapolation="hull")),
    "skip>=120 + guided r4 union if <60, hull": dict(trick=120, guided=dict(radius=4, union=True, max_inliers=60), choose=dict(extrapolation="hull")),
    "skip>=200 + guided r4 union if <60, hull": dict(trick=200, guided=dict(radius=4, union=True, max_inliers=60), choose=dict(extrapolation="hull")),
    "trick + guided r4, hull": dict(guided=dict(radius=4), choose=dict(extrapolation="hull")),
    "trick + guided r12, hull": dict(guided=dict(radius=12), choose=dict(extrapolation="hull")),
    "trick + guided r8 1 iter, hull": dict(guided=dict(radius=8, iterations=1), choose=dict(extrapolation="hull")),
    "trick + guided r8 ratio 0.8, hull": dict(guided=dict(radius=8, ratio=0.8), choose=dict(extrapolation="hull")),
    "trick + guided r8 ratio 1.0, hull": dict(guided=dict(radius=8, ratio=1.0), choose=dict(extrapolation="hull")),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    show_pairs = "--pairs" in argv
    cfg = load_config()
    for path in [a for a in argv if not a.startswith("--")]:
        data = pickle.loads(Path(path).read_bytes())
        sets = sorted({rec["set"] for rec in data.values()})
        for s in sets:
            recs = {k: v for k, v in data.items() if v["set"] == s}
            print(f"== {path} :: {s} ({len(recs)} pairs)")
            print(f"{'variant':<36} {'S':>6} {'P':>6} {'A':>6} {'mAUC':>6}  mean px S / P / A   matches  quad")
            per_pair = {}
            for name, v in VARIANTS.items():
                errs = {c: [] for c in "SPA"}
                nm, nq = [], 0
                for key, rec in recs.items():
                    if rec["status"] != "registered":
                        errs[rec["category"]].append(1e6)
                        continue
                    t, n, _ = run_variant(rec, v, cfg)
                    e = float(np.mean(np.linalg.norm(t.apply(rec["gt_query"]) - rec["gt_ref"], axis=1)))
                    errs[rec["category"]].append(e)
                    per_pair.setdefault(key.split("/")[-1], []).append(e)
                    nm.append(n)
                    nq += t.model == "quadratic"
                auc = {c: category_auc(e) for c, e in errs.items() if e}
                mean = {c: float(np.mean(e)) if e else float("nan") for c, e in errs.items()}
                print(f"{name:<36} {auc.get('S', np.nan):6.3f} {auc.get('P', np.nan):6.3f} {auc.get('A', np.nan):6.3f} "
                      f"{np.mean(list(auc.values())):6.3f}  {mean['S']:5.2f} / {mean['P']:5.2f} / {mean['A']:5.2f}"
                      f"   {int(np.median(nm)):5d}  {nq}/{len(recs)}", flush=True)
            if show_pairs:
                print("pair  inl1  " + " ".join(f"v{i:<5d}" for i in range(len(VARIANTS))))
                for k, es in per_pair.items():
                    print(f"{k:<5} {first_inliers(recs[s + '/' + k]):4d}  " + " ".join(f"{e:6.2f}" for e in es))
    return 0


if __name__ == "__main__":
    sys.exit(main())
