"""Series cost at 30 images: the near-linear pair plan against registering all pairs.

    PYTHONPATH=python .venv/bin/python benchmarks/series_scaling.py --views 30 --size 512 \
        --source ../shared/data/fundus/drive_03.png --json out/series_scaling.json

Writes a synthetic longitudinal series (``fire/series_synth.py``, kind ``visits``: one eye,
small gaze changes, appearance and lesion change) of ``--views`` images, registers it with
``register_series`` (default plan, timed), then, in the same session and run, times
``--sample`` pairs drawn from all ``n (n - 1) / 2`` (wall time each, median) to estimate the
all-pairs registration time as ``n (n - 1) / 2 x median``; registering all 435 pairs outright
would take ~15 x longer on a shared machine. Also reports the series' ground-truth error
through the frame over every pair of views (exact correspondences).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from superretina.api import Session
from superretina.fire.series_synth import make_series
from superretina.fire.synth import load_source
from superretina.series import register_series


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--views", type=int, default=30)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--source", default="skimage:retina")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample", type=int, default=15, help="pairs timed for the all-pairs estimate")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    _, img = load_source(args.source)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "eye"
        truth = make_series(folder, img, "visits", args.views, args.size, args.seed)
        with Session() as session:
            t0 = time.perf_counter()
            s = register_series([folder / "series.csv"], session=session)
            series_s = time.perf_counter() - t0
            n = len(s.images)
            rng = np.random.default_rng(args.seed)
            all_pairs = [(i, j) for i in range(n) for j in range(i)]
            pick = rng.choice(len(all_pairs), size=min(args.sample, len(all_pairs)), replace=False)
            walls = []
            for k in pick:
                i, j = all_pairs[int(k)]
                t = time.perf_counter()
                session.register(s._pixels[i], s._pixels[j])
                walls.append(time.perf_counter() - t)
        errs = []
        for p in truth["pairs"]:
            cp = np.asarray(p["control_points"]).reshape(-1, 4)
            if len(cp) and s.transforms[p["query"]] is not None and s.transforms[p["refer"]] is not None:
                errs.append(float(np.linalg.norm(s.map_points(p["query"], p["refer"], cp[:, 2:4]) - cp[:, :2],
                                                 axis=1).mean()))
    med = statistics.median(walls)
    res = {"views": n, "size_px": args.size, "source": args.source, "pairs_registered": len(s.pairs),
           "pairs_all": len(all_pairs), "series_seconds": round(series_s, 2), "series_detail": s.seconds,
           "pair_wall_median_s": round(med, 3), "pair_wall_sample": len(walls),
           "all_pairs_estimate_s": round(med * len(all_pairs), 1),
           "ratio_all_pairs_over_series": round(med * len(all_pairs) / series_s, 2),
           "in_frame": n - len(s.unconnected), "model": s.model_choice["returned"],
           "frame_error_px": {"pairs": len(errs), "mean": round(float(np.mean(errs)), 3),
                              "max": round(float(np.max(errs)), 3), "over_2px": int(np.sum(np.array(errs) > 2))}}
    print(f"{n} views at {args.size} px: series registered {len(s.pairs)} of {len(all_pairs)} pairs in "
          f"{series_s:.1f} s ({s.seconds}); one pair {med:.2f} s (median of {len(walls)}) -> all pairs ~"
          f"{med * len(all_pairs):.0f} s ({res['ratio_all_pairs_over_series']}x the series); "
          f"{res['in_frame']} in the frame; through-frame error over {len(errs)} pairs: mean "
          f"{res['frame_error_px']['mean']} px, max {res['frame_error_px']['max']} px")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
