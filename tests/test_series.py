"""A series with the default model: three synthetic visits of one eye (exact correspondences),
registered into one frame; its files; an image of another eye left unconnected; bad input; the
flicker page in headless Chromium (skipped without /usr/bin/chromium, except on CI)."""
import json
import os

import cv2
import numpy as np
import pytest

from superretina.cli import main as cli_main
from superretina.fire.series_synth import make_series
from superretina.fire.synth import load_source
from superretina.series import load_series, register_series
from superretina.transform import transform_from_json
from tests.headless_chromium import CHROMIUM, Chromium

SIZE = 512
VISIBLE = ("[...document.querySelectorAll('#world img')]"
           ".filter(i => getComputedStyle(i).display !== 'none').map(i => i.getAttribute('src'))")


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series") / "eye"
    _, img = load_source("skimage:retina")
    truth = make_series(folder, img, "visits", 3, SIZE, seed=0)
    return folder, truth


@pytest.fixture(scope="module")
def saved(views, tmp_path_factory):
    folder, truth = views
    s = register_series([folder / "series.csv"])
    out = tmp_path_factory.mktemp("series_out")
    return s, s.save(out), out, truth


def test_every_view_in_one_frame_within_two_pixels_of_the_truth(saved):
    s, _, _, truth = saved
    assert s.unconnected == [] and len(s.pairs) == 3             # 3 images: every pair
    errors = []
    for p in truth["pairs"]:
        cp = np.asarray(p["control_points"])
        mapped = s.map_points(p["query"], p["refer"], cp[:, 2:4])
        errors.append(np.linalg.norm(mapped - cp[:, 0:2], axis=1).mean())
    assert max(errors) < 2.0, errors


def test_series_json_round_trips_through_transform_from_json(saved):
    s, written, out, _ = saved
    assert written[-1] == out / "series.json"
    d = json.loads((out / "series.json").read_text())
    again = load_series(out)
    pts = np.array([[100.0, 120.0], [256.0, 256.0], [400.0, 380.0]])
    for k, im in enumerate(d["images"]):
        t = transform_from_json(im["transform"])
        assert np.allclose(t.apply(pts), s.transforms[k].apply(pts), atol=1e-9)
        assert np.allclose(t.inverse(t.apply(pts)), pts, atol=1e-5)            # .inverse maps back
        assert np.allclose(again["images"][k]["transform"].apply(pts), t.apply(pts))
    assert d["reference"]["index"] == s.reference and d["images"][s.reference]["transform"]["model"] == "homography"
    assert {"query", "refer", "weight", "residual_median_px"} <= set(d["pairs"][0])
    assert set(d["pairs"][0]["residual_median_px"]) == {"direct", "initial", "refined"}
    assert d["pairs_all"] == 3 and d["unconnected"] == []


def test_series_json_alone_without_pictures(saved, tmp_path):
    s = saved[0]
    assert s.save(tmp_path / "bare", pictures=False) == [tmp_path / "bare" / "series.json"]
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == ["series.json"]
    s.save(tmp_path / "again")                                   # pictures of an earlier run are removed
    s.save(tmp_path / "again", pictures=False)
    assert not (tmp_path / "again" / "montage.png").exists() and not list((tmp_path / "again" / "aligned").iterdir())


def test_aligned_stack_and_montage(saved):
    s, _, out, _ = saved
    aligned = sorted((out / "aligned").glob("*.png"))
    assert len(aligned) == 3
    for p in aligned:
        assert cv2.imread(str(p)).shape == (SIZE, SIZE, 3)
    ok, pages = cv2.imreadmulti(str(out / "aligned" / "aligned.tif"))
    assert ok and len(pages) == 3
    # the reference's own page is the reference photograph itself
    ref = cv2.imread(str(s.images[s.reference].path))
    assert np.abs(cv2.imread(str(aligned[s.reference])).astype(int) - ref).max() <= 1
    c = s.canvas()
    m = cv2.imread(str(out / "montage.png"))
    assert m.shape[:2] == (c["height"], c["width"]) and c["width"] >= SIZE
    assert (m.max(axis=2) > 20).mean() > 0.5                     # the fundus covers most of the canvas


def test_an_image_of_another_eye_is_reported_unconnected(views, shared_data, tmp_path, capsys):
    folder, _ = views
    other = cv2.resize(cv2.imread(str(shared_data / "fundus" / "chase_01L.png")), (SIZE, SIZE))
    cv2.imwrite(str(tmp_path / "other.png"), other)
    images = [folder / "views" / f"{k:02d}.jpg" for k in range(3)] + [tmp_path / "other.png"]
    code = cli_main(["series", *map(str, images), "--out", str(tmp_path / "out")])
    text = capsys.readouterr().out
    assert code == 1
    assert "unconnected (no registered pair joins them to the frame): other" in text
    d = json.loads((tmp_path / "out" / "series.json").read_text())
    assert d["unconnected"] == ["other"] and d["images"][3]["transform"] is None
    assert len(list((tmp_path / "out" / "aligned").glob("*.png"))) == 3        # not forced in


def test_bad_series_input_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "s.csv"
    bad.write_text("path,visit\na.jpg,1\n")
    assert cli_main(["series", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "'image' column" in err
    assert cli_main(["series", str(tmp_path / "nothing_here.jpg"), "--out", str(tmp_path / "o")]) == 2
    assert "nothing_here.jpg" in capsys.readouterr().err


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK) and not os.environ.get("CI"), reason=f"{CHROMIUM} not installed")
def test_flicker_page_in_the_browser(saved):
    from tests.model_fixtures import PROJECT_ROOT

    s, _, out, _ = saved
    with Chromium(width=1200, height=900) as b:
        b.open((out / "flicker.html").resolve().as_uri())
        b.wait_for("document.body.dataset.ready === '1'")
        assert b.evaluate("SR_VIEWER.broken") == []
        assert b.evaluate("[...document.images].every(i => i.naturalWidth === %d)" % SIZE)
        seen = []
        for _ in range(3):
            seen.append(b.evaluate(VISIBLE)[0])
            b.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight'}))")
        assert sorted(seen) == sorted(f"aligned/{p.name}" for p in (out / "aligned").glob("*.png"))
        b.evaluate("SR_VIEWER.setMode('diff')")
        assert b.evaluate("SR_VIEWER.state.mode") == "diff"
        assert not [c for c in b.console if c.startswith("exception")] and b.failed_requests == []
        shot = PROJECT_ROOT / "out" / "test-artifacts" / "series_flicker.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert b.screenshot(shot).stat().st_size > 20_000
