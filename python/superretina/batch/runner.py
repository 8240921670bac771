"""A resumable batch: pairs in, ``OUT/pairs/<id>/``, ``OUT/summary.csv``, ``summary.json``, ``index.html``.

Each finished pair's folder is first written under ``OUT/pairs/.partial/`` and moved into place
before its row is appended (fsynced) to summary.csv: a pair has a row only when its files are
complete, a killed run loses at most the pairs in flight, and a rerun does each of those again.
One run at a time holds the folder (``outfolder.claim_out``); a rerun reuses a row only while
the pair's folder still holds its result.json. Every file is written through
``outputs.write_file`` (new temporary file, renamed: links are replaced, never followed), and
text cells are neutralised for spreadsheets (``cells``).
"""
from __future__ import annotations

import json
import os
import stat
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ..outputs import write_file
from .cells import carried_names, neutralise, neutralise_row
from .fingerprint import inputs_sha, setup_sha
from .outfolder import claim_out, real_folder, remove_tree
from .pairs import PairJob
from .store import ResultStore, check_setup
from .worker import ROW_COLUMNS, PairOutput

STORE_COLUMNS = [*ROW_COLUMNS, "inputs_sha", "setup_sha"]
STATUSES = ("registered", "failed", "error")


def _commit(out: Path, job: PairJob, output: PairOutput, store: ResultStore, setup_key: str, extra: dict) -> None:
    pairs = out / "pairs"
    partial = pairs / ".partial" / job.id
    if output.files:   # from a remote worker: written here the way single-pair outputs are
        real_folder(partial)
        for name, data in output.files.items():
            write_file(partial / name, data)
    final = pairs / job.id
    remove_tree(final)
    if partial.is_dir():
        os.replace(partial, final)
    # inputs_sha of the bytes the worker decoded; an error row (never reused) keys the files as they are
    key = output.row.get("inputs_sha") or inputs_sha(job.query, job.refer)
    store.write(neutralise_row({**output.row, **extra, "inputs_sha": key, "setup_sha": setup_key}))


def _carried(job: PairJob, extra_cols: Sequence[str]) -> dict:
    # A carried column whose name is one of ours keeps its value under "in_<name>".
    names = carried_names(extra_cols, STORE_COLUMNS)
    return {names[c]: neutralise(job.extra.get(c, "")) for c in extra_cols}


def _has_result(out: Path, pid: str) -> bool:
    """A finished pair's folder still holds its result.json (a row without it is done again)."""
    try:
        return stat.S_ISREG(os.lstat(out / "pairs" / pid / "result.json").st_mode)
    except OSError:
        return False


def summarise(rows: Sequence[dict], setup: dict, run: dict) -> dict:
    """summary.json content: counts and rates per status, seconds per pair, this run's speed, setup."""
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    n = len(rows)
    secs = [float(r["seconds"]) for r in rows if r["status"] != "error" and r.get("seconds")]
    return {
        "produced_by": "superretina batch", "pairs": n, "counts": counts,
        "rates_pct": {s: round(100 * c / n, 3) if n else 0.0 for s, c in counts.items()},
        "seconds_per_pair": {"median": statistics.median(secs) if secs else None,
                             "mean": statistics.fmean(secs) if secs else None,
                             "note": "wall time of a pair in its worker (read, register, pictures)"},
        "this_run": run, "setup": setup, "setup_sha": setup_sha(setup),
    }


