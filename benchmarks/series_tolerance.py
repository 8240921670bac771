"""Which matches of each pair enter the series' joint refinement: tuned on fire_dev's groups.

    PYTHONPATH=python .venv/bin/python benchmarks/series_tolerance.py ../shared/data/fire_dev

Registers every ordered pair of the S01-S03 and P30/P31 photographs once (default config;
cached in out/series_tolerance_pairs.pkl), then refines the three-image frame
(``series.refine``) with the matches chosen several ways (the estimator's inliers; within 6, 10,
15 px of the pair's returned transform), a smaller Cauchy scale and a larger match cap, and
prints each ground-truth pair's mean control-point error through the frame beside the direct
pair's. Frame as ``register_series``: strongest-path start, reference = best connected image.
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np

from superretina.api import Registration, Session
from superretina.fire.protocol import load_control_points
from superretina.series import frame, graph
from superretina.series.refine import EdgeMatches, refine

GROUPS = {"S": ["S01_1", "S01_2", "S02_2"], "P": ["P30_1", "P30_2", "P31_2"]}
TRUTH = {"S": [("S01", 1, 0), ("S02", 2, 0), ("S03", 2, 1)], "P": [("P30", 1, 0), ("P31", 2, 0)]}
EDGES = ((1, 0), (2, 0), (2, 1))       # later image = query, as register_series does
CACHE = Path("out/series_tolerance_pairs.pkl")
SCALE_PX = 3.0 * 2912 / 768            # series.loss_scale 3 model px at 2912 px


def registrations(fire: Path) -> dict:
    if CACHE.is_file():
        return pickle.loads(CACHE.read_bytes())
    regs = {}
    with Session() as s:
        for g, names in GROUPS.items():
            for q, r in EDGES:
                regs[(g, q, r)] = s.register(fire / "Images" / f"{names[q]}.jpg",
                                             fire / "Images" / f"{names[r]}.jpg").to_json()
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_bytes(pickle.dumps(regs))
    return regs


def run(fire: Path, regs: dict, g: str, use="inliers", scale=SCALE_PX, cap=300, weight=None) -> str:
    """``weight``: None = ``graph.edge_weight``; a number = every registered pair weighs that
    (what a confidence near 1 on every right pair gives when it is the whole weight)."""
    good = [(q, r, Registration(regs[(g, q, r)])) for q, r in EDGES if regs[(g, q, r)]["status"] == "registered"]
    wedges = [(q, r, graph.edge_weight(reg.to_json()) if weight is None else weight) for q, r, reg in good]
    ref = frame.choose_reference(3, wedges)
    H0 = frame.initial_homographies(3, ref, wedges, {(q, r): reg.homography for q, r, reg in good})
    edges = []
    for (q, r, reg), (_, _, w) in zip(good, wedges):
        m = reg.matches
        sel = m.inlier if use == "inliers" else np.linalg.norm(reg.transform.apply(m.query_xy) - m.refer_xy, axis=1) < use
        xi, xj = m.query_xy[sel], m.refer_xy[sel]
        if len(xi) > cap:
            k = np.linspace(0, len(xi) - 1, cap).round().astype(int)
            xi, xj = xi[k], xj[k]
        edges.append(EdgeMatches(q, r, xi, xj, w))
    res = refine([(2912, 2912)] * 3, ref, H0, edges, "quadratic", scale, 0.1, 30)
    out, fr_all, dr_all = [], [], []
    for name, q, r in TRUTH[g]:
        rp, qp = load_control_points(fire / "Ground Truth" / f"control_points_{name}_1_2.txt")
        T = res.transforms
        fr = float(np.linalg.norm(T[r].inverse(T[q].apply(qp)) - rp, axis=1).mean())
        dr = float(np.linalg.norm(Registration(regs[(g, q, r)]).transform.apply(qp) - rp, axis=1).mean())
        fr_all.append(fr)
        dr_all.append(dr)
        out.append(f"{name} {dr:.2f}/{fr:.2f}")
    return (f"{g} matches={use!s:8} scale={scale:5.1f} cap={cap:4d} weight={weight or 'default'!s:7} model={res.model:10} "
            f"direct/frame: {' '.join(out)}  mean {np.mean(dr_all):.2f}/{np.mean(fr_all):.2f}")


def main(fire: str) -> int:
    fire = Path(fire)
    regs = registrations(fire)
    for g in GROUPS:
        for use in ("inliers", 6.0, 10.0, 15.0):
            print(run(fire, regs, g, use))
        print(run(fire, regs, g, 15.0, scale=6.0))
        print(run(fire, regs, g, 15.0, cap=1000))
        print(run(fire, regs, g, 15.0, weight=0.99))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/fire_dev"))
