"""Resumable, method-agnostic FIRE batch evaluation.

``evaluate(pairs, register_fn, out_dir)`` registers every pair with
``register_fn(query_path, refer_path) -> RegistrationOutcome`` and scores it by the FIRE
protocol (``protocol.pair_error``). Files in ``out_dir``:

- ``pairs.csv``: one row per finished pair, appended, flushed and fsynced at once (Ctrl-C
  loses no finished pair). Columns: pair, category, mean_error, median_error, max_error,
  status (acceptable / inaccurate / failed / error), matches, inliers, inlier_rate, seconds,
  homography (9 space-separated numbers, row-major, query -> reference; empty when none),
  reason, model (the transform scored: homography or quadratic), inputs_sha, setup_sha (what
  produced the row: ``superretina.batch.fingerprint``).
  Written through the batch command's resumable store (``superretina.batch.store``): a rerun
  skips the pairs already there with the same input files and setup (``restart=True`` starts
  afresh); rows with status ``error`` (missing or corrupt file) and rows whose files changed
  are redone; rows made with another method, config (transform model included), pipeline or
  model are refused (StoreError) rather than mixed in. ``run.json`` records the setup.
- ``summary.json``: counts per category, AUCs, mAUC, failed / inaccurate / acceptable
  percentages, categories present, pairs that could not be evaluated, speed, method name.
- ``success_curve.png``: fraction of pairs with error < t for t in 0..25 px, one curve per
  category, AUC in the legend.

A pair whose image or ground-truth file is missing or unreadable, or whose ``register_fn``
raises, gets status ``error`` with the reason; the run goes on and the summary counts it as
failed and lists it.

Command line (SIFT baseline on a FIRE-layout folder)::

    python -m superretina.fire.evaluate DIR --method sift --out OUT [--jobs N] [--restart]
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from ..batch.engines import MAX_JOBS
from ..batch.fingerprint import inputs_sha, setup_sha
from ..batch.outfolder import claim_out, real_folder
from ..batch.store import ResultStore, check_setup
from ..models import add_device_option, add_model_option, apply_model_option
from ..outputs import write_file
from .outcome import RegistrationOutcome
from .protocol import (AUC_THRESHOLDS, FAILED_ERROR, PairSpec, Summary, list_pairs,
                       load_control_points, pair_error, success_curve, summarise)

CSV_COLUMNS = ["pair", "category", "mean_error", "median_error", "max_error", "status", "matches",
               "inliers", "inlier_rate", "seconds", "homography", "reason", "model", "inputs_sha", "setup_sha",
               "confidence"]
ROW_STATUSES = ("acceptable", "inaccurate", "failed", "error")
RegisterFn = Callable[[Path, Path], RegistrationOutcome]


# --------------------------------------------------------------------------- one pair
def _error_row(spec: PairSpec, reason: str, seconds: float = 0.0) -> dict:
    return {"pair": spec.name, "category": spec.category, "mean_error": FAILED_ERROR,
            "median_error": FAILED_ERROR, "max_error": FAILED_ERROR, "status": "error",
            "matches": 0, "inliers": 0, "inlier_rate": 0.0, "seconds": seconds, "homography": None,
            "reason": reason, "model": "homography"}


def run_pair(spec: PairSpec, register_fn: RegisterFn) -> dict:
    """Register and score one pair; never raises except for KeyboardInterrupt/SystemExit.

    Returns a row dict with the ``CSV_COLUMNS`` keys (``homography`` as a 3x3 array or None).
    """
    try:
        ref_pts, query_pts = load_control_points(spec.gt_path)
    except FileNotFoundError:
        return _error_row(spec, f"ground-truth file missing: {spec.gt_path}")
    except (ValueError, OSError) as e:
        return _error_row(spec, f"bad ground truth: {e}")
    for p in (spec.query_path, spec.refer_path):
        if not Path(p).is_file():
            return _error_row(spec, f"image missing: {p}")
    t0 = time.perf_counter()
    try:
        out = register_fn(spec.query_path, spec.refer_path)
    except Exception as e:  # noqa: BLE001 - any failure of one pair must not stop the run
        return _error_row(spec, f"{type(e).__name__}: {e}", time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    if not isinstance(out, RegistrationOutcome):
        return _error_row(spec, f"register_fn returned {type(out).__name__}, not RegistrationOutcome",
                          seconds)
    if out.seconds is not None:
        seconds = float(out.seconds)
    if out.status == "error":
        row = _error_row(spec, out.reason or "error", seconds)
        row.update(matches=out.num_matches, inliers=out.num_inliers, inlier_rate=out.inlier_rate)
        return row
    H = out.H if out.status == "registered" else None
    pe = pair_error(H, query_pts, ref_pts, out.inlier_rate, out.transform if H is not None else None)
    reason = out.reason
    if pe.status == "failed" and not reason:
        reason = "no homography" if H is None else f"inlier rate {out.inlier_rate:.3g} < 1e-6"
    return {"pair": spec.name, "category": spec.category, "mean_error": pe.mean,
            "median_error": pe.median, "max_error": pe.max, "status": pe.status,
            "matches": int(out.num_matches), "inliers": int(out.num_inliers),
            "inlier_rate": float(out.inlier_rate), "seconds": seconds, "homography": H,
            "reason": reason, "model": out.model if H is not None else "homography",
            "confidence": out.confidence}


# --------------------------------------------------------------------------- pairs.csv
def _format_row(row: dict) -> dict:
    H = row.get("homography")
    values = [row["pair"], row["category"], repr(float(row["mean_error"])),
              repr(float(row["median_error"])), repr(float(row["max_error"])), row["status"],
              str(int(row["matches"])), str(int(row["inliers"])), f"{float(row['inlier_rate']):.6f}",
              f"{float(row['seconds']):.4f}",
              "" if H is None else " ".join(f"{v:.12g}" for v in np.asarray(H, np.float64).ravel()),
              " ".join(str(row.get("reason", "") or "").split()), row.get("model") or "homography",
              row.get("inputs_sha", ""), row.get("setup_sha", ""),
              "" if row.get("confidence") is None else f"{float(row['confidence']):.4f}"]
    return dict(zip(CSV_COLUMNS, values))


def _parse_row(rec: dict) -> Optional[dict]:
    """A pairs.csv record as a row dict, or None when it is damaged."""
    try:
        rec = {"model": "homography", **rec}    # files from before the model column
        if not rec.get("pair") or rec.get("status") not in ROW_STATUSES or None in rec.values():
            return None
        hom = rec["homography"].split()
        return {"pair": rec["pair"], "category": rec["category"],
                "mean_error": float(rec["mean_error"]), "median_error": float(rec["median_error"]),
                "max_error": float(rec["max_error"]), "status": rec["status"],
                "matches": int(rec["matches"]), "inliers": int(rec["inliers"]),
                "inlier_rate": float(rec["inlier_rate"]), "seconds": float(rec["seconds"]),
                "homography": np.float64(hom).reshape(3, 3) if hom else None,
                "reason": rec["reason"], "model": rec.get("model") or "homography",
                "inputs_sha": rec.get("inputs_sha", ""), "setup_sha": rec.get("setup_sha", ""),
                "confidence": float(rec["confidence"]) if rec.get("confidence") else None}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def read_pairs_csv(path: Union[str, Path]) -> list[dict]:
    """Rows of a ``pairs.csv`` (damaged rows, e.g. a half-written last line, are skipped).

    For reading only: files of earlier versions (without inputs_sha and setup_sha) are read too,
    with those two empty; ``evaluate`` never reuses such rows. Raises StoreError (a ValueError)
    for an unrelated file.
    """
    # Columns up to reason are in every version's file; model, inputs_sha, setup_sha came later.
    raw = ResultStore(Path(path), CSV_COLUMNS[: CSV_COLUMNS.index("reason") + 1], "pair").load()
    return [row for row in map(_parse_row, raw.values()) if row is not None]


# --------------------------------------------------------------------------- batch
def _method_name(register_fn: RegisterFn, method: Optional[str]) -> str:
    return method or getattr(register_fn, "__name__", None) or type(register_fn).__name__


def evaluate(pairs: Sequence[PairSpec], register_fn: RegisterFn, out_dir: Union[str, Path], jobs: int = 1,
             restart: bool = False, progress: bool = True, method: Optional[str] = None,
             verbose: bool = True, setup: Optional[dict] = None) -> Summary:
    """Register and score every pair, resumably; write pairs.csv, summary.json, success_curve.png.

    Parameters
    ----------
    pairs : sequence of PairSpec
        Usually ``protocol.list_pairs(fire_dir)``.
    register_fn : callable (query_path, refer_path) -> RegistrationOutcome
        Must be thread-safe when ``jobs > 1``. Exceptions it raises become status 'error'
        for that pair (KeyboardInterrupt stops the run; finished pairs are kept).
    out_dir : str or Path
        Created if needed.
    jobs : int
        Pairs in flight at once (threads); rows are written as they finish.
    restart : bool
        Discard an existing pairs.csv instead of resuming from it.
    progress : bool
        tqdm progress bar (pairs/s, time left).
    method : str, optional
        Name written to summary.json (default: ``register_fn.__name__``).
    verbose : bool
        Print the two summary lines, the set line when the set is not the full FIRE, and the
        pairs that could not be evaluated.
    setup : dict, optional
        What produces the rows (method, config, pipeline, model: see
        ``superretina.batch.fingerprint.app_setup``); recorded in every row. Default:
        ``register_fn.setup`` when it has one, else ``{"method": <method name>}``.

    Returns
    -------
    Summary
        Over every listed pair in pairs.csv, including those of earlier runs.
    """
    names = [p.name for p in pairs]
    if len(set(names)) != len(names):
        raise ValueError("evaluate: duplicate pair names in the pair list")
    if not pairs:
        raise ValueError("evaluate: empty pair list")
    with claim_out(out_dir) as out_dir:   # one run at a time on a folder (batch.outfolder)
        return _evaluate_claimed(pairs, register_fn, out_dir, jobs, restart, progress, method, verbose, setup)


def _evaluate_claimed(pairs, register_fn, out_dir: Path, jobs, restart, progress, method, verbose, setup) -> Summary:
    names = [p.name for p in pairs]
    csv_path = out_dir / "pairs.csv"
    wanted = set(names)
    setup = setup or getattr(register_fn, "setup", None) or {"method": _method_name(register_fn, method)}
    key = setup_sha(setup)
    store = ResultStore(csv_path, CSV_COLUMNS, "pair")
    raw = {} if restart else store.load()
    check_setup(raw, setup, out_dir / "run.json", out_dir)
    inputs = {p.name: inputs_sha(p.query_path, p.refer_path, p.gt_path) for p in pairs}
    kept = [r for r in map(_parse_row, raw.values())
            if r is not None and r["status"] != "error" and r["inputs_sha"] == inputs.get(r["pair"], r["inputs_sha"])]
    done = {r["pair"] for r in kept}
    todo = [p for p in pairs if p.name not in done]
    store.open([_format_row(r) for r in kept], CSV_COLUMNS)

    class _Log:  # rows of this run, stamped with what produced them
        @staticmethod
        def write(row: dict) -> None:
            store.write(_format_row({**row, "inputs_sha": inputs[row["pair"]], "setup_sha": key}))

        close = staticmethod(store.close)

    log = _Log()

    from tqdm import tqdm
    bar = tqdm(total=len(todo), unit="pair", disable=not progress, desc=_method_name(register_fn, method),
               dynamic_ncols=True)
    t_start = time.perf_counter()
    n_new = 0
    try:
        if jobs <= 1:
            for spec in todo:
                log.write(run_pair(spec, register_fn))
                n_new += 1
                bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=int(jobs)) as ex:
                pending = {ex.submit(run_pair, spec, register_fn) for spec in todo}
                try:
                    while pending:
                        finished, pending = wait(pending, return_when="FIRST_COMPLETED")
                        stop = None
                        for fut in finished:
                            try:
                                row = fut.result()
                            except BaseException as e:  # KeyboardInterrupt inside register_fn
                                stop = stop or e
                                continue
                            log.write(row)
                            n_new += 1
                            bar.update(1)
                        if stop is not None:
                            raise stop
                except BaseException:
                    # Interrupted: start nothing new, keep every pair still finishing.
                    for fut in pending:
                        fut.cancel()
                    for fut in pending:
                        if not fut.cancelled():
                            try:
                                log.write(fut.result())
                                n_new += 1
                            except BaseException:  # noqa: BLE001 - already interrupting
                                pass
                    raise
    except KeyboardInterrupt:
        bar.close()
        log.close()
        print(f"\ninterrupted: {len(done) + n_new} pairs saved in {csv_path}; run again to resume",
              file=sys.stderr)
        raise
    bar.close()
    log.close()
    elapsed = time.perf_counter() - t_start

    rows = [r for r in read_pairs_csv(csv_path) if r["pair"] in wanted]
    summary = summarise(rows)
    timed = [r["seconds"] for r in rows if r["status"] != "error"]
    models = {}
    for r in rows:
        models[r["model"]] = models.get(r["model"], 0) + 1
    summary = replace(summary, method=_method_name(register_fn, method),
                      pairs_per_second=(n_new / elapsed) if n_new and elapsed > 0 else None,
                      seconds_per_pair=float(np.mean(timed)) if timed else None, models=models)
    write_summary(summary, out_dir / "summary.json")
    plot_success_curve(rows, summary, out_dir / "success_curve.png")
    if verbose:
        print_summary(summary)
    return summary


def write_summary(summary: Summary, path: Union[str, Path]) -> None:
    """summary.json (the Summary's fields plus its two report lines and the set line)."""
    d = summary.to_dict()
    d["set_line"] = summary.set_line()
    write_file(Path(path), json.dumps(d, indent=2).encode())   # never through a link at the name


def print_summary(summary: Summary, file=None) -> None:
    """Print the two reference lines, then the set line / note / errors when relevant."""
    file = file or sys.stdout
    for line in summary.summary_lines():
        print(line, file=file)
    if not summary.is_full_fire:
        print(summary.set_line(), file=file)
    missing = [c for c in ("S", "P", "A") if c not in summary.counts]
    if missing:
        print(f"Note: no {', '.join(missing)} pairs; mAUC is the mean over "
              f"{', '.join(summary.categories_present)}.", file=file)
    if summary.errors:
        print(f"{len(summary.errors)} pair(s) could not be evaluated (counted as failed):", file=file)
        for e in summary.errors:
            print(f"  {e['pair']}: {e['reason']}", file=file)


def plot_success_curve(rows: Iterable[Mapping], summary: Summary, path: Union[str, Path]) -> None:
    """success_curve.png: success rate vs threshold 0..25 px per category (Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(rows)
    ts = np.linspace(0.0, float(max(AUC_THRESHOLDS)), 251)
    fig = Figure(figsize=(6, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for c in summary.categories_present:
        errs = [FAILED_ERROR if r["status"] in ("failed", "error") else r["mean_error"]
                for r in rows if r["category"] == c]
        ax.plot(ts, success_curve(errs, ts), label=f"{c} (n={len(errs)}): AUC {summary.auc[c]:.3f}")
    ax.set_xlim(0, ts[-1])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("threshold on mean control-point error (px)")
    ax.set_ylabel("fraction of pairs with error < threshold")
    ax.set_title(f"{summary.method or ''}  mAUC {summary.mauc:.3f}  ({summary.n_pairs} pairs)".strip())
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png")
    write_file(Path(path), buf.getvalue())


# --------------------------------------------------------------------------- several methods
def format_comparison(summaries: Mapping[str, Summary]) -> str:
    """Table: method, failed/inaccurate/acceptable %, S/P/A AUC, mAUC, seconds per pair."""
    head = f"{'method':<24} {'Failed':>8} {'Inaccurate':>10} {'Acceptable':>10} {'S':>6} {'P':>6} {'A':>6} {'mAUC':>6} {'s/pair':>7}"
    lines = [head, "-" * len(head)]
    for name, s in summaries.items():
        aucs = [f"{s.auc[c]:6.3f}" if c in s.auc else f"{'n/a':>6}" for c in ("S", "P", "A")]
        spp = f"{s.seconds_per_pair:7.2f}" if s.seconds_per_pair is not None else f"{'n/a':>7}"
        lines.append(f"{name:<24} {s.failed_pct:7.2f}% {s.inaccurate_pct:9.2f}% {s.acceptable_pct:9.2f}% "
                     f"{' '.join(aucs)} {s.mauc:6.3f} {spp}")
    return "\n".join(lines)


def compare(pairs: Sequence[PairSpec], methods: Mapping[str, RegisterFn], out_dir: Union[str, Path],
            jobs: int = 1, restart: bool = False, progress: bool = True) -> dict[str, Summary]:
    """Evaluate several methods on one set into ``out_dir/<method>/`` and print one table.

    Returns {method: Summary}; the table is also written to ``out_dir/comparison.txt``.
    """
    summaries = {}
    with claim_out(out_dir) as out_dir:
        for name, fn in methods.items():
            print(f"== {name}")
            summaries[name] = evaluate(pairs, fn, real_folder(out_dir / name), jobs=jobs, restart=restart,
                                       progress=progress, method=name)
        table = format_comparison(summaries)
        first = next(iter(summaries.values()))
        if not first.is_full_fire:
            table += "\n" + first.set_line()
        print(table)
        write_file(out_dir / "comparison.txt", (table + "\n").encode())
    return summaries


# --------------------------------------------------------------------------- command line
def _sift_factory(args) -> RegisterFn:
    import cv2

    from .sift import make_register_fn
    fn = make_register_fn(ratio=args.ratio)
    fn.setup = {"method": "sift", "ratio": args.ratio, "opencv": cv2.__version__}
    return fn


def _superretina_factory(args) -> RegisterFn:
    # Imported here: the SIFT baseline must not need the model or the stream runtime.
    from ..app import open_app
    from ..batch.fingerprint import app_setup
    from .superretina import make_register_fn
    app = open_app(args.config, args.pipeline, args.runtime, device=args.device)
    if args.transform:
        app.config["transform"]["model"] = args.transform  # in the config, so the setup records it
    fn = make_register_fn(app)
    fn.setup = app_setup(app, "superretina", config_file=args.config)
    fn.close = app.close  # main closes it: an open stream at exit aborted Ctrl-C with exit 134
    return fn


METHODS = {"superretina": _superretina_factory, "sift": _sift_factory}
# compare: SuperRetina once per pair, scored with each transform model (one row each), then SIFT.
COMPARE_MODELS = ("homography", "quadratic", "auto")


def _compare_methods(args) -> dict:
    from ..app import open_app
    from ..batch.fingerprint import app_setup
    from .superretina import make_register_fns
    app = open_app(args.config, args.pipeline, args.runtime, device=args.device)
    fns = {}
    for m, fn in make_register_fns(app, COMPARE_MODELS).items():
        fn.setup = app_setup(app, "superretina", config_file=args.config, transform_model=m)
        fns[f"superretina-{m}"] = fn
    fns[f"superretina-{COMPARE_MODELS[0]}"].close = app.close  # one app behind all three; closed once
    fns["sift"] = _sift_factory(args)
    return fns


def build_parser(prog: str, compare_all: bool) -> argparse.ArgumentParser:
    what = "every method" if compare_all else "a registration method"
    ap = argparse.ArgumentParser(
        prog=prog,
        description=f"Evaluate {what} on a FIRE-layout folder (the real FIRE or a synthetic set) "
                    "by the FIRE protocol: mean control-point error per pair, Failed/Inaccurate/"
                    "Acceptable, AUC over 1..25 px per category S/P/A and mAUC. Resumable: rerunning "
                    "skips the pairs already in OUT/pairs.csv made with the same files and setup, and refuses rows "
                    "made with another method, config, pipeline, model or device (--restart discards them).",
        epilog="Real FIRE: download it, unpack it so DIR has Images/ and 'Ground Truth/', then "
               "`bash run.sh fire DIR`. Synthetic sets: `bash run.sh synth OUT --from IMAGES`.")
    ap.add_argument("fire_dir", type=Path, help="folder with Images/ and Ground Truth/")
    if not compare_all:
        ap.add_argument("--method", choices=sorted(METHODS), default="superretina",
                        help="superretina (default: the stream pipeline) or sift (OpenCV baseline)")
    ap.add_argument("--out", type=Path, help="output folder (default out/<set name>_<method or compare>)")
    ap.add_argument("--jobs", type=int, help="pairs in flight at once (default 2 for superretina: the next pair is "
                                             "read, decoded and enhanced while the current one is inferred; 1 for "
                                             "sift and compare)")
    ap.add_argument("--restart", action="store_true", help="discard earlier results and start again")
    ap.add_argument("--keep-p37", action="store_true",
                    help="keep pair P37 of the real FIRE (excluded by the protocol)")
    ap.add_argument("--ratio", type=float, default=0.8, help="SIFT Lowe ratio (default 0.8)")
    if not compare_all:
        ap.add_argument("--transform", choices=COMPARE_MODELS,
                        help="SuperRetina: transform scored (default: transform.model of the config)")
    ap.add_argument("--config", type=Path, help="registration parameters YAML (default configs/default.yaml)")
    ap.add_argument("--pipeline", type=Path, help="pipeline file (default pipeline/superretina.pipeline)")
    add_model_option(ap)
    add_device_option(ap)
    ap.add_argument("--runtime", choices=("auto", "ascend", "local"), help="MindX runtime (default auto)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def main(argv: Optional[Sequence[str]] = None, compare_all: bool = False,
         prog: str = "python -m superretina.fire.evaluate") -> int:
    args = build_parser(prog, compare_all).parse_args(argv)
    try:
        apply_model_option(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.jobs is None:   # the stream keeps each pair's results apart: same rows for any --jobs
        args.jobs = 2 if not compare_all and args.method == "superretina" else 1
    if not 1 <= args.jobs <= MAX_JOBS["local"]:   # pairs in flight on this machine, as batch's
        print(f"error: --jobs must be 1 to {MAX_JOBS['local']}, got {args.jobs}", file=sys.stderr)
        return 2
    if not compare_all and args.method == "sift" and args.device == "gpu":
        print("error: --device gpu: the SIFT baseline runs on the CPU (OpenCV); --device is for --method superretina",
              file=sys.stderr)
        return 2
    label = "compare" if compare_all else args.method
    out = args.out or Path("out") / f"{args.fire_dir.resolve().name}_{label}"
    fns: dict = {}
    try:
        pairs = list_pairs(args.fire_dir, exclude_p37=not args.keep_p37)
        with claim_out(out):   # before the model loads: a second run on --out is refused at once
            if compare_all:
                fns = _compare_methods(args)
                compare(pairs, fns, out, jobs=args.jobs, restart=args.restart, progress=not args.no_progress)
            else:
                fns[args.method] = METHODS[args.method](args)
                evaluate(pairs, fns[args.method], out, jobs=args.jobs, restart=args.restart,
                         progress=not args.no_progress, method=args.method)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: finished pairs are kept in {out}; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        for fn in fns.values():  # the stream: waits for the batch in flight, then stops its threads
            getattr(fn, "close", lambda: None)()
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
