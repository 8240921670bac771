"""Resumable result rows: an append-only CSV, each row flushed and fsynced as it finishes.

Killed at any point (SIGKILL included), the file holds every finished row plus at most one
half-written last line, which :meth:`ResultStore.load` drops. On reopening, the kept rows are
rewritten to a temporary file that atomically replaces the old one, so the store never has
duplicates and never appends to a damaged tail. Every row carries ``setup_sha`` (what produced
it); the run's full setup description is kept beside it in ``run.json``, so that a rerun with
another method, configuration, pipeline or model is refused with the names of what changed.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Sequence

from ..files import InputFileError, read_regular
from .fingerprint import setup_differences, setup_sha

MAX_STORE_BYTES = 8 << 30   # millions of rows; a bigger "results file" is not ours


class StoreError(ValueError):
    """The store cannot be reused as asked (other tool, other setup): one line, exit 2."""


class ResultStore:
    """Rows keyed by ``key``, in a CSV whose header starts with ``columns``.

    Parameters
    ----------
    path : Path
        The CSV file (created on :meth:`open`).
    columns : sequence of str
        Required columns, in order; ``key`` and ``setup_sha`` must be among them. The file may
        have more columns after them (e.g. carried-through ones).
    key : str
        Column identifying a pair.
    """

    def __init__(self, path: Path, columns: Sequence[str], key: str):
        self.path = Path(path)
        self.columns = list(columns)
        self.key = key
        self._f = None
        self._w = None
        self._header: list[str] = []

    def load(self) -> dict[str, dict]:
        """Finished rows by key (strings as written; a later row for a key replaces an earlier one).

        Raises StoreError when the file exists with another header (an unrelated file, or one
        written by a version that did not record its setup).
        """
        if not self.path.exists():
            return {}
        try:  # a regular file (a FIFO planted in --out would block the run)
            text = read_regular(self.path, MAX_STORE_BYTES, "results file")[0].decode("utf-8", errors="replace")
        except (OSError, InputFileError) as exc:
            raise StoreError(f"{self.path}: {getattr(exc, 'strerror', None) or exc}; rerun with --restart "
                             "to discard it, or use another --out") from None
        if text and not text.endswith("\n"):  # the last line was cut by a kill
            text = text[: text.rfind("\n") + 1]
        if not text.strip():
            return {}
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        if header[: len(self.columns)] != self.columns:
            missing = [c for c in self.columns if c not in header]
            raise StoreError(f"{self.path}: not a results file of this version"
                             + (f" (no {', '.join(missing[:3])} column)" if missing else " (other columns)")
                             + "; its rows cannot be checked for reuse: rerun with --restart to discard them, "
                               "or use another --out")
        rows = {}
        for rec in reader:
            if None in rec or None in rec.values() or not rec.get(self.key):
                continue  # damaged (wrong field count)
            rows[rec[self.key]] = rec
        return rows

    def open(self, keep: Sequence[dict], header: Sequence[str]) -> None:
        """Rewrite the file with only ``keep`` (atomically, never through a link), then append from here on."""
        from ..outputs import write_file

        self._header = list(header)
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, self._header, extrasaction="ignore", restval="")
        w.writeheader()
        for row in keep:
            w.writerow(row)
        write_file(self.path, buf.getvalue().encode("utf-8"), fsync=True)
        # O_NOFOLLOW: a link planted at the name since the rename is refused, not written through
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        self._f = os.fdopen(fd, "a", newline="", encoding="utf-8")
        self._w = csv.DictWriter(self._f, self._header, extrasaction="ignore", restval="")

    def write(self, row: dict) -> None:
        try:
            self._w.writerow(row)
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as exc:  # disk full: name the file
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from None

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def check_setup(rows: dict[str, dict], setup: dict, run_json: Path, where: Path) -> None:
    """Refuse rows made with another setup; record ``setup`` in ``run_json`` otherwise.

    Raises
    ------
    StoreError
        Some row's ``setup_sha`` is not this setup's; the message names the components that
        differ (from ``run_json``, the setup of the earlier run) and the way out (--restart).
    """
    key = setup_sha(setup)
    foreign = [r for r in rows.values() if r.get("setup_sha") != key]
    if foreign:
        try:
            old = json.loads(read_regular(run_json, 16 << 20, "run.json")[0])["setup"]
            diffs = setup_differences(old, setup)
            if "config_sha" in diffs:  # name the files too (the sha says that, not which)
                diffs.insert(diffs.index("config_sha"), "config")
            changed = ", ".join(f"{k} {old.get(k)!r} → {setup.get(k)!r}" for k in diffs)
        except (OSError, ValueError, KeyError, TypeError):
            changed = "the earlier setup is not recorded"
        raise StoreError(f"{where}: {len(foreign)} finished row(s) were made with another setup ({changed}); "
                         "refusing to mix results: rerun with --restart to discard them, or use another --out")
    from ..outputs import write_file

    write_file(Path(run_json), json.dumps({"setup": setup, "setup_sha": key}, indent=1).encode())
