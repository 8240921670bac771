"""Work around the network on one pair's critical path (issue 19e).

* the matching trick's crop (``matching_trick_crop_margin``): the box grows by the margin to
  multiples of 16 inside the frame; the maps of the crop land on the frame's cells; through the
  real stream the second pass infers the crop only, and result.json records the box;
* the overlay picture (result.jpg) drawn at a halved size (``outputs.merged_max_side``) shows
  what the full-size one shows, scaled.

The stream model is the session's random-weights SuperRetina (tests/model_fixtures.py): nothing
here checks accuracy. A photograph registered with itself registers exactly, which gives the
matching trick an (identity) first homography.
"""
import json

import cv2
import numpy as np
import pytest

from superretina.app import open_app
from superretina.config import DEFAULT_PIPELINE
from superretina.stream_client import read_layout
from superretina.outputs import merged_picture, result_json
from superretina.registrar import Registrar, RegistrationResult, trick_crop
from superretina import viz
from tests.model_fixtures import random_superretina  # noqa: F401

MODEL = 768


# -- the box ----------------------------------------------------------------------------------
def test_crop_box_grows_by_the_margin_to_multiples_of_16_within_the_frame():
    assert trick_crop((100.5, 200, 300, 401), 32, (MODEL, MODEL)) == (64, 160, 272, 288)
    # cut by the frame; the far sides stay on the frame's edge
    assert trick_crop((-40, 500, 700, 760), 16, (MODEL, MODEL)) == (0, 480, 720, 288)
    # the whole frame (or more) is no crop
    assert trick_crop((10, 10, 760, 760), 32, (MODEL, MODEL)) is None
    # at least two cells of 16 a side, inside the frame
    assert trick_crop((760, 3, 762, 4), 0, (MODEL, MODEL)) == (736, 0, 32, 32)


