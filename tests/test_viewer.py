"""The shared viewer page (superretina.viewer): what it writes, and what it shows in headless Chromium.

The browser tests read pixels back from screenshots: a difference of an image with itself is
black, a checkerboard of a black and a white image alternates, flicker changes what is shown.
Skipped (browser part) when /usr/bin/chromium is absent, except on CI.
"""
import base64
import os

import cv2
import numpy as np
import pytest

from superretina.viewer import Layer, ViewerError, render_viewer, write_pair_viewer, write_viewer
from tests.headless_chromium import CHROMIUM, Chromium

HAVE_CHROMIUM = os.access(CHROMIUM, os.X_OK)
needs_browser = pytest.mark.skipif(not HAVE_CHROMIUM and not os.environ.get("CI"),
                                   reason=f"{CHROMIUM} not installed (apt-get install chromium)")
VISIBLE = ("[...document.querySelectorAll('#world img')]"
           ".filter(i => getComputedStyle(i).display !== 'none').map(i => i.getAttribute('src'))")


def test_labels_and_info_are_data_not_markup():
    page = render_viewer([Layer("<!--<script>x", "a.png"), Layer("</script><b>", "b c#1.png")],
                         title="<i>t</i>", info={"</script>": 1.23456789, "none": None, "ok": True})
    assert "<!--<script>" not in page and "</script><b>" not in page
    assert "<title>&lt;i&gt;t&lt;/i&gt;</title>" in page
    assert '"b%20c%231.png"' in page                       # percent-encoded path
    assert '"1.235"' in page and '"yes"' in page            # 4 significant digits, booleans in words


def test_placeholder_names_in_the_caller_text_stay_text():
    page = render_viewer([Layer("__DATA__", "a.png")], title="__EXTRA__ __DATA__", extra_html="<p>__TITLE__</p>")
    assert "<title>__EXTRA__ __DATA__</title>" in page and "<p>__TITLE__</p>" in page
    assert page.count("const SR_VIEW = {") == 1


@pytest.mark.parametrize("src", ["/etc/passwd", "../up.png", "file:///x.png", "http://x/y.png", "a\\b.png", ""])
def test_a_path_outside_the_page_folder_is_refused(src, tmp_path):
    with pytest.raises(ViewerError, match="relative to the page's folder"):
        write_viewer(tmp_path / "v.html", [Layer("a", src)], "t")
    assert not (tmp_path / "v.html").exists()


def test_pair_must_name_aligned_layers():
    with pytest.raises(ViewerError, match="aligned layer"):
        render_viewer([Layer("q", "q.png", aligned=False)], "t")
    with pytest.raises(ViewerError, match="pair"):
        render_viewer([Layer("a", "a.png"), Layer("b", "b.png"), Layer("q", "q.png", aligned=False)], "t", pair=(0, 2))


