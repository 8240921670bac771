"""Replay matching passes and transform choices on saved keypoints (issue 17.1, 17.2, 19.2).

Input: files from benchmarks/collect_features.py. Each variant starts from the saved first pass
(H1) and, where it says so, the saved matching-trick pass; the guided passes and the transform
choice run through the application's own functions (``guided.guided_refinement``,
``transform.choose_transform``), as ``Registrar._guided_passes`` calls them. Printed per set:
FIRE AUC per category, mAUC, mean error per category, the final match count (median), how many
pairs got the quadratic, and (``--pairs``) per pair the mean control-point error.

Usage:  python benchmarks/guided_matching.py out/feat_fire.pkl [out/feat_eye.pkl ...] [--pairs] [--only TEXT]
(``--only TEXT``: the variants whose name contains TEXT, and today's.)
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

    def choose(q, r, H0):
        return choose_transform(c["model"], q, r, H0, rec["scale"], rec["query_wh"], rec["refer_wh"],
                                c["min_matches"], c["auto_gain"], **v["choose"])
    q, r = qxy[m[:, 0]], rxy[m[:, 1]]
    start = choose(q, r, H)
    g = v.get("guided")
    if g and g["max_inliers"] > 0:  # guided only where the last network pass is weak
        if int((np.linalg.norm(transform_points(H, q) - r, axis=1) <= 3.0).sum()) >= g["max_inliers"]:
            g = None
    if g:  # as Registrar._guided_passes: from the transform chosen on the last network pass
        passes = guided_refinement(qxy, qdesc, rxy, rdesc, H, choose, rec["scale"], rec["r"]["pixel_scale"],
                                   g.get("radius", 8.0), g.get("ratio", 0.9), g.get("iterations", 3),
                                   g.get("min_gain", 0.05), start=start, start_count=len(m),
                                   keep=m if g["union"] else None)
        if passes:
            last = passes[-1]
            return last.transform.transform, len(last.matches), [len(p.matches) for p in passes]
    return start.transform, len(m), []


def V(trick=True, guard="hull", radius=None, keep=False, gate=0, **guided) -> dict:
    """A variant: ``trick`` True / False / N (skipped from N first-pass inliers), the
    extrapolation ``guard``, guided passes of ``radius`` model px (None: none), keeping the
    network matches (``keep``), only below ``gate`` inliers of the last network pass (0: always)."""
    g = None if radius is None else dict(radius=radius, union=keep, max_inliers=gate, **guided)
    return dict(trick=trick, guided=g, choose=dict(extrapolation=guard))


VARIANTS = {
    "today: trick, overlap guard": V(guard="overlap"),
    "no trick, overlap guard": V(trick=False, guard="overlap"),
    "guided r8 alone, overlap guard": V(guard="overlap", radius=8),
    "no guided, no guard": V(guard="none"),
    "no guided, hull guard": V(),
    "no guided, held-out guard": V(guard="held_out"),
    "guided r8 alone, no guard": V(guard="none", radius=8),
    "guided r8 alone, hull": V(radius=8),
    "guided r8 alone, held-out guard": V(guard="held_out", radius=8),
    "no trick, guided r8 alone, hull": V(trick=False, radius=8),
    "skip>=50, guided r8 alone, hull": V(trick=50, radius=8),
    "skip>=80, guided r8 alone, hull": V(trick=80, radius=8),
    "skip>=120, guided r8 alone, hull": V(trick=120, radius=8),
    "guided r8 alone if <30, hull": V(radius=8, gate=30),
    "guided r8 alone if <50, hull": V(radius=8, gate=50),
    "guided r4 alone if <30, hull": V(radius=4, gate=30),
    "guided r12 alone if <30, hull": V(radius=12, gate=30),
    "skip>=80, guided r8 alone if <30, hull": V(trick=80, radius=8, gate=30),
    "skip>=120, guided r8 alone if <30, hull": V(trick=120, radius=8, gate=30),
    "skip>=80, no guided, hull": V(trick=80),
    "skip>=120, no guided, hull": V(trick=120),
    "guided r8 added, hull": V(radius=8, keep=True),
    "guided r4 added, hull": V(radius=4, keep=True),
    "guided r12 added, hull": V(radius=12, keep=True),
    "skip>=120, guided r8 added, hull": V(trick=120, radius=8, keep=True),
    "guided r4 added if <30, hull": V(radius=4, keep=True, gate=30),
    "guided r4 added if <60, hull": V(radius=4, keep=True, gate=60),
    "guided r4 added if <100, hull": V(radius=4, keep=True, gate=100),
    "guided r8 added if <60, hull": V(radius=8, keep=True, gate=60),
    "skip>=120, guided r4 added if <60, hull": V(trick=120, radius=4, keep=True, gate=60),
    "skip>=200, guided r4 added if <60 (default)": V(trick=200, radius=4, keep=True, gate=60),
    "guided r4 alone, hull": V(radius=4),
    "guided r12 alone, hull": V(radius=12),
    "guided r8 alone, 1 pass, hull": V(radius=8, iterations=1),
    "guided r8 alone, ratio 0.8, hull": V(radius=8, ratio=0.8),
    "guided r8 alone, ratio 1.0, hull": V(radius=8, ratio=1.0),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    show_pairs = "--pairs" in argv
    only = argv[argv.index("--only") + 1] if "--only" in argv else None
    variants = {k: v for k, v in VARIANTS.items() if only is None or only in k or k.startswith("today")}
    argv = [a for i, a in enumerate(argv) if a != "--only" and (i == 0 or argv[i - 1] != "--only")]
    cfg = load_config()
    for path in [a for a in argv if not a.startswith("--")]:
        data = pickle.loads(Path(path).read_bytes())
        sets = sorted({rec["set"] for rec in data.values()})
        for s in sets:
            recs = {k: v for k, v in data.items() if v["set"] == s}
            print(f"== {path} :: {s} ({len(recs)} pairs)")
            print(f"{'variant':<44} {'S':>6} {'P':>6} {'A':>6} {'mAUC':>6}  mean px S / P / A   matches  quad")
            per_pair = {}
            for name, v in variants.items():
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
                print(f"{name:<44} {auc.get('S', np.nan):6.3f} {auc.get('P', np.nan):6.3f} {auc.get('A', np.nan):6.3f} "
                      f"{np.mean(list(auc.values())):6.3f}  {mean['S']:5.2f} / {mean['P']:5.2f} / {mean['A']:5.2f}"
                      f"   {int(np.median(nm)):5d}  {nq}/{len(recs)}", flush=True)
            if show_pairs:
                print("pair  inl1  " + " ".join(f"v{i:<5d}" for i in range(len(variants))))
                for k, es in per_pair.items():
                    print(f"{k:<5} {first_inliers(recs[s + '/' + k]):4d}  " + " ".join(f"{e:6.2f}" for e in es))
    return 0


if __name__ == "__main__":
    sys.exit(main())
