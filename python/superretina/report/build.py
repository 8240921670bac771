"""Build ``OUT/index.html`` for a batch run (summary.csv) or a FIRE run (pairs.csv).

The page itself is small (~10 KB with its inline SVG plots); the rows go into
``OUT/report/rows-NNN.js`` files of ``CHUNK`` rows each, loaded as plain scripts (browsers refuse ``fetch`` of ``file://`` URLs),
and the table shows one page of rows at a time, so only that page's thumbnails load. At 10,000
rows the data is about 1 MB in ten files. Works on finished and interrupted runs alike: all it
reads is the rows file (and summary.json, run.json, success_curve.png when present).
Each row links its pair's view page (``pairs/<id>/view.html``, written by the batch worker:
``report.pair_view``) when the pair has one.
"""
from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from .pair_view import VIEW_PAGE
from .plots import report_plots
from ..batch.outfolder import remove_tree
from ..files import InputFileError, open_regular, read_regular
from ..outputs import write_file

CHUNK = 2000
# Thumbnails a row can have (thumb_<name>): registered pairs the first two, failed ones the matches
PICTURES = ("checkerboard.jpg", "result.jpg", "match_result.jpg")
STATUS_RANK = {"error": 0, "failed": 1, "inaccurate": 2, "registered": 3, "acceptable": 3}
_TEMPLATE = Path(__file__).with_name("template.html")

# (key in the rows file, label shown, numeric?)
BATCH_COLUMNS = [("id", "id", False), ("status", "status", False), ("reason", "reason", False),
                 ("confidence", "confidence", True),
                 ("inliers", "inliers", True), ("matches", "matches", True),
                 ("inlier_rate_pct", "inlier rate (%)", True), ("transform", "transform", False),
                 ("residual_median_px", "median residual (px)", True), ("within_5px_pct", "within 5 px (%)", True),
                 ("seconds", "seconds", True)]
SERIES_COLUMNS = [("id", "series", False), ("status", "status", False), ("reason", "reason", False),
                  ("images", "images", True), ("in_frame", "in frame", True), ("reference", "reference", False),
                  ("transform", "transform", False), ("pairs_registered", "pairs registered", True),
                  ("refined_median_px", "median residual (px)", True), ("seconds", "seconds", True)]
FIRE_COLUMNS = [("pair", "pair", False), ("category", "category", False), ("status", "status", False),
                ("reason", "reason", False), ("confidence", "confidence", True),
                ("mean_error", "mean error (px)", True),
                ("max_error", "max error (px)", True), ("inliers", "inliers", True),
                ("inlier_rate", "inlier rate", True), ("seconds", "seconds", True)]


class ReportError(ValueError):
    """The folder is not a run's output folder: one line, exit 2."""


def _header_starts(path: Path, prefix: str) -> bool:
    try:   # a regular file only: a FIFO planted in the folder would block
        fd, _ = open_regular(path)
    except (OSError, InputFileError):
        return False
    with open(fd, encoding="utf-8", errors="replace") as f:
        return f.readline().startswith(prefix)


def _json_object(path: Path) -> dict:
    """summary.json / run.json as a dict ({} when absent or not JSON); ReportError when not an object."""
    try:
        value = json.loads(read_regular(path, 64 << 20, path.name)[0])
    except FileNotFoundError:
        return {}
    except (OSError, InputFileError, ValueError, RecursionError):
        return {}
    if not isinstance(value, dict):
        raise ReportError(f"{path}: expected a JSON object (a run's {path.name}), got {type(value).__name__}")
    return value


def _script_json(value, separators=(",", ":")) -> str:
    """JSON for a <script>: every ``<`` as ``\\u003c``, so no text in it (``</script>``, ``<!--``) can
    end the script or switch the HTML parser into a comment state; JSON reads it back unchanged."""
    return json.dumps(value, separators=separators).replace("<", "\\u003c")


