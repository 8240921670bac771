"""``bash run.sh batch PAIRS.csv --out DIR`` and ``bash run.sh report DIR``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..models import add_device_option, add_model_option, apply_model_option
from ..progname import prog_name

EPILOG = """PAIRS.csv: a header line with columns query,refer (image paths, relative to the CSV's folder or
absolute), optionally id (default: the row number; it names OUT/pairs/<id>/) and any other columns
(carried through to summary.csv). A rerun skips the pairs already finished with the same input files,
method, config, pipeline, model and device (the one the engine reports); a changed setting is refused (--restart discards the old rows).
Ray: pip install -e '.[cluster]'; --engine ray starts a local Ray instance, or joins a cluster with
--address HOST:6379 (or $RAY_ADDRESS); images, config, pipeline and model must be at the same paths on
every node. One run at a time per OUT: a second run on it is refused with the first one's pid and host.
Text cells of summary.csv that a spreadsheet would take as a formula (starting with = + - @) are
written with a leading ' (numbers are left alone). Exit 0 when every pair was processed (registered
or not), 2 for bad input, 130 on Ctrl-C.
A list with a `series` column (and `image`, optional `visit`, `date`, `field`) registers one series
per value instead (OUT/series/<id>/: series.json, aligned/, montage.png, flicker.html)."""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog or prog_name("batch"), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description=(
        "Register every pair of a list, resumably. Writes OUT/pairs/<id>/ (result.json and pictures), "
        "OUT/summary.csv (one row per pair as it finishes: status, reason, homography h00..h22, "
        "quality, seconds), OUT/summary.json (counts, rates, timing) and OUT/index.html (a report "
        "to open in a browser; each row opens OUT/pairs/<id>/view.html, the pair's full-resolution "
        "flicker/fade/checkerboard/difference view)."))
    ap.add_argument("pairs", type=Path, help="CSV file of pairs (columns query, refer[, id, ...])")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--config", type=Path, help="parameters YAML laid over configs/default.yaml")
    ap.add_argument("--pipeline", type=Path, help="pipeline file (default pipeline/superretina.pipeline)")
    add_model_option(ap)
    add_device_option(ap)
    ap.add_argument("--runtime", choices=("auto", "ascend", "local"), help="MindX runtime (default auto)")
    ap.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="local (default): pairs in flight through one stream on this machine; "
                         "ray: a pool of Ray workers (the cluster extra)")
    ap.add_argument("--jobs", type=int, help="local: pairs in flight, 1-16 (default 2); ray: workers, "
                                             "1-4096 (default: one per CPU)")
    ap.add_argument("--address", help="Ray cluster to join (default $RAY_ADDRESS, else a local instance)")
    pics = ap.add_mutually_exclusive_group()
    pics.add_argument("--no-pictures", action="store_true", help="result.json only, no pictures")
    pics.add_argument("--thumbnails", action="store_true",
                      help="small pictures only: the report's thumbnails and pair views scaled to 1024 px")
    ap.add_argument("--restart", action="store_true", help="discard earlier results in OUT and start again")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    apply_model_option(args)
    from .cells import carried_names
    from .engines import JOBS_WHY, MAX_JOBS, make_engine
    from .outfolder import claim_out
    from .pairs import BatchInputError, read_pairs
    from .runner import STORE_COLUMNS, run_batch

    top = MAX_JOBS[args.engine]
    if args.jobs is not None and not 1 <= args.jobs <= top:
        raise BatchInputError(f"--jobs must be 1 to {top} with --engine {args.engine} ({JOBS_WHY[args.engine]}), "
                              f"got {args.jobs}")
    if args.out.exists() and not args.out.is_dir():
        raise BatchInputError(f"{args.out}: --out must be a folder, and this is a file")
    from ..series.batch import has_series_column
    from .pairs import read_list_text

    text = read_list_text(args.pairs)   # once: bounded, regular files only
    if has_series_column(text):
        return _series_main(args, text)
    jobs, extra = read_pairs(args.pairs, text)
    carried_names(extra, STORE_COLUMNS, where=str(args.pairs))   # before the model loads
    pictures = "none" if args.no_pictures else "thumbnails" if args.thumbnails else "full"
    # The folder is held before the model loads: a second run is refused at once, and a run
    # refused later (a bad pipeline) removes the --out it created.
    with claim_out(args.out):
        if args.engine == "ray":  # one-line errors for a bad config/pipeline/model, before any worker starts
            from ..app import open_app
            open_app(args.config, args.pipeline, args.runtime, device=args.device).close()
        engine = make_engine(args.engine, args.config, args.pipeline, args.runtime, args.jobs, args.address,
                             device=args.device)
        try:
            s = run_batch(jobs, extra, args.out, engine, pictures, args.restart, not args.no_progress)
        finally:
            engine.close()
    c, r = s["counts"], s["this_run"]
    print(f"{s['pairs']} pairs: {c['registered']} registered, {c['failed']} failed, {c['error']} error; "
          f"{r['new_pairs']} processed now, {r['reused_pairs']} reused"
          + (f"; {r['pairs_per_second']:.2f} pairs/s with {r['workers']} {r['engine']} worker(s)"
             if r["pairs_per_second"] else ""))
    print(f"results in {args.out}: summary.csv, summary.json, index.html")
    return 0


def _series_main(args, text: str) -> int:
    """A list with a ``series`` column: one series per value (superretina.series.batch)."""
    from ..series.batch import read_series_jobs, run_series_batch
    from .engines import make_engine

    jobs = read_series_jobs(args.pairs, text)
    pictures = "none" if args.no_pictures else "thumbnails" if args.thumbnails else "full"
    from .outfolder import claim_out

    with claim_out(args.out):   # one run at a time per OUT, as for pairs
        if args.engine == "ray":
            from ..app import open_app
            open_app(args.config, args.pipeline, args.runtime, device=args.device).close()
        engine = make_engine(args.engine, args.config, args.pipeline, args.runtime, args.jobs, args.address,
                             device=args.device)
        try:
            s = run_series_batch(jobs, args.out, engine, pictures, args.restart, not args.no_progress)
        finally:
            engine.close()
    c = s["counts"]
    print(f"{s['series']} series: {c['registered']} registered, {c['failed']} failed, {c['error']} error; "
          f"{s['this_run']['new_series']} processed now, {s['this_run']['reused_series']} reused")
    print(f"results in {args.out}: summary.csv, summary.json, index.html, series/<id>/")
    return 0


def report_main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog=prog_name("report"), description=(
        "Rebuild OUT/index.html, the browsable report of a batch or fire run (finished or interrupted): "
        "counts, success curve (fire), residual and time distributions, one row per pair with thumbnails "
        "and a link to its pair view (batch), failures first, sortable and filterable. Opens from the "
        "file system, no server needed."))
    ap.add_argument("out", type=Path, help="the --out folder of a batch or fire run")
    args = ap.parse_args(argv)
    from ..report import build_report
    page = build_report(args.out)
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
