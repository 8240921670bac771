"""Issue 14.5 / 14.8: the files in --out all belong to one run, --out is checked first, no symlink is followed.

Registrations here are real (the shipped bf16 model on the CC0 retina photograph at 600 px).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from superretina.app import open_app
from superretina.demo import make_pair
from superretina.outputs import OUTPUT_NAMES, OutputError, prepare_out, result_json, save_jpeg, write_outputs
from superretina.viz import JPEG_MAX_SIDE, draw_matches
from tests.model_fixtures import assert_one_line_error, run_cli

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "model" / "superretina_lowrank2_int8.xml"


@pytest.fixture(scope="module")
def runs(retina_bgr):
    """A registered pair and a failed pair (the reference against noise), with their images."""
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"model/{DEFAULT_MODEL.name} is not present")
    refer = cv2.resize(retina_bgr, (600, 600), interpolation=cv2.INTER_AREA)
    query, _, _ = make_pair(refer)
    noise = np.random.default_rng(0).integers(0, 255, refer.shape, dtype=np.uint8)
    out = {}
    with open_app(None, None, "local") as app:
        for name, q in (("good", query), ("bad", noise)):
            res = app.registrar.register_images(q, refer)
            info = result_json(res, f"{name}.png", "refer.png", app.provenance)
            out[name] = (res, q, refer, info, app.config)
    assert out["good"][0].status == "registered" and out["bad"][0].status == "failed"
    return out


def _write(runs, name: str, folder: Path):
    res, q, r, info, cfg = runs[name]
    return write_outputs(res, q, r, folder, info, cfg)


def test_failed_run_leaves_no_pictures_of_the_earlier_run(runs, tmp_path):
    """The issue's case: a good pair then a failing pair into the same folder."""
    _write(runs, "good", tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == set(OUTPUT_NAMES)
    written = _write(runs, "bad", tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"result.json", "match_result.jpg"}
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "failed"
    assert written[-1].name == "result.json"  # written last
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_result_json_is_written_after_every_picture(runs, tmp_path):
    _write(runs, "good", tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert stamps["result.json"] >= max(v for k, v in stamps.items() if k != "result.json")


def test_symlinks_in_out_are_replaced_not_followed(runs, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("result.json", "result.jpg", "match_result.jpg"):
        (out / name).symlink_to(victim)
    _write(runs, "good", out)
    assert victim.read_text() == "precious"
    for name in OUTPUT_NAMES:
        assert (out / name).is_file() and not (out / name).is_symlink()


def test_jpeg_aspect_limit_is_scaled_not_a_crash(tmp_path):
    strip = np.full((20, 1400, 3), 128, np.uint8)  # 1:70, drawn at height 1000 it would be 70000 wide
    refer = np.full((1000, 1000, 3), 200, np.uint8)
    picture = draw_matches(strip, refer, np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, bool), ["x"])
    assert picture.shape[1] <= JPEG_MAX_SIDE
    path = save_jpeg(tmp_path / "wide.jpg", np.zeros((10, 70000, 3), np.uint8))
    back = cv2.imread(str(path))
    assert back is not None and back.shape[1] <= JPEG_MAX_SIDE


def test_out_in_the_way_is_found_before_the_work(tmp_path, retina_bgr):
    a = tmp_path / "a.png"
    cv2.imwrite(str(a), cv2.resize(retina_bgr, (200, 200)))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # The pipeline does not exist: the --out problem must be the one reported, since it is checked first.
    for out, fragment in ((blocker, "--out must be a folder"), (blocker / "sub", "cannot create the --out folder")):
        proc = run_cli(a, a, "--out", out, "--pipeline", tmp_path / "missing.pipeline")
        assert_one_line_error(proc, str(out), fragment)
    with pytest.raises(OutputError, match="--out must be a folder"):
        prepare_out(blocker)


def test_read_only_out_is_found_before_the_work(tmp_path):
    if os.geteuid() == 0:  # root writes into any mode-0555 folder; sysfs refuses new files even to root
        read_only = Path("/sys/kernel")
        if not read_only.is_dir():
            pytest.skip("no read-only folder available to root here")
    else:
        read_only = tmp_path / "ro"
        read_only.mkdir()
        read_only.chmod(0o555)
    with pytest.raises(OutputError, match=r"cannot write into the --out folder"):
        prepare_out(read_only)


def test_folder_in_place_of_an_output_is_refused_first(tmp_path):
    (tmp_path / "result.json").mkdir()
    with pytest.raises(OutputError, match=r"result.json: is a folder"):
        prepare_out(tmp_path)