class CellNet:
    """A translation-equivariant stand-in for the network: detector = the input, descriptor =
    the 8x8 cell means of the input (all 256 channels alike) without the outer cell per side,
    the shapes of SuperRetina's outputs. Records the input shapes."""

    def __init__(self):
        self.shapes = []

    def infer(self, batch):
        self.shapes.append(batch.shape)
        n, _, h, w = batch.shape
        cells = batch[:, 0].reshape(n, h // 8, 8, w // 8, 8).mean(axis=(2, 4))[:, 1:-1, 1:-1]
        return batch[:, 0].copy(), np.repeat(cells[:, None], 256, axis=1).astype(np.float32)


def test_crop_maps_land_on_the_frames_cells():
    net = CellNet()
    reg = Registrar(net, {"model": {"image_height": MODEL, "image_width": MODEL}, "matching_trick_crop_margin": 0})
    x = np.random.default_rng(3).random((MODEL, MODEL)).astype(np.float32)
    full_det, full_desc, full_box = reg._infer_box(x, None)
    det, desc, box = reg._infer_box(x, (48, 96, 320, 256))
    assert full_box == (0, 0, MODEL, MODEL) and box == (48, 96, 320, 256)
    assert net.shapes == [(1, 1, MODEL, MODEL), (1, 1, 256, 320)]
    assert det.shape == full_det.shape and desc.shape == full_desc.shape
    np.testing.assert_array_equal(det[0, 96:352, 48:368], full_det[0, 96:352, 48:368])
    assert not det[0, :96].any() and not det[0, :, 368:].any()
    # descriptor cells of the crop (one cell per side dropped, as the network's) are the frame's
    inner = desc[0, :, 12:12 + 30, 6:6 + 38]
    np.testing.assert_allclose(inner, full_desc[0, :, 12:42, 6:44], rtol=1e-6)
    assert not desc[0, :, :12].any() and not desc[0, :, 42:].any()


# -- through the stream -----------------------------------------------------------------------
class SpyStream:
    """Delegates to the real stream and records each batch's shape."""

    def __init__(self, stream):
        self.stream, self.shapes = stream, []

    def infer(self, batch):
        self.shapes.append(batch.shape)
        return self.stream.infer(batch)

    def __getattr__(self, name):
        return getattr(self.stream, name)


@pytest.fixture(scope="module")
def app(random_superretina):
    with open_app(random_superretina.fast_config, random_superretina.pipeline, "local") as opened:
        opened.config["matching_trick_skip_inliers"] = 0   # the trick runs on every pair here
        yield opened


@pytest.fixture(scope="module")
def small_disc(retina_bgr):
    """The retina photograph at 256 px inside a 512-px black frame: its disc covers the centre."""
    img = np.zeros((512, 512, 3), np.uint8)
    img[128:384, 128:384] = cv2.resize(retina_bgr, (256, 256), interpolation=cv2.INTER_AREA)
    return img


@pytest.mark.parametrize("margin", [16, -1])
def test_the_trick_infers_the_field_of_view_box_only(app, small_disc, margin, tmp_path):
    app.config["matching_trick_crop_margin"] = margin
    try:
        spy = SpyStream(app.stream)
        res = Registrar(spy, app.config).register_images(small_disc, small_disc.copy())
    finally:
        app.config["matching_trick_crop_margin"] = -1
    if not res.first.homography.ok:
        pytest.skip("random-weights model did not register the photograph with itself")
    assert spy.shapes[0] == (2, 1, MODEL, MODEL) and len(spy.shapes) == 2
    x, y, w, h = res.trick_box
    assert spy.shapes[1] == (1, 1, h, w)
    if margin < 0:
        assert res.trick_box == (0, 0, MODEL, MODEL)
    else:
        # the disc spans the model frame's middle half (192..576): the box is it, grown by 16,
        # on multiples of 16
        assert all(v % 16 == 0 for v in res.trick_box)
        assert 160 <= x <= 192 and 160 <= y <= 192 and x + w <= 608 and y + h <= 608
        # no warped-query keypoint outside the box
        assert ((res.warped_query.model_xy >= (x, y)) & (res.warped_query.model_xy < (x + w, y + h))).all()
    info = result_json(res, None, None, {})
    assert info["matching_trick"]["inferred_box"] == {"x": x, "y": y, "width": w, "height": h}
    json.dumps(info)


# -- the overlay picture ----------------------------------------------------------------------
def test_overlay_is_drawn_halved_to_the_configured_side(retina_bgr, tmp_path):
    g = cv2.resize(retina_bgr, (1024, 1024), interpolation=cv2.INTER_AREA)[:, :, 1]
    H = np.array([[1.0, 0.02, 15.0], [-0.02, 1.0, -9.0], [0.0, 0.0, 1.0]])
    res = RegistrationResult("registered", None, H, None, None, None, query_size=(1024, 1024),
                             refer_size=(1024, 1024), query_equalised=g, refer_equalised=g.copy())
    full = merged_picture(res, H, 0)
    assert full.shape == (1024, 1024, 3)
    for side, expected in ((600, 512), (256, 256), (1024, 1024)):
        small = merged_picture(res, H, side)
        assert small.shape == (expected, expected, 3)
        # the full-size overlay, shrunk, away from the warped frame's edge
        ref = viz.shrink(full, (expected, expected)).astype(float)
        m = expected // 8
        assert np.abs(small.astype(float) - ref)[m:-m, m:-m].mean() < 3.0
    # remap maps (another transform's way to the pictures) give the homography's picture
    from superretina.transform import HomographyTransform, inverse_maps
    maps = inverse_maps(HomographyTransform(H), (1024, 1024), (1024, 1024))
    by_maps, by_h = merged_picture(res, maps, 600), merged_picture(res, H, 600)
    assert by_maps.shape == by_h.shape == (512, 512, 3)
    assert np.abs(by_maps.astype(float) - by_h)[64:-64, 64:-64].mean() < 1.0


# -- the field-of-view mask's key -------------------------------------------------------------
def test_without_the_mask_from_the_stream_the_photographs_come_back(random_superretina, small_disc, tmp_path):
    assert read_layout(DEFAULT_PIPELINE).decode.fov_key == b"superretina_enhance0_fov"
    cfg = json.loads(random_superretina.pipeline.read_text())
    enhance = next(el for stream in cfg.values() for el in stream.values()
                   if isinstance(el, dict) and el.get("factory") == "superretina_enhance")
    enhance.setdefault("props", {})["outputFov"] = "0"
    off = random_superretina.pipeline.with_name("no_fov.pipeline")   # beside the model it names
    off.write_text(json.dumps(cfg))
    assert read_layout(off).decode.fov_key is None
    path = tmp_path / "disc.jpg"
    cv2.imwrite(str(path), small_disc, [cv2.IMWRITE_JPEG_QUALITY, 95])
    with open_app(random_superretina.fast_config, off, "local") as app:
        assert app.stream.infer_encoded_async(path.read_bytes()).result(timeout=120).fov is None
        res = app.registrar.register_files(path, path)   # the mask found on the photographs instead
        app.config["input"]["stream_decode"] = False
        driver = app.registrar.register_files(path, path)
    assert res.decoded_in == "stream" and driver.decoded_in == "driver"
    assert np.array_equal(res.query.xy, driver.query.xy) and np.array_equal(res.refer.xy, driver.refer.xy)
