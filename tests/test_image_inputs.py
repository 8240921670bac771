"""Photographs as users have them (issue 3, item 6), through the real stream pipeline.

Formats, bit depths, EXIF orientation, sizes and aspect ratios that differ between query and
reference, very large and very small images; and every kind of unreadable file, which must give
an ``ImageReadError`` whose message starts with the path -- and, through the CLI, exit code 2 and
one ``error: <path>: ...`` line without a traceback.

The model is the session's random-weights SuperRetina (tests/model_fixtures.py): these tests check
that registration runs and reports on such inputs, not its accuracy.
"""
import json
import sys

import cv2
import numpy as np
import pytest

from superretina.app import open_app
from superretina.image_io import ImageReadError, read_image
from superretina.viz import checkerboard
from tests.model_fixtures import (assert_one_line_error, cli_env, random_superretina,  # noqa: F401
                                  run_cli)

PIL = pytest.importorskip("PIL.Image", reason="Pillow writes the EXIF-tagged JPEG")


def resized(bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def app(random_superretina, tmp_path_factory):
    # A 512x512 network input (the export is dynamic) halves the inference time of these tests,
    # which are about reading and sizing photographs; 768 is covered by test_register_pipeline.
    config = tmp_path_factory.mktemp("config") / "inputs.yaml"
    config.write_text(random_superretina.fast_config.read_text() + "model:\n  image_width: 512\n  image_height: 512\n")
    with open_app(config, random_superretina.pipeline, "local") as opened:
        yield opened


@pytest.fixture(scope="module")
def files(tmp_path_factory, retina_bgr):
    """Small test photographs in several formats (all views of the skimage retina)."""
    d = tmp_path_factory.mktemp("inputs")
    base = resized(retina_bgr, 512, 512)
    paths = {"refer": d / "refer.png"}
    cv2.imwrite(str(paths["refer"]), base)
    grey = cv2.cvtColor(resized(retina_bgr, 480, 480), cv2.COLOR_BGR2GRAY)
    paths["grey"] = d / "grey.png"
    cv2.imwrite(str(paths["grey"]), grey)
    # 16 bit: full-range values, not just 8-bit values shifted (x*257 + a low-order ramp).
    wide = resized(retina_bgr, 448, 448).astype(np.uint16) * 257
    wide += (np.arange(448, dtype=np.uint16) % 200)[None, :, None]
    paths["png16"] = d / "wide16.png"
    cv2.imwrite(str(paths["png16"]), wide)
    paths["tiff"] = d / "photo.tif"
    cv2.imwrite(str(paths["tiff"]), resized(retina_bgr, 400, 400))
    return d, paths, {"grey": grey, "png16": wide}


# -- formats -----------------------------------------------------------------------------------
def test_grayscale_png_reads_as_three_channels_and_registers(app, files):
    _, paths, arrays = files
    img = read_image(paths["grey"])
    assert img.shape == (480, 480, 3) and img.dtype == np.uint8
    assert all(np.array_equal(img[..., c], arrays["grey"]) for c in range(3))
    res = app.registrar.register_files(paths["grey"], paths["refer"])
    assert res.status in ("registered", "failed")
    assert res.query_size == (480, 480) and len(res.query.xy) > 0


def test_16bit_png_keeps_its_depth_and_registers(app, files):
    _, paths, arrays = files
    img = read_image(paths["png16"])
    assert img.dtype == np.uint16 and img.shape == (448, 448, 3)
    assert np.array_equal(img, arrays["png16"])            # no 8-bit round trip on the way in
    res = app.registrar.register_images(img, read_image(paths["refer"]))
    assert res.status in ("registered", "failed")
    assert res.query_size == (448, 448) and len(res.query.xy) > 0


def test_tiff_reads_and_registers(app, files, retina_bgr):
    _, paths, _ = files
    img = read_image(paths["tiff"])
    assert img.dtype == np.uint8 and np.array_equal(img, resized(retina_bgr, 400, 400))
    res = app.registrar.register_files(paths["refer"], paths["tiff"])
    assert res.status in ("registered", "failed") and res.refer_size == (400, 400)


def test_jpeg_exif_orientation_is_applied(tmp_path, retina_bgr):
    """Orientation 6 (camera turned 90 deg clockwise): a 300 wide x 200 high file displays 200 x 300."""
    stored = resized(retina_bgr, 300, 200)
    stored[:20, :20] = (255, 255, 255)                       # a white mark at the stored top-left
    img = PIL.fromarray(cv2.cvtColor(stored, cv2.COLOR_BGR2RGB))
    exif = img.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)

    out = read_image(path)
    assert out.shape == (300, 200, 3)
    # Rotated 90 deg clockwise for display: the stored top-left corner ends up top-right.
    assert out[:15, -15:].mean() > 240 and out[:15, :15].mean() < 200
    expected = cv2.rotate(stored, cv2.ROTATE_90_CLOCKWISE)
    assert np.abs(out.astype(int) - expected).mean() < 4      # JPEG loss only


