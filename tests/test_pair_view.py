"""The report's pair view (superretina.report.pair_view) and what the batch worker writes for it.

Real registrations of small photographs from ../shared/data (a registered pair, and a query of
noise that fails); the pictures are decoded back and compared with the pair API's own warp.
The page in a browser: tests/test_report_browser.py.
"""
import json
import os
import re
from urllib.parse import unquote

import cv2
import numpy as np
import pytest

from superretina.api import Session
from superretina.batch.engines import LocalEngine
from superretina.batch.pairs import read_pairs
from superretina.batch.runner import run_batch
from superretina.report.pair_view import MATCHES, QUERY, REFERENCE, VIEW_PAGE, WARPED, write_pair_view
from superretina.report import build_report
from tests.batch_fixtures import make_inputs, read_summary, write_pairs
from tests.headless_chromium import CHROMIUM, Chromium


def _page_data(page) -> dict:
    blob = re.search(r"const SR_VIEW = (.*?);</script>", page.read_text()).group(1)
    return json.loads(blob)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("pair_view")
    make_inputs(folder, shared_data)
    noise = np.random.default_rng(0).integers(0, 255, (600, 570, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / "noise.png"), noise)
    return folder


@pytest.fixture(scope="module")
def registrations(inputs):
    """{name: (Registration, query, refer)} for a registered pair and a failed one."""
    import yaml

    out = {}
    refer = cv2.imread(str(inputs / "example2.jpg"))
    with Session(yaml.safe_load((inputs / "fast.yaml").read_text())) as s:   # the batch tests' settings
        for name, qfile in (("ok", "example1.jpg"), ("failed", "noise.png")):
            query = cv2.imread(str(inputs / qfile))
            out[name] = (s.register(query, refer), query, refer)
    assert out["ok"][0].registered and not out["failed"][0].registered
    return out


def test_full_resolution_view_holds_the_photographs_and_the_api_warp(registrations, tmp_path):
    reg, query, refer = registrations["ok"]
    reg.save(tmp_path)
    written = write_pair_view(tmp_path, reg.to_json(), query, refer)
    assert [p.name for p in written] == [WARPED, REFERENCE, QUERY, VIEW_PAGE]
    ref_jpg, q_jpg, w_jpg = (cv2.imread(str(tmp_path / n)) for n in (REFERENCE, QUERY, WARPED))
    assert ref_jpg.shape == refer.shape and q_jpg.shape == query.shape and w_jpg.shape == refer.shape
    expected = reg.transform.warp(query)                 # the pair API's warp, at full resolution
    inside = expected.max(axis=2) > 20
    assert inside.mean() > 0.3
    assert np.abs(w_jpg.astype(int) - expected)[inside].mean() < 3       # JPEG error only
    assert np.abs(ref_jpg.astype(int) - refer).mean() < 3
    data = _page_data(tmp_path / VIEW_PAGE)
    assert [(x["label"], x["aligned"]) for x in data["layers"]] == [
        ("reference", True), ("query, warped", True), ("query photograph", False), ("matches", False)]
    assert all((tmp_path / unquote(x["src"])).is_file() for x in data["layers"])
    assert data["start"] == 0 and data["pair"] == [0, 1]
    info = dict(data["info"])
    assert info["status"] == "registered" and info["inliers"] == str(reg.quality["num_inliers"])
    assert "full resolution" in (tmp_path / VIEW_PAGE).read_text()


