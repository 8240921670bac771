"""Ground-truth errors of a series: every pair with control points, through the common frame
(image -> frame -> other image) beside the direct pairwise registration.

    python -m superretina.series.evaluate fire ../shared/data/fire_dev --out out/series_fire
    python -m superretina.series.evaluate synth out/series_synth/*/ --out out/series_synth_eval

``fire``: the FIRE pairs of the folder that share photographs (identical files) form groups;
every group of three or more distinct photographs is registered as one series. ``synth``: the
folders written by ``bash run.sh synth ... --series`` (their series.csv and truth.json).
Error of a pair = mean distance of its control points (query mapped onto the reference) in
reference pixels, as FIRE's protocol. The direct error is the default pair registration's
(reused from the series when it registered the same query -> reference; else registered here).
Writes OUT/evaluation.json (each series' rows, its series.json and the settings) and prints a table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..api import Session
from ..fire.protocol import list_pairs, load_control_points
from .core import Series, register_series


def _mean_error(mapped: np.ndarray, truth: np.ndarray) -> Optional[float]:
    d = np.linalg.norm(mapped - truth, axis=1)
    return None if not np.isfinite(d).all() else round(float(d.mean()), 4)


def pair_rows(series: Series, session: Session, gt: Sequence[tuple[int, int, np.ndarray, np.ndarray, float]],
              pixels: Sequence[np.ndarray]) -> list[dict]:
    """One row per ground-truth pair (query index, refer index, query points (K, 2), refer points (K, 2),
    overlap): errors through the frame and direct (mean px; None = could not map)."""
    done = {(p.query, p.refer): p.registration for p in series.pairs}
    rows = []
    for q, r, pq, pr, overlap in gt:
        reg = done.get((q, r))
        if reg is None:
            reg = session.register(pixels[q], pixels[r])
        direct = _mean_error(reg.transform.apply(pq), pr) if reg.registered else None
        frame = None
        if series.transforms[q] is not None and series.transforms[r] is not None:
            frame = _mean_error(series.map_points(q, r, pq), pr)
        rows.append({"query": series.images[q].name, "refer": series.images[r].name, "overlap": overlap,
                     "direct_px": direct, "frame_px": frame, "direct_status": reg.status,
                     "query_in_frame": series.transforms[q] is not None,
                     "refer_in_frame": series.transforms[r] is not None})
    return rows


def fire_groups(folder: Path) -> list[tuple[list[Path], list]]:
    """Groups of FIRE pairs sharing photographs: (distinct photographs, pairs) with >= 3 photographs."""
    pairs = list_pairs(folder)
    digest: dict = {}

    def key(p: Path) -> str:
        if p not in digest:
            digest[p] = hashlib.sha256(p.read_bytes()).hexdigest()
        return digest[p]

    parent: dict = {}

    def root(a):
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    for sp in pairs:
        parent[root(key(sp.query_path))] = root(key(sp.refer_path))
    groups: dict = {}
    for sp in pairs:
        groups.setdefault(root(key(sp.query_path)), []).append(sp)
    out = []
    for members in groups.values():
        photos: dict = {}
        for sp in sorted(members, key=lambda s: s.name):
            photos.setdefault(key(sp.refer_path), sp.refer_path)
            photos.setdefault(key(sp.query_path), sp.query_path)
        if len(photos) >= 3:
            out.append((list(photos.values()), members, {h: i for i, h in enumerate(photos)}, key))
    return out


def evaluate_fire(folder: Path, session: Session, save: Optional[Path] = None) -> list[dict]:
    results = []
    for photos, members, index, key in fire_groups(folder):
        t0 = time.perf_counter()
        s = register_series(photos, session=session)
        gt = []
        for sp in members:
            ref_pts, query_pts = load_control_points(sp.gt_path)
            gt.append((index[key(sp.query_path)], index[key(sp.refer_path)], query_pts, ref_pts, None))
        rows = pair_rows(s, session, gt, s._pixels)
        for row, sp in zip(rows, members):
            row["pair"] = sp.name
        name = "+".join(sorted(sp.name for sp in members))
        if save is not None:
            s.save(save / name)
        results.append({"series": name, "rows": rows,
                        "seconds": round(time.perf_counter() - t0, 2), "series_json": s.to_json()})
    return results


def evaluate_synth(folder: Path, session: Session, min_overlap: float = 0.2, save: Optional[Path] = None) -> dict:
    """One synthetic series: rows per overlapping pair, and images dropped although they overlap another."""
    truth = json.loads((folder / "truth.json").read_text())
    t0 = time.perf_counter()
    s = register_series([folder / "series.csv"], session=session)
    gt = []
    for p in truth["pairs"]:
        cp = np.asarray(p["control_points"], np.float64).reshape(-1, 4)
        if len(cp):
            gt.append((p["query"], p["refer"], cp[:, 2:4], cp[:, 0:2], round(p["overlap"], 3)))
    rows = pair_rows(s, session, gt, s._pixels)
    if save is not None:
        s.save(save / folder.name)
    best = {}
    for p in truth["pairs"]:
        for k in (p["query"], p["refer"]):
            best[k] = max(best.get(k, 0.0), p["overlap"])
    dropped = [s.images[k].name for k in s.unconnected if best.get(k, 0.0) >= min_overlap]
    return {"series": f"{truth['kind']} {len(truth['views'])} ({folder.name})", "rows": rows, "dropped": dropped,
            "seconds": round(time.perf_counter() - t0, 2), "size": truth["size"], "series_json": s.to_json()}


def _table(results: list[dict]) -> str:
    lines = ["| series | pair | overlap | direct (px) | through frame (px) |", "|---|---|---|---|---|"]
    for res in results:
        for r in res["rows"]:
            f = lambda v: "fail" if v is None else f"{v:.2f}"     # noqa: E731
            ov = "" if r["overlap"] is None else f"{r['overlap']:.2f}"
            lines.append(f"| {res['series']} | {r.get('pair') or r['query'] + ' -> ' + r['refer']} | {ov} | "
                         f"{f(r['direct_px'])} | {f(r['frame_px'])} |")
        both = [r for r in res["rows"] if r["direct_px"] is not None and r["frame_px"] is not None]
        if both:
            lines.append(f"| {res['series']} | **mean over {len(both)} pairs** | | "
                         f"{np.mean([r['direct_px'] for r in both]):.2f} | {np.mean([r['frame_px'] for r in both]):.2f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m superretina.series.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("fire", "synth"))
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="folder for evaluation.json")
    ap.add_argument("--config", type=Path, help="parameters YAML laid over configs/default.yaml")
    ap.add_argument("--save", action="store_true", help="also write each series' files into OUT/<series>/")
    args = ap.parse_args(argv)
    save = args.out if args.save else None
    results = []
    with Session(args.config) as session:
        for folder in args.folders:
            if args.kind == "fire":
                results += evaluate_fire(folder, session, save)
            else:
                results.append(evaluate_synth(folder, session, save=save))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evaluation.json").write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=1))
    print(_table(results))
    for res in results:
        extra = f"; dropped although overlapping >= 20 %: {', '.join(res['dropped']) or 'none'}" if "dropped" in res else ""
        sj = res["series_json"]
        print(f"{res['series']}: {sj['pairs_registered']} pairs registered of {sj['pairs_all']}, "
              f"model {sj['model_choice']['returned']}, {res['seconds']} s{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