# -- sizes -------------------------------------------------------------------------------------
def test_different_sizes_and_aspect_ratios(app, retina_bgr):
    query = resized(retina_bgr, 640, 400)                    # landscape, stretched
    refer = resized(retina_bgr, 384, 576)                    # portrait
    res = app.registrar.register_images(query, refer)
    assert res.status in ("registered", "failed")
    assert res.query_size == (400, 640) and res.refer_size == (576, 384)
    for feats, (h, w) in ((res.query, (400, 640)), (res.refer, (576, 384))):
        assert len(feats.xy) > 0
        assert (feats.xy[:, 0] < w).all() and (feats.xy[:, 1] < h).all() and (feats.xy >= 0).all()
    if res.H is not None:
        assert res.H.shape == (3, 3) and np.isfinite(res.H).all()


def test_small_200px_image(app, retina_bgr):
    small = resized(retina_bgr, 200, 200)
    res = app.registrar.register_images(small, resized(retina_bgr, 512, 512))
    assert res.status in ("registered", "failed")
    assert res.query_size == (200, 200) and len(res.query.xy) > 0
    assert (res.query.xy < 200).all()
    if res.status == "failed":
        assert res.reason


def test_tiny_image_is_refused_with_its_size(tmp_path):
    path = tmp_path / "tiny.png"
    cv2.imwrite(str(path), np.zeros((10, 40, 3), np.uint8))
    with pytest.raises(ImageReadError, match=r"40x10 px"):
        read_image(path)


# Enough for the 8000x8000 reference: the decoded image is 192 MB, its uint8 enhancement 64 MB,
# each picture at reference size 192 MB (drawn one at a time at this size). Measured ~1.15 GB;
# the int64 coordinate grids the checkerboard once built added about 1 GB at this size.
LARGE_RSS_LIMIT_MB = 1600

# The CLI in a child process, then its own peak memory (bench.peak_rss_mb: VmHWM, since
# ru_maxrss would carry the size of the pytest process that forked it).
_RSS_WRAPPER = """
import runpy, sys
sys.argv = ["superretina.cli", *sys.argv[1:]]
try:
    runpy.run_module("superretina.cli", run_name="__main__")
    code = 0
except SystemExit as exc:
    code = exc.code
from benchmarks.bench import peak_rss_mb
print("peak_rss_mb", peak_rss_mb(), file=sys.stderr)
sys.exit(code)
"""