def run_batch(jobs: Sequence[PairJob], extra_cols: Sequence[str], out: Path, engine, pictures: str = "full",
              restart: bool = False, progress: bool = True) -> dict:
    """Register every pair not already finished with the same inputs and setup; returns summary.json.

    Parameters
    ----------
    jobs : sequence of PairJob
        From :func:`superretina.batch.pairs.read_pairs`.
    extra_cols : sequence of str
        Carried-through columns of the pair list (appended to summary.csv).
    out : Path
        Output folder (created).
    engine : LocalEngine or RayEngine
        Opened; not closed here.
    pictures : {'full', 'thumbnails', 'none'}
    restart : bool
        Discard earlier rows instead of refusing those of another setup.
    progress : bool
        Progress bar (pairs/s, time left) on stderr.

    Raises
    ------
    StoreError
        Earlier rows of another setup (or an unrecognised summary.csv) without ``restart``.
    FolderBusy
        Another run holds ``out`` (``outfolder.claim_out``); the message names it.
    BatchInputError
        Carried columns that would share a name; a link in the place of ``out/pairs``.
    KeyboardInterrupt
        After writing every pair that had finished, and summary.json marked interrupted.
    """
    carried_names(extra_cols, STORE_COLUMNS)  # colliding carried columns: refused before any work
    with claim_out(out) as out:   # one run at a time on a folder; the second is told who holds it
        return _run_claimed(jobs, extra_cols, out, engine, pictures, restart, progress)


def _run_claimed(jobs, extra_cols, out: Path, engine, pictures, restart, progress) -> dict:
    setup = engine.setup(pictures)
    key = setup_sha(setup)
    store = ResultStore(out / "summary.csv", STORE_COLUMNS, "id")
    old = {} if restart else store.load()
    if restart:
        remove_tree(out / "pairs")
    check_setup(old, setup, out / "run.json", out)
    real_folder(out / "pairs")     # a link in its place is refused: nothing is deleted in its target
    remove_tree(out / "pairs" / ".partial")   # left by a killed run
    real_folder(out / "pairs" / ".partial")
    # summary.json describes a finished (or Ctrl-C'd) run; until this one ends there is none, so
    # that a report rebuilt after a kill says it is incomplete instead of showing stale counts.
    (out / "summary.json").unlink(missing_ok=True)
    wanted = {j.id: j for j in jobs}
    keep, todo = [], []
    for job in jobs:
        row = old.get(job.id)
        if row and row["status"] != "error" and row["inputs_sha"] == inputs_sha(job.query, job.refer) \
                and _has_result(out, job.id):
            keep.append({**row, **_carried(job, extra_cols)})  # carried columns from today's list
        else:
            todo.append(job)
    # Rows of pairs no longer listed stay in the file (and their folders), outside the summary.
    keep += [r for pid, r in old.items() if pid not in wanted]
    header = STORE_COLUMNS + [k for k in _carried(jobs[0], extra_cols)]
    store.open(keep, header)

    from tqdm import tqdm
    bar = tqdm(total=len(todo), unit="pair", disable=not progress, desc=f"batch ({engine.name})",
               dynamic_ncols=True, file=sys.stderr)
    dest_for = (lambda job: out / "pairs" / ".partial" / job.id) if engine.name == "local" else (lambda job: None)
    n_new, t0, interrupted = 0, time.perf_counter(), False
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        for job, output in engine.map(todo, pictures, dest_for):
            _commit(out, job, output, store, key, _carried(job, extra_cols))
            n_new += 1
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
        for job, output in engine.drain():
            _commit(out, job, output, store, key, _carried(job, extra_cols))
            n_new += 1
    finally:
        bar.close()
        store.close()
    wall = time.perf_counter() - t0
    rows = [r for pid, r in store.load().items() if pid in wanted]
    run = {"engine": engine.name, "workers": engine.workers, "started_utc": started, "new_pairs": n_new,
           "reused_pairs": len(jobs) - len(todo), "wall_seconds": round(wall, 3),
           "pairs_per_second": round(n_new / wall, 4) if n_new and wall > 0 else None,
           "interrupted": interrupted}
    if getattr(engine, "inference_streams", None):   # local engine: OpenVINO requests at once (speed only)
        run["inference_streams"] = engine.inference_streams
    summary = summarise(rows, setup, run)
    write_file(out / "summary.json", json.dumps(summary, indent=1).encode())
    from ..report import build_report
    build_report(out)
    if interrupted:
        print(f"\ninterrupted: {len(rows)} of {len(jobs)} pairs finished and kept in {out / 'summary.csv'}; "
              "run the same command again to resume", file=sys.stderr)
        raise KeyboardInterrupt
    return summary