def test_grey_16_bit_photographs_make_an_8_bit_view(registrations, tmp_path):
    reg, query, refer = registrations["ok"]
    grey16 = [cv2.cvtColor(x, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257 for x in (query, refer)]
    write_pair_view(tmp_path, reg.to_json(), *grey16)
    ref = cv2.imread(str(tmp_path / REFERENCE), cv2.IMREAD_UNCHANGED)
    warped = cv2.imread(str(tmp_path / WARPED), cv2.IMREAD_UNCHANGED)
    assert ref.dtype == np.uint8 and ref.shape == refer.shape[:2] and warped.shape == refer.shape[:2]
    assert np.abs(ref.astype(int) - cv2.cvtColor(refer, cv2.COLOR_BGR2GRAY)).mean() < 3


def test_scaled_view_keeps_every_picture_within_max_side(registrations, tmp_path):
    reg, query, refer = registrations["ok"]
    reg.save(tmp_path)
    write_pair_view(tmp_path, reg.to_json(), query, refer, max_side=256)
    for name in (REFERENCE, QUERY, WARPED):
        assert max(cv2.imread(str(tmp_path / name)).shape[:2]) == 256, name
    assert (tmp_path / MATCHES).is_file()      # a scaled copy, since --thumbnails drops match_result.jpg
    assert "scaled to at most 256 px" in (tmp_path / VIEW_PAGE).read_text()
    assert _page_data(tmp_path / VIEW_PAGE)["layers"][-1]["src"] == MATCHES


def test_failed_pair_view_opens_on_its_matches_picture(registrations, tmp_path):
    reg, query, refer = registrations["failed"]
    reg.save(tmp_path)
    write_pair_view(tmp_path, reg.to_json(), query, refer)
    assert not (tmp_path / WARPED).exists()
    data = _page_data(tmp_path / VIEW_PAGE)
    labels = [x["label"] for x in data["layers"]]
    assert labels == ["reference", "query photograph", "matches"]
    assert data["start"] == 2 and data["layers"][2]["src"] == "match_result.jpg"
    assert dict(data["info"])["reason"] == reg.reason


@pytest.fixture(scope="module")
def thumbnail_run(inputs, tmp_path_factory):
    """A batch with --thumbnails over the registered pair and the failing one: its --out folder."""
    folder = tmp_path_factory.mktemp("thumbnail_run")
    pairs = write_pairs(folder / "pairs.csv", [("ok", str(inputs / "example1.jpg"), str(inputs / "example2.jpg")),
                                               ("noise", str(inputs / "noise.png"), str(inputs / "example2.jpg"))],
                        extra=None)
    engine = LocalEngine(inputs / "fast.yaml", None, "local", jobs=2)
    try:
        jobs, extra = read_pairs(pairs)
        run_batch(jobs, extra, folder / "out", engine, pictures="thumbnails", progress=False)
    finally:
        engine.close()
    return folder / "out"


def test_batch_with_thumbnails_writes_a_view_and_a_failed_row_thumbnail(thumbnail_run):
    by = {r["id"]: r for r in read_summary(thumbnail_run / "summary.csv")}
    assert by["ok"]["status"] == "registered" and by["noise"]["status"] == "failed"
    ok, noise = thumbnail_run / "pairs" / "ok", thumbnail_run / "pairs" / "noise"
    assert sorted(p.name for p in ok.iterdir()) == sorted(
        ["result.json", "thumb_checkerboard.jpg", "thumb_result.jpg", VIEW_PAGE, REFERENCE, WARPED, QUERY, MATCHES])
    assert sorted(p.name for p in noise.iterdir()) == sorted(
        ["result.json", "thumb_match_result.jpg", VIEW_PAGE, REFERENCE, QUERY, MATCHES])
    for folder in (ok, noise):                 # every picture the page names is there
        assert all((folder / unquote(x["src"])).is_file() for x in _page_data(folder / VIEW_PAGE)["layers"])


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} not installed")
def test_failed_row_opens_on_its_matches_picture_in_the_browser(thumbnail_run):
    build_report(thumbnail_run)
    with Chromium(width=1280, height=800) as b:
        b.open((thumbnail_run / "index.html").resolve().as_uri())
        b.wait_for("document.body.dataset.ready === '1'")
        rows = b.evaluate("[...document.querySelectorAll('#body tr')].map(tr => [tr.children[0].textContent,"
                          " (tr.querySelector('a.view') || {}).href, [...tr.querySelectorAll('img')].map(i => i.getAttribute('src'))])")
        by = {pid: (href, imgs) for pid, href, imgs in rows}
        assert by["noise"][1] == ["pairs/noise/thumb_match_result.jpg"]     # the failed row shows its matches
        b.open(by["noise"][0])
        b.wait_for("document.body.dataset.ready === '1'")
        assert b.evaluate("SR_VIEWER.broken") == []
        shown = b.evaluate("[...document.querySelectorAll('#world img')].filter(i => getComputedStyle(i).display !== 'none')"
                           ".map(i => [i.getAttribute('src'), i.naturalWidth])")
        assert len(shown) == 1 and shown[0][0] == MATCHES and shown[0][1] > 0
        assert b.failed_requests == [] and not [c for c in b.console if c.startswith("exception")]