def _read_rows(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8", errors="replace")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows, seen = [], {}
    for rec in csv.DictReader(io.StringIO(text)):
        if None in rec or None in rec.values():
            continue
        rows.append(rec)
    for i, r in enumerate(rows):  # a later row for the same pair replaces an earlier one
        seen[r.get("id") or r.get("pair")] = i
    return [rows[i] for i in sorted(seen.values())]


def _cell(value: str, numeric: bool):
    if not numeric:
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if v >= 1e6 else round(v, 4)  # 1e6 = FIRE's "failed" error: shown empty


def build_report(out: str | Path) -> Path:
    """Write ``out/index.html`` (and ``out/report/``); returns the page's path."""
    out = Path(out)
    units = "pairs"
    if _header_starts(out / "summary.csv", "id,query,refer,status"):
        kind, rows_path, columns = "batch", out / "summary.csv", BATCH_COLUMNS
    elif _header_starts(out / "summary.csv", "id,status,reason,images,"):     # superretina.series.batch
        kind, rows_path, columns, units = "series", out / "summary.csv", SERIES_COLUMNS, "series"
    elif _header_starts(out / "pairs.csv", "pair,category,"):
        kind, rows_path, columns = "fire", out / "pairs.csv", FIRE_COLUMNS
    else:
        raise ReportError(f"{out}: no summary.csv (batch) or pairs.csv (fire) here; expected the --out folder of a run")
    rows = _read_rows(rows_path)
    with open(rows_path, encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), [])
    if kind == "batch":  # the pair list's own columns (carried through after setup_sha), after the id
        extra = header[header.index("setup_sha") + 1:] if "setup_sha" in header else []
        columns = columns[:1] + [(c, c, False) for c in extra] + columns[1:]
    key = columns[0][0]
    rows.sort(key=lambda r: (STATUS_RANK.get(r.get("status", ""), 9), r.get(key, "")))  # failures first
    data = []
    for r in rows:
        pid = r.get(key, "")
        folder = out / units / pid
        # [thumbnail, what it links to: the full-size picture when there is one]
        if kind == "series":    # the montage, and the flicker page behind the first aligned image
            thumbs = [[f"series/{pid}/thumb_{t}.jpg", f"series/{pid}/{full}"]
                      for t, full in (("montage", "montage.png"), ("flicker", "flicker.html"))
                      if (folder / f"thumb_{t}.jpg").is_file()]
        else:
            thumbs = [[f"pairs/{pid}/thumb_{name}", f"pairs/{pid}/{name if (folder / name).is_file() else 'thumb_' + name}"]
                      for name in PICTURES if (folder / f"thumb_{name}").is_file()]
        data.append([_cell(r.get(c, ""), num) for c, _, num in columns]
                    + [thumbs, f"{units}/{pid}/" if folder.is_dir() else "",
                       f"{units}/{pid}/{VIEW_PAGE}" if (folder / VIEW_PAGE).is_file() else ""])
    rep = out / "report"
    chunks = []
    try:  # a link at report/ is removed, not followed; every file through outputs.write_file
        remove_tree(rep)
        rep.mkdir()
        for i in range(0, max(len(data), 1), CHUNK):
            name = f"rows-{i // CHUNK:03d}.js"
            write_file(rep / name, ("SR_ROWS.push(...%s);\n" % _script_json(data[i:i + CHUNK])).encode())
            chunks.append(name)
    except OSError as exc:
        raise ReportError(f"{exc.filename or rep}: cannot write the report ({exc.strerror or exc}); "
                          "the folder must be writable") from None
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.get("status", "")] = counts.get(r.get("status", ""), 0) + 1
    summary = _json_object(out / "summary.json")
    setup = summary.get("setup")
    if setup is None:
        setup = _json_object(out / "run.json").get("setup")
    meta = {"kind": kind, "title": f"{kind} run: {out.resolve().name}", "pairs": len(rows), "unit": units,
            "counts": counts,
            "columns": [[c, label, num] for c, label, num in columns],
            "lines": summary.get("summary_lines", []) + ([summary["set_line"]] if summary.get("set_line") else []),
            "setup": setup or {"method": summary.get("method")} if (setup or summary.get("method")) else None,
            "run": summary.get("this_run"),
            "curve": "success_curve.png" if (out / "success_curve.png").is_file() else None,
            "complete": bool(summary)}
    page = _TEMPLATE.read_text()
    page = page.replace("__TITLE__", html.escape(meta["title"]))
    page = page.replace("__PLOTS__", report_plots(rows, kind, header))   # inline SVG, its text escaped
    page = page.replace("__META__", _script_json(meta, (", ", ": ")))
    page = page.replace("__CHUNKS__", "\n".join(f'<script src="report/{c}"></script>' for c in chunks))
    try:
        return write_file(out / "index.html", page.encode())
    except OSError as exc:
        raise ReportError(f"{out / 'index.html'}: cannot write the report ({exc.strerror or exc})") from None
