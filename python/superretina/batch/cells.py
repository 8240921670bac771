"""Text cells of summary.csv made safe to open in a spreadsheet, and the carried columns' names.

A cell starting with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return) is a formula to
Excel, LibreOffice and Google Sheets: a pair list's ``=HYPERLINK(...)`` or ``=cmd|' /C calc'!A0``
carried verbatim into summary.csv would run when a clinician opens it. Such a cell is written
with a leading apostrophe (``'=...``), which spreadsheets show as text; numbers (``-3.5``,
``+2``, ``-1e-05``) are left alone. Reading summary.csv back in a program: strip one leading
``'`` from a text cell that then starts with one of these characters.
"""
from __future__ import annotations

from typing import Sequence

from .pairs import BatchInputError

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    """``value`` with a leading ``'`` when it is text a spreadsheet would take as a formula."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)   # a number: a spreadsheet shows it as one
        return value
    except ValueError:
        return "'" + value


def neutralise_row(row: dict) -> dict:
    """A copy of ``row`` with every text cell neutralised (idempotent: ``'=x`` stays ``'=x``)."""
    return {k: neutralise(v) for k, v in row.items()}


def carried_names(extra_cols: Sequence[str], own: Sequence[str], where: str = "pair list") -> dict[str, str]:
    """Name in summary.csv of each carried column: its own, or ``in_<name>`` when summary.csv
    has a column of that name (``status`` → ``in_status``).

    Raises
    ------
    BatchInputError
        Two columns would get one name (``status`` and ``in_status`` both carried).
    """
    names: dict[str, str] = {}
    taken: dict[str, str] = {}
    for c in extra_cols:
        name = f"in_{c}" if c in own else c
        if name in taken:
            first = taken[name]
            ours = first if first in own else c
            raise BatchInputError(f"{where}: columns {first!r} and {c!r} would both be {name!r} in summary.csv "
                                  f"({ours!r} is a summary column, so a carried {ours!r} becomes {name!r}); "
                                  "rename one of them")
        taken[name] = c
        names[c] = name
    return names
