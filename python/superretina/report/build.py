"""Build ``OUT/index.html`` for a batch run (summary.csv) or a FIRE run (pairs.csv).

The page itself is small (~10 KB); the rows go into ``OUT/report/rows-NNN.js`` files of
``CHUNK`` rows each, loaded as plain scripts (browsers refuse ``fetch`` of ``file://`` URLs),
and the table shows one page of rows at a time, so only that page's thumbnails load. At 10,000
rows the data is about 1 MB in ten files. Works on finished and interrupted runs alike: all it
reads is the rows file (and summary.json, run.json, success_curve.png when present).
"""
from __future__ import annotations

import csv
import html
import io
import json
import os
import shutil
from pathlib import Path

CHUNK = 2000
STATUS_RANK = {"error": 0, "failed": 1, "inaccurate": 2, "registered": 3, "acceptable": 3}
_TEMPLATE = Path(__file__).with_name("template.html")

# (key in the rows file, label shown, numeric?)
BATCH_COLUMNS = [("id", "id", False), ("status", "status", False), ("reason", "reason", False),
                 ("confidence", "confidence", True),
                 ("inliers", "inliers", True), ("matches", "matches", True),
                 ("inlier_rate_pct", "inlier rate (%)", True), ("transform", "transform", False),
                 ("residual_median_px", "median residual (px)", True), ("within_5px_pct", "within 5 px (%)", True),
                 ("seconds", "seconds", True)]
FIRE_COLUMNS = [("pair", "pair", False), ("category", "category", False), ("status", "status", False),
                ("reason", "reason", False), ("confidence", "confidence", True),
                ("mean_error", "mean error (px)", True),
                ("max_error", "max error (px)", True), ("inliers", "inliers", True),
                ("inlier_rate", "inlier rate", True), ("seconds", "seconds", True)]


class ReportError(ValueError):
    """The folder is not a run's output folder: one line, exit 2."""


def _header_starts(path: Path, prefix: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().startswith(prefix)
    except OSError:
        return False


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
    if _header_starts(out / "summary.csv", "id,query,refer,status"):
        kind, rows_path, columns = "batch", out / "summary.csv", BATCH_COLUMNS
    elif _header_starts(out / "pairs.csv", "pair,category,"):
        kind, rows_path, columns = "fire", out / "pairs.csv", FIRE_COLUMNS
    else:
        raise ReportError(f"{out}: no summary.csv (batch) or pairs.csv (fire) here; expected the --out folder of a run")
    rows = _read_rows(rows_path)
    if kind == "batch":  # the pair list's own columns (carried through after setup_sha), after the id
        with open(rows_path, encoding="utf-8", errors="replace") as f:
            header = next(csv.reader(f), [])
        extra = header[header.index("setup_sha") + 1:] if "setup_sha" in header else []
        columns = columns[:1] + [(c, c, False) for c in extra] + columns[1:]
    key = columns[0][0]
    rows.sort(key=lambda r: (STATUS_RANK.get(r.get("status", ""), 9), r.get(key, "")))  # failures first
    data = []
    for r in rows:
        pid = r.get(key, "")
        folder = out / "pairs" / pid
        # [thumbnail, what it links to: the full-size picture when there is one]
        thumbs = [[f"pairs/{pid}/thumb_{name}", f"pairs/{pid}/{name if (folder / name).is_file() else 'thumb_' + name}"]
                  for name in ("checkerboard.jpg", "result.jpg") if (folder / f"thumb_{name}").is_file()]
        data.append([_cell(r.get(c, ""), num) for c, _, num in columns]
                    + [thumbs, f"pairs/{pid}/" if folder.is_dir() else ""])
    rep = out / "report"
    shutil.rmtree(rep, ignore_errors=True)
    rep.mkdir()
    chunks = []
    for i in range(0, max(len(data), 1), CHUNK):
        name = f"rows-{i // CHUNK:03d}.js"
        (rep / name).write_text("SR_ROWS.push(...%s);\n" % json.dumps(data[i:i + CHUNK], separators=(",", ":")))
        chunks.append(name)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.get("status", "")] = counts.get(r.get("status", ""), 0) + 1
    summary = {}
    if (out / "summary.json").is_file():
        try:
            summary = json.loads((out / "summary.json").read_text())
        except ValueError:
            summary = {}
    setup = summary.get("setup")
    if setup is None and (out / "run.json").is_file():
        try:
            setup = json.loads((out / "run.json").read_text()).get("setup")
        except ValueError:
            setup = None
    meta = {"kind": kind, "title": f"{kind} run: {out.resolve().name}", "pairs": len(rows), "counts": counts,
            "columns": [[c, label, num] for c, label, num in columns],
            "lines": summary.get("summary_lines", []) + ([summary["set_line"]] if summary.get("set_line") else []),
            "setup": setup or {"method": summary.get("method")} if (setup or summary.get("method")) else None,
            "run": summary.get("this_run"),
            "curve": "success_curve.png" if (out / "success_curve.png").is_file() else None,
            "complete": bool(summary)}
    page = _TEMPLATE.read_text()
    page = page.replace("__TITLE__", html.escape(meta["title"]))
    page = page.replace("__META__", json.dumps(meta).replace("</", "<\\/"))
    page = page.replace("__CHUNKS__", "\n".join(f'<script src="report/{c}"></script>' for c in chunks))
    tmp = out / "index.html.tmp"
    tmp.write_text(page)
    os.replace(tmp, out / "index.html")
    return out / "index.html"