def test_write_replaces_a_planted_link_instead_of_following_it(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("keep")
    (tmp_path / "v.html").symlink_to(target)
    write_viewer(tmp_path / "v.html", [Layer("a", "a.png")], "t")
    assert target.read_text() == "keep" and not (tmp_path / "v.html").is_symlink()


# -- in the browser --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not HAVE_CHROMIUM:
        pytest.skip(f"{CHROMIUM} not installed")
    with Chromium(width=1280, height=800) as b:
        yield b


@pytest.fixture(scope="module")
def pages(tmp_path_factory, retina_bgr):
    d = tmp_path_factory.mktemp("viewer")
    img = cv2.resize(retina_bgr, (600, 600), interpolation=cv2.INTER_AREA)
    (d / "pics").mkdir()
    cv2.imwrite(str(d / "pics" / "ref.png"), img)
    cv2.imwrite(str(d / "pics" / "same copy.png"), img)
    cv2.imwrite(str(d / "pics" / "shifted.png"), np.roll(img, 40, axis=1))
    cv2.imwrite(str(d / "pics" / "black.png"), np.zeros((600, 600, 3), np.uint8))
    cv2.imwrite(str(d / "pics" / "white.png"), np.full((600, 600, 3), 255, np.uint8))
    cv2.imwrite(str(d / "pics" / "query.png"), img[100:500, 50:550])
    pair = write_pair_viewer(d / "pair.html", Layer("reference", "pics/ref.png"), Layer("warped", "pics/shifted.png"),
                             "a pair", info={"inliers": 123, "median residual (px)": 0.8123},
                             extra_html='<a id="more" href="pics/ref.png">matches</a>',
                             others=[Layer("query photograph", "pics/query.png", aligned=False)])
    same = write_pair_viewer(d / "same.html", Layer("a", "pics/ref.png"), Layer("b", "pics/same copy.png"), "same")
    bw = write_pair_viewer(d / "bw.html", Layer("black", "pics/black.png"), Layer("white", "pics/white.png"), "bw")
    series = write_viewer(d / "series.html", [Layer(f"visit {i}", p) for i, p in
                                              enumerate(["pics/ref.png", "pics/shifted.png", "pics/same copy.png"])],
                          "series")
    return {"pair": pair, "same": same, "bw": bw, "series": series, "dir": d}


def _open(browser, page):
    browser.open(page.resolve().as_uri())
    browser.wait_for("document.body.dataset.ready === '1'")


def _stage_pixels(browser) -> np.ndarray:
    """The stage (image area) of a screenshot, BGR uint8."""
    data = browser.call("Page.captureScreenshot", session=True, format="png")["data"]
    shot = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
    r = browser.evaluate("(() => { const b = document.getElementById('stage').getBoundingClientRect();"
                         " const w = document.getElementById('world').getBoundingClientRect();"
                         " return [Math.max(b.left, w.left), Math.max(b.top, w.top),"
                         " Math.min(b.right, w.right), Math.min(b.bottom, w.bottom)].map(Math.round); })()")
    x0, y0, x1, y1 = r
    return shot[y0 + 2:y1 - 2, x0 + 2:x1 - 2]


@needs_browser
def test_pair_view_opens_with_every_image_and_the_numbers(browser, pages):
    _open(browser, pages["pair"])
    assert browser.evaluate("SR_VIEWER.broken") == []
    assert browser.evaluate("[...document.images].every(i => i.naturalWidth > 0)")
    info = browser.evaluate("[...document.querySelectorAll('#info tr')].map(r => r.textContent)")
    assert info == ["inliers123", "median residual (px)0.8123"]
    assert browser.evaluate("document.getElementById('more').getAttribute('href')") == "pics/ref.png"
    assert browser.evaluate(VISIBLE) == ["pics/ref.png"]
    assert browser.failed_requests == [] and not [c for c in browser.console if c.startswith("exception")]


@needs_browser
def test_flicker_alternates_the_aligned_layers_and_skips_the_unaligned_one(browser, pages):
    _open(browser, pages["pair"])
    browser.evaluate("document.getElementById('speed').value = 10;"
                     " document.getElementById('speed').dispatchEvent(new Event('input'));"
                     " document.getElementById('play').click()")
    seen = browser.evaluate("new Promise(r => { const s = []; const t = setInterval(() => {"
                            f" s.push({VISIBLE}[0]); if (s.length === 25) {{ clearInterval(t); r(s); }} }}, 40); }})")
    assert set(seen) == {"pics/ref.png", "pics/shifted.png"}
    assert sum(a != b for a, b in zip(seen, seen[1:])) >= 3      # it flips back and forth
    browser.evaluate("document.getElementById('play').click()")  # pause
    assert browser.evaluate("SR_VIEWER.state.playing") is False
    # the query photograph is reachable by its button, not by the flicker or the arrows
    browser.evaluate("[...document.querySelectorAll('#layers button')].find(b => b.textContent === 'query photograph').click()")
    assert browser.evaluate(VISIBLE) == ["pics/query.png"]
    browser.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight'}))")
    first = browser.evaluate(VISIBLE)
    browser.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight'}))")
    assert {first[0], browser.evaluate(VISIBLE)[0]} == {"pics/ref.png", "pics/shifted.png"}


@needs_browser
def test_arrows_step_through_all_layers_of_a_series(browser, pages):
    _open(browser, pages["series"])
    order = []
    for _ in range(4):
        order.append(browser.evaluate(VISIBLE)[0])
        browser.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight'}))")
    assert order == ["pics/ref.png", "pics/shifted.png", "pics/same%20copy.png", "pics/ref.png"]
    browser.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowLeft'}))")
    assert browser.evaluate(VISIBLE) == ["pics/ref.png"]
    assert browser.evaluate("document.getElementById('layer').value") == "0"
    browser.evaluate("(() => { const s = document.getElementById('layer'); s.value = 2;"
                     " s.dispatchEvent(new Event('input')); })()")          # the layer slider
    assert browser.evaluate(VISIBLE) == ["pics/same%20copy.png"]


@needs_browser
def test_difference_is_black_for_the_same_image_and_not_for_a_shifted_one(browser, pages):
    _open(browser, pages["same"])
    browser.evaluate("SR_VIEWER.setMode('diff')")
    same = _stage_pixels(browser)
    assert same.size > 100_000 and same.max() <= 8
    _open(browser, pages["pair"])
    browser.evaluate("SR_VIEWER.setMode('diff')")
    assert _stage_pixels(browser).mean() > 10


@needs_browser
def test_checkerboard_alternates_tiles_and_fade_mixes(browser, pages):
    _open(browser, pages["bw"])
    browser.evaluate("SR_VIEWER.setMode('checker')")
    stage = _stage_pixels(browser).mean(axis=2)
    dark, light = (stage < 30).mean(), (stage > 225).mean()
    assert 0.35 < dark < 0.65 and 0.35 < light < 0.65
    browser.evaluate("SR_VIEWER.setMode('fade'); document.getElementById('fade').value = 50;"
                     " document.getElementById('fade').dispatchEvent(new Event('input'))")
    grey = _stage_pixels(browser)
    assert abs(float(np.median(grey)) - 127.5) < 8


@needs_browser
def test_zoom_reaches_full_resolution_and_pans(browser, pages):
    _open(browser, pages["pair"])
    fit_scale = browser.evaluate("SR_VIEWER.state.scale")
    assert 0 < fit_scale < 1.5
    browser.evaluate("document.getElementById('one').click()")
    assert browser.evaluate("SR_VIEWER.state.scale") == pytest.approx(1.0)
    w = browser.evaluate("document.querySelector('#world img').getBoundingClientRect().width")
    assert w == pytest.approx(600, abs=0.5)                  # one image pixel per CSS pixel
    tx = browser.evaluate("SR_VIEWER.state.tx")
    browser.evaluate("(() => { const s = document.getElementById('stage');"
                     " s.dispatchEvent(new PointerEvent('pointerdown', {clientX: 400, clientY: 300, pointerId: 1}));"
                     " s.dispatchEvent(new PointerEvent('pointermove', {clientX: 350, clientY: 300, pointerId: 1}));"
                     " s.dispatchEvent(new PointerEvent('pointerup', {clientX: 350, clientY: 300, pointerId: 1})); })()")
    assert browser.evaluate("SR_VIEWER.state.tx") == pytest.approx(tx - 50)


@needs_browser
def test_a_missing_image_is_named_on_the_page(browser, pages, tmp_path):
    page = write_pair_viewer(pages["dir"] / "gone.html", Layer("a", "pics/ref.png"), Layer("b", "pics/gone.png"), "gone")
    _open(browser, page)
    assert browser.evaluate("SR_VIEWER.broken") == ["pics/gone.png"]
    assert "pics/gone.png" in browser.evaluate("document.getElementById('broken').textContent")


@needs_browser
def test_screenshot_of_the_pair_view(browser, pages):
    from tests.model_fixtures import PROJECT_ROOT

    _open(browser, pages["pair"])
    browser.evaluate("SR_VIEWER.setMode('checker')")
    shot = PROJECT_ROOT / "out" / "test-artifacts" / "viewer.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.screenshot(shot).stat().st_size > 20_000


@needs_browser
def test_one_aligned_layer_opens_on_start_with_nothing_to_compare(browser, pages):
    page = write_viewer(pages["dir"] / "one.html", [Layer("reference", "pics/ref.png"),
                                                     Layer("query photograph", "pics/query.png", aligned=False)],
                        "failed pair", start=1)
    _open(browser, page)
    assert browser.evaluate(VISIBLE) == ["pics/query.png"]
    disabled = browser.evaluate("[...document.querySelectorAll('#modes button')].map(b => b.disabled)")
    assert disabled == [False, True, True, True]
    assert browser.evaluate("document.getElementById('g-play').hidden") is True
    # the 500x400 photograph is fitted on its own; going back to the 600x600 reference fits that
    browser.evaluate("document.getElementById('stage').dispatchEvent(new WheelEvent('wheel', {deltaY: -400, clientX: 300, clientY: 300}))")
    assert browser.evaluate("SR_VIEWER.state.size") == "500x400"
    browser.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight'}))")
    assert browser.evaluate(VISIBLE) == ["pics/ref.png"]
    assert browser.evaluate("SR_VIEWER.state.size") == "600x600"
    stage = browser.evaluate("document.getElementById('stage').getBoundingClientRect().toJSON()")
    assert browser.evaluate("SR_VIEWER.state.scale") == pytest.approx(min(stage["width"], stage["height"]) / 600)


def test_start_must_be_a_layer():
    with pytest.raises(ViewerError, match="start"):
        render_viewer([Layer("a", "a.png")], "t", start=3)