def test_very_large_8000px_reference(random_superretina, retina_bgr, tmp_path):
    """An 8000x8000 JPEG reference through the CLI: it runs, writes everything, memory stays bounded."""
    big = tmp_path / "big.jpg"
    assert cv2.imwrite(str(big), cv2.resize(retina_bgr, (8000, 8000), interpolation=cv2.INTER_LINEAR),
                       [cv2.IMWRITE_JPEG_QUALITY, 80])
    query = tmp_path / "query.png"
    cv2.imwrite(str(query), resized(retina_bgr, 1000, 1000))
    out = tmp_path / "out"
    import subprocess

    proc = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, str(query), str(big), "--out", str(out),
                           "--pipeline", str(random_superretina.pipeline),
                           "--config", str(random_superretina.fast_config)],
                          env=cli_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    info = json.loads((out / "result.json").read_text())
    assert info["refer_size"] == {"height": 8000, "width": 8000}
    assert info["status"] in ("registered", "failed")
    assert (out / "match_result.jpg").is_file()
    if info["status"] == "registered":
        # decoded at 1/8 here: the overlay and the checkerboard halved to at most
        # outputs.merged_max_side / checkerboard_max_side (1600: 8000 -> 1000 px)
        for name, side in (("result.jpg", 125), ("checkerboard.jpg", 125)):
            picture = cv2.imread(str(out / name), cv2.IMREAD_REDUCED_COLOR_8)
            assert picture.shape == (side, side, 3), name
    rss_mb = float(proc.stderr.strip().splitlines()[-1].split()[-1])
    assert rss_mb < LARGE_RSS_LIMIT_MB, f"peak RSS {rss_mb:.0f} MB"


def test_checkerboard_tiles(retina_bgr):
    """The picture's tiles are those of the plain formula ((row tile + column tile) odd: query),
    and each query tile is the query warped by H (identity here: an exact copy)."""
    rng = np.random.default_rng(0)
    for h, w, tiles in ((37, 53, 8), (61, 29, 3), (64, 64, 8)):
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        b = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        yy, xx = np.mgrid[0:h, 0:w]
        odd = (yy * tiles // h + xx * tiles // w) % 2 == 1
        expected = np.where(odd[..., None], a, b)
        assert np.array_equal(checkerboard(a, np.eye(3), b, tiles), expected)


def test_checkerboard_tiles_are_the_warped_query(retina_bgr):
    """Tile-by-tile warping gives the picture of one full warp (OpenCV's fixed-point bilinear
    weights may round a level apart where a shifted H changes the last bits)."""
    q = retina_bgr[200:520, 300:700]
    H = np.array([[0.97, 0.05, 12.0], [-0.04, 1.02, -7.5], [1e-5, -2e-5, 1.0]])
    full = cv2.warpPerspective(q, H, (400, 320), flags=cv2.INTER_LINEAR)
    picture = checkerboard(q, H, np.zeros_like(q), 4)
    odd = ((np.arange(320)[:, None] * 4 // 320 + np.arange(400)[None, :] * 4 // 400) % 2 == 1)
    diff = np.abs(picture.astype(int) - full.astype(int))[odd]
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    assert not picture[~odd].any()


# -- unreadable files --------------------------------------------------------------------------
def _bad_file(kind: str, folder, retina_bgr):
    path = folder / {"missing": "nope.jpg", "empty": "empty.png", "directory": "folder.jpg",
                     "text": "notes.jpg", "truncated": "cut.jpg"}[kind]
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("patient 0042, left eye, see attached\n")
    elif kind == "truncated":
        ok, buf = cv2.imencode(".jpg", resized(retina_bgr, 400, 400))
        path.write_bytes(buf.tobytes()[: len(buf) * 2 // 3])
    return path


BAD_KINDS = ["missing", "empty", "directory", "text", "truncated"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_unreadable_file_raises_image_read_error(kind, tmp_path, retina_bgr):
    path = _bad_file(kind, tmp_path, retina_bgr)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message


@pytest.mark.parametrize("kind, side", [(k, "query") for k in BAD_KINDS] + [("missing", "refer"), ("text", "refer")])
def test_unreadable_file_through_cli(kind, side, tmp_path, retina_bgr, files, random_superretina):
    bad = _bad_file(kind, tmp_path, retina_bgr)
    good = files[1]["refer"]
    args = (bad, good) if side == "query" else (good, bad)
    proc = run_cli(*args, "--out", tmp_path / "out", "--pipeline", random_superretina.pipeline)
    line = assert_one_line_error(proc, code=2)
    assert line.startswith(f"error: {bad}: "), line
    assert not (tmp_path / "out" / "result.json").exists()
