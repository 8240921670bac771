"""A resumable batch: pairs in, ``OUT/pairs/<id>/``, ``OUT/summary.csv``, ``summary.json``, ``index.html``.

Each finished pair's folder is first written under ``OUT/pairs/.partial/`` and moved into place
before its row is appended (fsynced) to summary.csv: a pair has a row only when its files are
complete, a killed run loses at most the pairs in flight, and a rerun does each of those again.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from .fingerprint import inputs_sha, setup_sha
from .pairs import BatchInputError, PairJob
from .store import ResultStore, check_setup
from .worker import ROW_COLUMNS, PairOutput

STORE_COLUMNS = [*ROW_COLUMNS, "inputs_sha", "setup_sha"]
STATUSES = ("registered", "failed", "error")


def _commit(out: Path, job: PairJob, output: PairOutput, store: ResultStore, setup_key: str, extra: dict) -> None:
    pairs = out / "pairs"
    partial = pairs / ".partial" / job.id
    if output.files:
        partial.mkdir(parents=True, exist_ok=True)
        for name, data in output.files.items():
            (partial / name).write_bytes(data)
    final = pairs / job.id
    if final.is_symlink() or final.is_file():
        final.unlink()
    elif final.exists():
        shutil.rmtree(final)
    if partial.is_dir():
        os.replace(partial, final)
    row = {**output.row, **extra, "inputs_sha": inputs_sha(job.query, job.refer), "setup_sha": setup_key}
    store.write(row)


def _carried(job: PairJob, extra_cols: Sequence[str]) -> dict:
    # A carried column whose name is one of ours keeps its value under "in_<name>".
    return {(f"in_{c}" if c in STORE_COLUMNS else c): job.extra.get(c, "") for c in extra_cols}


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
    KeyboardInterrupt
        After writing every pair that had finished, and summary.json marked interrupted.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BatchInputError(f"{out}: --out must be a folder, and this is a file")
    out.mkdir(parents=True, exist_ok=True)
    setup = engine.setup(pictures)
    key = setup_sha(setup)
    store = ResultStore(out / "summary.csv", STORE_COLUMNS, "id")
    old = {} if restart else store.load()
    if restart:
        shutil.rmtree(out / "pairs", ignore_errors=True)
    check_setup(old, setup, out / "run.json", out)
    shutil.rmtree(out / "pairs" / ".partial", ignore_errors=True)   # left by a killed run
    # summary.json describes a finished (or Ctrl-C'd) run; until this one ends there is none, so
    # that a report rebuilt after a kill says it is incomplete instead of showing stale counts.
    (out / "summary.json").unlink(missing_ok=True)
    wanted = {j.id: j for j in jobs}
    keep, todo = [], []
    for job in jobs:
        row = old.get(job.id)
        if row and row["status"] != "error" and row["inputs_sha"] == inputs_sha(job.query, job.refer):
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
    summary = summarise(rows, setup, run)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, out / "summary.json")
    from ..report import build_report
    build_report(out)
    if interrupted:
        print(f"\ninterrupted: {len(rows)} of {len(jobs)} pairs finished and kept in {out / 'summary.csv'}; "
              "run the same command again to resume", file=sys.stderr)
        raise KeyboardInterrupt
    return summary
