"""The report (index.html) in a real browser: headless Chromium from Debian's package.

Rows and thumbnails load from the file system with no server, no image is broken, failures come
first, filtering, sorting and paging work, a 10,000-row run stays a small page, and a FIRE run
shows its success curve. Each row opens its pair view (full-resolution photographs and warped
query, flicker; screenshot out/test-artifacts/pair_view.png), and the distributions are drawn
at the top as inline SVG. A screenshot is saved to out/test-artifacts/report.png. Skipped with the
reason when /usr/bin/chromium is absent, except on CI (CI=true), where .ci/run installs it.
"""
import csv
import os
import shutil
from pathlib import Path

import pytest

from superretina.batch.engines import LocalEngine
from superretina.batch.pairs import read_pairs
from superretina.batch.runner import run_batch
from superretina.report import build_report
from tests.batch_fixtures import make_inputs, write_pairs
from tests.headless_chromium import CHROMIUM, Chromium
from tests.model_fixtures import PROJECT_ROOT, run_cli

if not os.access(CHROMIUM, os.X_OK):
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing on CI: .ci/run installs Debian's chromium package")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium; .ci/run does it on CI)",
                allow_module_level=True)

SCREENSHOT = PROJECT_ROOT / "out" / "test-artifacts" / "report.png"
IMAGES_SETTLED = ("Promise.all([...document.images].map(i => i.complete ? 0 : new Promise(r => "
                  "{ i.addEventListener('load', r); i.addEventListener('error', r); })))"
                  ".then(() => [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth]))")
ROWS = "[...document.querySelectorAll('#body tr')].map(tr => [...tr.children].map(td => td.textContent.trim()))"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("report")
    make_inputs(folder, shared_data)
    jobs, extra = read_pairs(write_pairs(folder / "pairs.csv"))
    engine = LocalEngine(folder / "fast.yaml", None, "local", jobs=2)
    try:
        run_batch(jobs, extra, folder / "out", engine, progress=False)
    finally:
        engine.close()
    return folder / "out"


@pytest.fixture(scope="module")
def browser():
    with Chromium(width=1280, height=1000) as b:
        yield b


def _open(browser, page: Path):
    browser.open(page.resolve().as_uri())
    browser.wait_for("document.body.dataset.ready === '1'")


def test_rows_and_thumbnails_load_with_no_broken_image(run_dir, browser):
    proc = run_cli("report", run_dir)          # rebuilt from the run's files, as a user would
    assert proc.returncode == 0 and "index.html" in proc.stdout, proc.stderr
    _open(browser, run_dir / "index.html")
    rows = browser.evaluate(ROWS)
    assert len(rows) == 5
    statuses = [r[2] for r in rows]
    assert statuses[:2] == ["error", "error"] and statuses[-2:] == ["registered", "registered"]  # failures first
    assert {r[0] for r in rows} == {"p1", "p2", "missing", "corrupt", "unrelated"}
    images = browser.evaluate(IMAGES_SETTLED)
    thumbs = [src for src, _ in images if "thumb_" in src]
    assert len(thumbs) >= 4                     # checkerboard and overlay of each registered pair
    assert [src for src, w in images if w == 0] == []   # no broken image
    assert browser.evaluate("document.querySelectorAll('#body a[href$=\"/\"]').length") == 3   # pair folders
    assert browser.failed_requests == [] and not [c for c in browser.console if c.startswith("exception")]
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.screenshot(SCREENSHOT)
    assert SCREENSHOT.stat().st_size > 20_000


