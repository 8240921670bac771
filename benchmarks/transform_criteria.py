"""Compare model-choice criteria of transform.choose_transform on saved final matches.

Input: files from benchmarks/collect_final_matches.py (one registration per pair with the
default model). For each criterion, every pair's returned transform maps the ground-truth
control points; printed: FIRE AUC per category, mAUC, mean error per category and how many
pairs got the quadratic. ``always quadratic`` skips every guard and check (a reference point).

Usage:  python benchmarks/transform_criteria.py out/matches_s0.pkl [out/matches_s1.pkl ...]
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python")]

import numpy as np  # noqa: E402

from superretina.fire.protocol import category_auc  # noqa: E402
from superretina.transform import HomographyTransform, choose_transform, robust_quadratic  # noqa: E402

CRITERIA = [("homography", dict(model="homography")),
            ("quadratic, median", dict(model="quadratic", held_out_score="median")),
            ("quadratic, cauchy", dict(model="quadratic", held_out_score="cauchy")),
            ("auto 5 %, median", dict(model="auto", auto_gain=0.05, held_out_score="median")),
            ("auto 10 %, median", dict(model="auto", auto_gain=0.10, held_out_score="median")),
            ("auto 5 %, cauchy", dict(model="auto", auto_gain=0.05, held_out_score="cauchy")),
            ("auto 10 %, cauchy", dict(model="auto", auto_gain=0.10, held_out_score="cauchy")),
            ("quadratic, median, refit H", dict(model="quadratic", held_out_score="median", refit_homography=True)),
            ("quadratic, cauchy, refit H", dict(model="quadratic", held_out_score="cauchy", refit_homography=True)),
            ("auto 10 %, cauchy, refit H", dict(model="auto", auto_gain=0.10, held_out_score="cauchy",
                                                refit_homography=True)),
            ("always quadratic", None)]


def score(data: dict, kw) -> tuple[dict, dict, int]:
    errs = {c: [] for c in "SPA"}
    nq = 0
    for rec in data.values():
        if rec["status"] != "registered":
            errs[rec["category"]].append(1e6)
            continue
        if kw is None:
            t = robust_quadratic(rec["q"], rec["r"], rec["H"], rec["scale"])[0]
        else:
            t = choose_transform(kw["model"], rec["q"], rec["r"], rec["H"], rec["scale"], rec["query_wh"],
                                 rec["refer_wh"], auto_gain=kw.get("auto_gain", 0.1),
                                 held_out_score=kw.get("held_out_score", "median"),
                                 refit_homography=kw.get("refit_homography", False)).transform
        nq += t.model == "quadratic"
        errs[rec["category"]].append(float(np.mean(np.linalg.norm(t.apply(rec["gt_query"]) - rec["gt_ref"], axis=1))))
    return ({c: category_auc(e) for c, e in errs.items() if e}, {c: float(np.mean(e)) for c, e in errs.items() if e}, nq)


def main(argv=None) -> int:
    for path in (sys.argv[1:] if argv is None else argv):
        data = pickle.loads(Path(path).read_bytes())
        print(f"== {path} ({len(data)} pairs)")
        print(f"{'criterion':<28} {'S':>6} {'P':>6} {'A':>6} {'mAUC':>6}   mean px S / P / A    quadratic")
        for name, kw in CRITERIA:
            auc, mean, nq = score(data, kw)
            print(f"{name:<28} {auc['S']:6.3f} {auc['P']:6.3f} {auc['A']:6.3f} {np.mean(list(auc.values())):6.3f}"
                  f"   {mean['S']:5.2f} / {mean['P']:5.2f} / {mean['A']:5.2f}   {nq}/{len(data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
