"""Cohorts of series: ``bash run.sh batch LIST.csv --out DIR`` where LIST.csv has a ``series``
column. Rows with the same ``series`` value form one series: its images are the rows' ``image``
column (with optional ``visit`` / ``date`` / ``field``), or, in a pair list, every distinct
``query`` / ``refer`` of its rows.

Same store, resume and setup guard as a pair batch (``batch.store``, ``batch.fingerprint``): one
row per series in ``OUT/summary.csv``, written when its folder ``OUT/series/<id>/`` (series.json,
aligned/, montage.png, flicker.html, two report thumbnails) is complete; a rerun skips the series
finished with the same image files and setup. Engines: local (threads over one opened model)
and Ray (one series per actor), through the engines' ``map(..., work=...)``.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2

from ..batch.pairs import _SAFE_ID, BatchInputError
from ..batch.worker import PairOutput

SERIES_COLUMNS = ["id", "status", "reason", "images", "in_frame", "unconnected", "reference", "transform",
                  "pairs_registered", "pairs_all", "chained_median_px", "refined_median_px", "seconds"]
THUMB_SIDE = 240


@dataclass(frozen=True)
class SeriesJob:
    """One series of a cohort: ``id`` (the ``series`` value), its images and their visit data."""

    id: str
    images: tuple
    visits: tuple = ()
    dates: tuple = ()
    fields: tuple = ()
    extra: dict = field(default_factory=dict)

    # batch.runner's helpers read these two for a pair; a series has many images (see inputs_key)
    @property
    def query(self) -> Path:
        return self.images[0]

    @property
    def refer(self) -> Path:
        return self.images[-1]


def has_series_column(text: str) -> bool:
    """Whether a batch list's header (``text``: the list, as ``batch.pairs.read_list_text`` read it)
    names a ``series`` column."""
    try:
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error:
        return False   # read_pairs says what is wrong with it
    return "series" in [h.strip() for h in header]


def read_series_jobs(path: str | Path, text: str | None = None) -> list[SeriesJob]:
    """Group a batch list's rows by ``series`` (``text``: the list's content, if already read);
    one-line :class:`BatchInputError` for bad input."""
    from ..batch.pairs import read_list_text

    path = Path(path)
    if text is None:
        text = read_list_text(path, "a CSV file with columns series,image")
    reader = csv.DictReader(io.StringIO(text, newline=""))   # quoted line breaks stay in their cell
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    cols = ["image"] if "image" in header else [c for c in ("query", "refer") if c in header]
    if not cols:
        raise BatchInputError(f"{path}: a list with a 'series' column needs an 'image' column (or query,refer)")
    base = path.resolve().parent
    groups: dict = {}
    for rec in reader:
        line = reader.line_num   # where the record ends (a quoted cell may span lines)
        rec = {k: (v or "").strip() for k, v in rec.items() if k is not None}
        if not any(rec.values()):
            continue
        sid = rec.get("series", "")
        if not _SAFE_ID.match(sid) or sid in (".", ".."):
            raise BatchInputError(f"{path}: line {line}: series {sid!r} must be 1-128 letters, digits or ._+- "
                                  "(it names the series' output folder)")
        g = groups.setdefault(sid, {"images": [], "visits": [], "dates": [], "fields": []})
        for c in cols:
            if not rec.get(c):
                raise BatchInputError(f"{path}: line {line}: empty {c} path")
            p = base / rec[c]
            if p not in g["images"]:
                g["images"].append(p)
                g["visits"].append(rec.get("visit", ""))
                g["dates"].append(rec.get("date", ""))
                g["fields"].append(rec.get("field", ""))
    if not groups:
        raise BatchInputError(f"{path}: no rows (a header line and at least one row are expected)")
    for sid, g in groups.items():
        if len(g["images"]) < 2:
            raise BatchInputError(f"{path}: series {sid!r} has {len(g['images'])} image; a series needs at least 2")
    return [SeriesJob(sid, tuple(g["images"]), tuple(g["visits"]), tuple(g["dates"]), tuple(g["fields"]))
            for sid, g in groups.items()]


class AppSession:
    """The pair API's ``Session.register`` over an already opened App (a batch worker's)."""

    def __init__(self, app):
        self._app = app

    @property
    def config(self) -> dict:
        return self._app.config

    @property
    def provenance(self) -> dict:
        return self._app.provenance

    def register(self, query, refer, *, paths=None):
        from ..api import Registration
        from ..outputs import result_json

        raw = self._app.registrar.register_images(query, refer)
        info = result_json(raw, *(paths or (None, None)), self._app.provenance)
        return Registration(info, raw, (query, refer), self._app.config)


def _row(job: SeriesJob, status: str, reason: str, seconds: float) -> dict:
    row = {c: "" for c in SERIES_COLUMNS}
    row.update(id=job.id, status=status, reason=" ".join(str(reason).split()), images=len(job.images),
               seconds=f"{seconds:.4f}")
    return row


def _thumb(src, path: Path) -> None:
    img = cv2.imread(str(src)) if not hasattr(src, "shape") else src
    if img is None:
        return
    s = THUMB_SIDE / max(img.shape[:2])
    small = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                       interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), small, [cv2.IMWRITE_JPEG_QUALITY, 85])


def process_series(app, job: SeriesJob, pictures: str = "full", dest: Path | None = None) -> PairOutput:
    """Register one series with an opened App and write its folder; never raises for a bad series.

    ``dest`` None: a scratch folder whose files come back as bytes (relative names, Ray workers).
    """
    from ..image_io import ImageReadError
    from .core import register_series
    from .inputs import SeriesImage, SeriesInputError

    t0 = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="superretina-series-")) if dest is None else None
    folder = scratch or Path(dest)
    if scratch is None:
        shutil.rmtree(folder, ignore_errors=True)
    try:
        try:
            described = [SeriesImage(Path(p).stem, Path(p), (job.visits[k] or None) if job.visits else None,
                                     (job.dates[k] or None) if job.dates else None,
                                     (job.fields[k] or None) if job.fields else None)
                         for k, p in enumerate(job.images)]
            s = register_series(described, session=AppSession(app))
        except (ImageReadError, SeriesInputError, OSError) as exc:
            return PairOutput(_row(job, "error", str(exc), time.perf_counter() - t0))
        except Exception as exc:  # noqa: BLE001 - one series' failure must not stop the batch
            return PairOutput(_row(job, "error", f"{type(exc).__name__}: {exc}", time.perf_counter() - t0))
        s.annotate("batch", {"id": job.id, "worker": f"{socket.gethostname()}:{os.getpid()}"})
        s.save(folder, pictures=pictures != "none")
        if pictures != "none":
            _thumb(folder / "montage.png", folder / "thumb_montage.jpg")
            _thumb(folder / "aligned" / next(iter(sorted(p.name for p in (folder / "aligned").glob("*.png")))),
                   folder / "thumb_flicker.jpg")
        d = s.to_json()
        inn = len(s.images) - len(s.unconnected)
        status = "registered" if inn >= 2 else "failed"
        reason = ("" if not s.unconnected else "unconnected: " + ", ".join(d["unconnected"]))
        row = _row(job, status, reason, time.perf_counter() - t0)
        row.update(in_frame=inn, unconnected=len(s.unconnected), reference=d["reference"]["name"],
                   transform=d["model_choice"]["returned"], pairs_registered=d["pairs_registered"],
                   pairs_all=d["pairs_all"], chained_median_px=d["refinement"].get("initial_median_px") or "",
                   refined_median_px=d["refinement"].get("refined_median_px") or "")
        files = ({str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
                 if scratch else {})
        return PairOutput(row, files)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def run_series_batch(jobs: Sequence[SeriesJob], out: Path, engine, pictures: str = "full", restart: bool = False,
                     progress: bool = True) -> dict:
    """Register every series not already finished with the same image files and setup.

    The pair batch's store, setup guard, summary.json and report, with one row per series
    (``SERIES_COLUMNS``) and folders under ``OUT/series/``.
    """
    import json
    import sys

    from tqdm import tqdm

    from ..batch.fingerprint import inputs_sha, setup_sha
    from ..batch.runner import summarise
    from ..batch.store import ResultStore, check_setup

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    setup = {**engine.setup(pictures), "unit": "series"}
    key = setup_sha(setup)
    columns = [*SERIES_COLUMNS, "inputs_sha", "setup_sha"]
    store = ResultStore(out / "summary.csv", columns, "id")
    old = {} if restart else store.load()
    if restart:
        shutil.rmtree(out / "series", ignore_errors=True)
    check_setup(old, setup, out / "run.json", out)
    shutil.rmtree(out / "series" / ".partial", ignore_errors=True)
    (out / "summary.json").unlink(missing_ok=True)
    wanted = {j.id: j for j in jobs}
    keep, todo = [], []
    for job in jobs:
        row = old.get(job.id)
        if row and row["status"] != "error" and row["inputs_sha"] == inputs_sha(*job.images):
            keep.append(row)
        else:
            todo.append(job)
    keep += [r for sid, r in old.items() if sid not in wanted]
    store.open(keep, columns)
    bar = tqdm(total=len(todo), unit="series", disable=not progress, desc=f"series ({engine.name})",
               dynamic_ncols=True, file=sys.stderr)
    dest_for = (lambda job: out / "series" / ".partial" / job.id) if engine.name == "local" else (lambda job: None)
    n_new, t0 = 0, time.perf_counter()
    try:
        for job, output in engine.map(todo, pictures, dest_for, work="series"):
            _commit(out, job, output, store, key)
            n_new += 1
            bar.update(1)
    finally:
        bar.close()
        store.close()
    wall = time.perf_counter() - t0
    rows = [r for sid, r in store.load().items() if sid in wanted]
    run = {"engine": engine.name, "workers": engine.workers, "new_series": n_new,
           "reused_series": len(jobs) - len(todo), "wall_seconds": round(wall, 3), "interrupted": False}
    summary = {**summarise(rows, setup, run), "produced_by": "superretina batch (series)", "series": len(rows)}
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, out / "summary.json")
    from ..report import build_report
    build_report(out)
    return summary


def _commit(out: Path, job: SeriesJob, output: PairOutput, store, setup_key: str) -> None:
    from ..batch.fingerprint import inputs_sha

    partial = out / "series" / ".partial" / job.id
    for name, data in output.files.items():           # Ray: relative names, aligned/ included
        p = partial / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    final = out / "series" / job.id
    if final.is_symlink() or final.is_file():
        final.unlink()
    elif final.exists():
        shutil.rmtree(final)
    if partial.is_dir():
        os.replace(partial, final)
    store.write({**output.row, "inputs_sha": inputs_sha(*job.images), "setup_sha": setup_key})