def test_row_opens_its_pair_view_which_flickers_with_no_broken_image(run_dir, browser):
    _open(browser, run_dir / "index.html")
    links = dict(browser.evaluate("[...document.querySelectorAll('#body tr')].filter(tr => tr.querySelector('a.view'))"
                                  ".map(tr => [tr.children[0].textContent.trim(), tr.querySelector('a.view').href])"))
    assert {"p1", "p2"} <= set(links) and not {"missing", "corrupt"} & set(links)   # error rows have no view
    browser.open(links["p1"])
    browser.wait_for("document.body.dataset.ready === '1'")
    assert browser.evaluate("document.title") == "p1: registered"
    images = dict(browser.evaluate(IMAGES_SETTLED))
    assert [src for src, w in images.items() if w == 0] == [] and browser.evaluate("SR_VIEWER.broken") == []
    # full resolution: the reference and the warped query at the reference's size (570 x 600 here)
    assert images["view_reference.jpg"] == images["view_warped.jpg"] == 570
    visible = ("[...document.querySelectorAll('#world img')].filter(i => getComputedStyle(i).display !== 'none')"
               ".map(i => i.getAttribute('src'))[0]")
    browser.evaluate("document.getElementById('play').click()")
    seen = browser.evaluate("new Promise(r => { const s = []; const t = setInterval(() => {"
                            f" s.push({visible}); if (s.length === 30) {{ clearInterval(t); r(s); }} }}, 50); }})")
    browser.evaluate("SR_VIEWER.pause()")
    assert set(seen) == {"view_reference.jpg", "view_warped.jpg"} and sum(a != b for a, b in zip(seen, seen[1:])) >= 2
    numbers = dict(browser.evaluate("[...document.querySelectorAll('#info tr')].map(r => [...r.cells].map(c => c.textContent))"))
    assert numbers["status"] == "registered" and int(numbers["inliers"]) >= 8
    assert browser.failed_requests == [] and not [c for c in browser.console if c.startswith("exception")]
    assert browser.evaluate("document.documentElement.scrollWidth") <= 1280     # fits 1280 px
    browser.evaluate("SR_VIEWER.setMode('checker')")
    shot = SCREENSHOT.with_name("pair_view.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.screenshot(shot).stat().st_size > 20_000


def test_distributions_at_the_top_are_inline_svg(run_dir, browser):
    _open(browser, run_dir / "index.html")
    plots = browser.evaluate("[...document.querySelectorAll('#plots svg')].map(s => [s.getAttribute('aria-label'),"
                             " s.querySelectorAll('rect').length, s.textContent])")
    with open(run_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labels = [p[0] for p in plots]
    assert labels[-2:] == ["median residual, registered pairs (px)", "seconds per pair"]
    assert ("confidence (all pairs)" in labels) == ("confidence" in rows[0])   # when the run records one
    registered = sum(r["status"] == "registered" for r in rows)
    assert f"n = {registered}," in plots[-2][2] and f"n = {len(rows)}," in plots[-1][2]
    assert all(p[1] >= 1 for p in plots)
    assert browser.evaluate("document.documentElement.scrollWidth") <= 1280     # readable at 1280 px


def test_filter_sort_and_search(run_dir, browser):
    _open(browser, run_dir / "index.html")
    browser.evaluate("(() => { const s = document.getElementById('status'); s.value = 'registered';"
                     " s.dispatchEvent(new Event('change')); })()")
    assert [r[2] for r in browser.evaluate(ROWS)] == ["registered", "registered"]
    browser.evaluate("(() => { const s = document.getElementById('status'); s.value = '';"
                     " s.dispatchEvent(new Event('change'));"
                     " const q = document.getElementById('search'); q.value = 'not found';"
                     " q.dispatchEvent(new Event('input')); })()")
    assert [r[0] for r in browser.evaluate(ROWS)] == ["missing"]
    browser.evaluate("(() => { const q = document.getElementById('search'); q.value = '';"
                     " q.dispatchEvent(new Event('input'));"
                     " [...document.querySelectorAll('#head th')].find(th => th.textContent === 'seconds').click(); })()")
    head = browser.evaluate("[...document.querySelectorAll('#head th')].map(th => th.textContent)")
    assert head[:2] == ["id", "patient"]           # the pair list's own column, carried through
    secs = [float(r[head.index("seconds")]) for r in browser.evaluate(ROWS)]
    assert secs == sorted(secs)


def test_a_broken_thumbnail_is_detected(run_dir, browser, tmp_path):
    """The no-broken-image check can fail: a thumbnail deleted after the page was built."""
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "pairs" / "p1" / "thumb_result.jpg").unlink()
    _open(browser, copy / "index.html")
    broken = [src for src, w in browser.evaluate(IMAGES_SETTLED) if w == 0]
    assert broken == ["pairs/p1/thumb_result.jpg"]


def test_ten_thousand_rows_stay_a_small_paged_page(run_dir, browser, tmp_path):
    big = tmp_path / "big"
    shutil.copytree(run_dir, big)
    with open(run_dir / "summary.csv", newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    with open(big / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, header)
        w.writeheader()
        for i in range(10_000):
            w.writerow({**rows[i % len(rows)], "id": f"pair{i:05d}"})
    page = build_report(big)
    data = sorted((big / "report").glob("rows-*.js"))
    assert page.stat().st_size < 30_000 and len(data) == 5
    assert sum(p.stat().st_size for p in data) < 3_000_000
    _open(browser, page)
    assert len(browser.evaluate(ROWS)) == 50
    assert "of 200 (10000 rows)" in browser.evaluate("document.getElementById('page').textContent")
    browser.evaluate("document.getElementById('next').click()")
    assert "page 2 of 200" in browser.evaluate("document.getElementById('page').textContent")
    assert browser.evaluate("SR_ROWS.length") == 10_000


def test_fire_run_shows_its_success_curve(browser, tmp_path):
    from superretina.fire.evaluate import evaluate
    from superretina.fire.protocol import list_pairs
    from superretina.fire.sift import make_register_fn
    from superretina.fire.synth import make_synthetic_set

    make_synthetic_set(tmp_path / "set", ["skimage:retina"], pairs_per_image=3, size=384, seed=1, progress=False)
    evaluate(list_pairs(tmp_path / "set"), make_register_fn(), tmp_path / "out", progress=False, verbose=False,
             method="sift")
    page = build_report(tmp_path / "out")
    _open(browser, page)
    assert len(browser.evaluate(ROWS)) == 3
    images = dict(browser.evaluate(IMAGES_SETTLED))
    assert images["success_curve.png"] > 400
    assert "mAUC" in browser.evaluate("document.getElementById('lines').textContent")
