"""Issue 20.7 and 20.3 (report): `report DIR` on hostile folders.

The run folder is written here in the batch layout the report reads (summary.csv with the
batch header, carried columns after setup_sha), so each case runs in milliseconds without a model.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from superretina.batch.runner import STORE_COLUMNS
from superretina.report import build_report
from superretina.report.build import ReportError
from tests.model_fixtures import assert_one_line_error, cli_env, run_cli

HOSTILE = "<!--<script>"


def _run_folder(out: Path, extra: str = "patient") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "summary.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, STORE_COLUMNS + [extra], restval="")
        w.writeheader()
        w.writerow({"id": "p1", "query": "a.jpg", "refer": "b.jpg", "status": "registered", "inliers": "40",
                    "matches": "50", "seconds": "1.5", extra: "</script><script>alert(1)</script>"})
        w.writerow({"id": "p2", "query": "c.jpg", "refer": "d.jpg", "status": "error",
                    "reason": "<!-- comment", extra: "x"})
    return out


def _meta(page: str) -> dict:
    m = re.search(r"<script>const SR_META = (.*?); const SR_ROWS = \[\];</script>", page, re.S)
    assert m, "the inline meta script is not intact"
    return json.loads(m.group(1)), m.group(1)


def test_carried_column_named_like_a_comment_cannot_break_the_inline_script(tmp_path):
    out = _run_folder(tmp_path / "run", extra=HOSTILE)
    page = build_report(out).read_text()
    meta, text = _meta(page)
    assert "<" not in text                        # no "<!--", "<script", "</" inside the script element
    assert [HOSTILE, HOSTILE, False] in meta["columns"]   # and JSON gives the name back unchanged
    rows = (out / "report" / "rows-000.js").read_text()
    assert "<" not in rows and "</script>" in json.loads(rows[len("SR_ROWS.push(..."):-3])[1][1]


@pytest.mark.parametrize("name, content", [("summary.json", "[1, 2]"), ("summary.json", '"text"'),
                                           ("run.json", "[]")])
def test_non_object_summary_or_run_json_is_one_line(tmp_path, name, content):
    out = _run_folder(tmp_path / "run")
    (out / name).write_text(content)
    with pytest.raises(ReportError, match=f"{name}: expected a JSON object"):
        build_report(out)
    assert_one_line_error(run_cli("report", out), name, "expected a JSON object")


def _unprivileged() -> list[str]:
    """Command prefix: as root (who writes anywhere), run as nobody so that the folder's mode counts."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: a read-only folder cannot be made here")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_read_only_folder_says_so(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="sr-ro-"))   # under /tmp, reachable by nobody
    try:
        os.chmod(base, 0o755)
        out = _run_folder(base / "run")
        build_report(out)                             # a report is there from before
        for p in [out, *out.rglob("*")]:
            os.chmod(p, 0o555 if p.is_dir() else 0o444)
        proc = subprocess.run([*_unprivileged(), sys.executable, "-m", "superretina.cli", "report", str(out)],
                              cwd=base, env=cli_env(), capture_output=True, text=True, timeout=120)
        line = assert_one_line_error(proc, "cannot write the report", "Permission denied")
        assert "File exists" not in line
    finally:
        for p in [base, *base.rglob("*")]:
            if p.is_dir():
                os.chmod(p, 0o755)
        shutil.rmtree(base)


def test_links_in_the_folder_are_replaced_not_followed(tmp_path):
    out = _run_folder(tmp_path / "run")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    (victim / "index.html").write_text("precious")
    (out / "report").symlink_to(victim, target_is_directory=True)      # a linked report/ folder
    (out / "index.html.tmp").symlink_to(victim / "index.html")         # the names issue 20 planted
    (out / "index.html").symlink_to(victim / "index.html")
    build_report(out)
    assert (victim / "keep.txt").read_text() == "precious" and sorted(os.listdir(victim)) == ["index.html", "keep.txt"]
    assert (victim / "index.html").read_text() == "precious"
    assert not (out / "report").is_symlink() and (out / "report" / "rows-000.js").is_file()
    assert not (out / "index.html").is_symlink() and "SR_META" in (out / "index.html").read_text()
