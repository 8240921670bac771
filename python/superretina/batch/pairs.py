"""Reading a list of pairs (PAIRS.csv) into jobs.

Columns: ``query`` and ``refer`` (image paths, relative to the CSV's folder or absolute), optional
``id`` (default: the 1-based row number) and any others, which are carried through to the
summary unchanged. An id names the pair's output folder, so it must be a plain file name.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..files import InputFileError, read_regular

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
MAX_PAIRS_BYTES = 256 << 20   # 2 million rows of ~130 bytes; anything larger is refused unread


class BatchInputError(ValueError):
    """A problem with the pair list or the output folder: printed as one line, exit 2."""


@dataclass(frozen=True)
class PairJob:
    """One pair to register.

    Attributes
    ----------
    id : str
        Unique, file-name safe; the output folder is ``OUT/pairs/<id>/``.
    query, refer : Path
        Resolved image paths (they may not exist: a missing file becomes an ``error`` row).
    query_text, refer_text : str
        The paths as written in the CSV (reported in the summary).
    extra : dict
        The row's other columns, carried through.
    """

    id: str
    query: Path
    refer: Path
    query_text: str
    refer_text: str
    extra: dict = field(default_factory=dict)


def read_list_text(path: Path, expected: str = "a CSV file with columns query,refer") -> str:
    """The text of a batch list: a regular file of at most ``MAX_PAIRS_BYTES`` (a FIFO would block,
    /dev/zero would fill the memory), UTF-8; every failure a one-line :class:`BatchInputError`."""
    try:
        raw, _ = read_regular(path, MAX_PAIRS_BYTES, "pair list")
        return raw.decode("utf-8-sig")
    except FileNotFoundError:
        raise BatchInputError(f"{path}: pair list not found") from None
    except InputFileError as exc:
        raise BatchInputError(f"{path}: {exc} ({expected})") from None
    except UnicodeDecodeError:
        raise BatchInputError(f"{path}: not UTF-8 text, expected {expected}") from None
    except OSError as exc:
        raise BatchInputError(f"{path}: cannot be read ({exc.strerror})") from None


def read_pairs(path: str | Path, text: str | None = None) -> tuple[list[PairJob], list[str]]:
    """Read PAIRS.csv (``text``: its content, when the caller has read it with :func:`read_list_text`);
    returns (jobs in file order, names of the carried-through columns).

    Raises
    ------
    BatchInputError
        Unreadable file, no header, a missing ``query``/``refer`` column, an empty path,
        a duplicate or unsafe id; the message names the file, the line and what was expected.
    """
    path = Path(path)
    # The csv module splits the records (newline=''): a quoted cell keeps its line breaks, and
    # U+2028 or a form feed inside a cell does not start a row (str.splitlines split on both).
    reader = csv.DictReader(io.StringIO(read_list_text(path) if text is None else text, newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise BatchInputError(f"{path}: line 1: not CSV ({exc})") from None
    missing = [c for c in ("query", "refer") if c not in header]
    if missing:
        raise BatchInputError(f"{path}: missing column(s) {', '.join(missing)}; expected a header line with "
                              f"query,refer[,id,...] (got {','.join(header) or 'nothing'})")
    if len(set(header)) != len(header):
        raise BatchInputError(f"{path}: duplicate column names in the header ({','.join(header)})")
    reader.fieldnames = header
    extra_cols = [c for c in header if c not in ("id", "query", "refer")]
    base = path.resolve().parent
    jobs, seen = [], {}
    for n, rec in enumerate(_records(reader, path), start=1):
        line = reader.line_num   # where the record ends (a quoted cell may span lines)
        if None in rec:
            raise BatchInputError(f"{path}: line {line} has more fields than the header")
        rec = {k: (v or "").strip() for k, v in rec.items()}
        if not any(rec.values()):
            continue
        pid = rec.get("id") or str(n)
        if not _SAFE_ID.match(pid) or pid in (".", ".."):
            raise BatchInputError(f"{path}: line {line}: id {pid!r} must be 1-128 letters, digits or ._+- "
                                  "(it names the pair's output folder)")
        if pid in seen:
            raise BatchInputError(f"{path}: line {line}: id {pid!r} repeats line {seen[pid]}; ids must be unique")
        seen[pid] = line
        for col in ("query", "refer"):
            if not rec[col]:
                raise BatchInputError(f"{path}: line {line}: empty {col} path")
        jobs.append(PairJob(pid, base / rec["query"], base / rec["refer"], rec["query"], rec["refer"],
                            {c: rec[c] for c in extra_cols}))
    if not jobs:
        raise BatchInputError(f"{path}: no pairs (a header line and at least one row are expected)")
    return jobs, extra_cols


def _records(reader: csv.DictReader, path: Path):
    """The reader's records; a malformed one (a NUL byte, ...) is a BatchInputError naming the line."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise BatchInputError(f"{path}: line {reader.line_num + 1}: not CSV ({exc})") from None
