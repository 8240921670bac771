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

from .fingerprint import setup_differences, setup_sha


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
        text = self.path.read_text(encoding="utf-8", errors="replace")
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
        """Rewrite the file with only ``keep`` (atomically), then append from here on."""
        self._header = list(header)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, self._header, extrasaction="ignore", restval="")
            w.writeheader()
            for row in keep:
                w.writerow(row)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._f = open(self.path, "a", newline="", encoding="utf-8")
        self._w = csv.DictWriter(self._f, self._header, extrasaction="ignore", restval="")

    def write(self, row: dict) -> None:
        self._w.writerow(row)
        self._f.flush()
        os.fsync(self._f.fileno())

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
            old = json.loads(Path(run_json).read_text())["setup"]
            diffs = setup_differences(old, setup)
            if "config_sha" in diffs:  # name the files too (the sha says that, not which)
                diffs.insert(diffs.index("config_sha"), "config")
            changed = ", ".join(f"{k} {old.get(k)!r} → {setup.get(k)!r}" for k in diffs)
        except (OSError, ValueError, KeyError, TypeError):
            changed = "the earlier setup is not recorded"
        raise StoreError(f"{where}: {len(foreign)} finished row(s) were made with another setup ({changed}); "
                         "refusing to mix results: rerun with --restart to discard them, or use another --out")
    tmp = Path(run_json).with_name(Path(run_json).name + ".tmp")
    tmp.write_text(json.dumps({"setup": setup, "setup_sha": key}, indent=1))
    os.replace(tmp, run_json)
