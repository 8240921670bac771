"""What the report's pair view costs a batch pair: seconds (as a share of the registration) and bytes.

    python benchmarks/pair_view_cost.py [--rounds 3] [QUERY REFER]

Default pair: the real same-eye pair of ../shared/data/pairs (1736x1824), the one the capacity
plan in docs/batch.md is measured on; FIRE's 2912x2912 photographs can be given instead. With
the default model and configuration, in one process, ``--rounds`` times each, interleaved so that
load changes hit every step alike, it times:

* the registration (``Session.register``),
* the existing pictures (``Registration.save``: result.json, matches, overlay, checkerboard),
* the pair view at full resolution (``report.pair_view.write_pair_view``, batch default),
* the pair view scaled to ``VIEW_SIDE_THUMBNAILS`` (batch ``--thumbnails``),

and prints the medians, each step's ratio to the registration, and the bytes each adds to a
pair folder.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "pairs"


def _size(folder: Path, names) -> int:
    return sum((folder / n).stat().st_size for n in names if (folder / n).is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("query", nargs="?", default=str(SHARED / "example1.jpg"))
    ap.add_argument("refer", nargs="?", default=str(SHARED / "example2.jpg"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sys.path[:0] = [str(ROOT / "python")]
    from superretina.api import Session
    from superretina.batch.worker import VIEW_SIDE_THUMBNAILS
    from superretina.image_io import read_image
    from superretina.report.pair_view import VIEW_FILES, write_pair_view

    query, refer = read_image(args.query), read_image(args.refer)
    times: dict[str, list[float]] = {"register": [], "pictures": [], "view full": [], "view thumbnails": []}
    sizes = {}
    with Session() as s:
        s.register(query, refer)                       # warm-up (model load, first inference)
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            reg = s.register(query, refer)
            times["register"].append(time.perf_counter() - t0)
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                t0 = time.perf_counter()
                reg.save(folder)
                times["pictures"].append(time.perf_counter() - t0)
                sizes["pictures"] = _size(folder, [p.name for p in folder.iterdir()])
                info = reg.to_json()
                for mode, side in (("view full", None), ("view thumbnails", VIEW_SIDE_THUMBNAILS)):
                    for name in VIEW_FILES:
                        (folder / name).unlink(missing_ok=True)
                    t0 = time.perf_counter()
                    write_pair_view(folder, info, query, refer, side)
                    times[mode].append(time.perf_counter() - t0)
                    sizes[mode] = _size(folder, VIEW_FILES)
                shutil.rmtree(folder, ignore_errors=True)
    print(f"pair {Path(args.query).name} -> {Path(args.refer).name}, {refer.shape[1]}x{refer.shape[0]} reference, "
          f"{reg.status} ({reg.transform.model if reg.transform else 'no transform'}), {args.rounds} rounds")
    base = statistics.median(times["register"])
    for k, v in times.items():
        med = statistics.median(v)
        extra = f", {sizes[k] / 1e3:.0f} KB" if k in sizes else ""
        print(f"{k:16s} median {med:6.3f} s  ({med / base:5.1%} of the registration){extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
