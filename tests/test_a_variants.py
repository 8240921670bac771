"""Enhancement (``enhance.*``) and descriptor (``descriptors.*``) settings of the A-category study.

* every new key is range-checked like the others (one line naming the key and what is allowed);
* each setting changes the result on a real photograph (scikit-image's retina, shrunk), and the
  defaults are the reference's;
* bicubic sampling is PyTorch's ``grid_sample(mode="bicubic", align_corners=True)``;
* ``superretina_enhance`` takes the same settings as properties, its output is the driver's bit
  for bit, and the registrar uses the decode stream only where they equal its config.

Model for the stream tests: the session's random-weights SuperRetina (tests/model_fixtures.py).
"""
import json

import cv2
import numpy as np
import pytest
import yaml

from superretina.app import open_app
from superretina.config import ConfigError, load_config
from superretina.descriptors import _sample, sample_descriptors
from superretina.enhance import REFERENCE, EnhanceSettings, equalise, flatten_illumination, model_input
from superretina.fov import fov_mask
from superretina.stream_client import PipelineError, read_layout
from tests.model_fixtures import random_superretina  # noqa: F401

SIDE = 256


@pytest.fixture(scope="module")
def photo(retina_bgr):
    return cv2.resize(retina_bgr, (SIDE, SIDE), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("section, key, value, allowed", [
    ("enhance", "clahe_clip", 0.0, "> 0"),
    ("enhance", "clahe_clip", 41.0, "<= 40"),
    ("enhance", "clahe_tiles", 0, ">= 1"),
    ("enhance", "clahe_tiles", 65, "<= 64"),
    ("enhance", "gamma", 0.1, ">= 0.2"),
    ("enhance", "flatten", -0.01, ">= 0"),
    ("enhance", "flatten", 0.6, "<= 0.5"),
    ("enhance", "channel", "red", "green, luminance"),
    ("descriptors", "interpolation", "nearest", "bilinear, bicubic"),
    ("descriptors", "pool", -1.0, ">= 0"),
    ("descriptors", "pool", 17.0, "<= 16"),
    ("descriptors", "normalise", "l1", "l2, root, centred"),
])
def test_new_settings_are_range_checked(section, key, value, allowed):
    with pytest.raises(ConfigError) as err:
        load_config({section: {key: value}})
    line = str(err.value)
    assert "\n" not in line and f"{section}.{key}" in line and allowed in line


def test_range_ends_are_accepted():
    cfg = load_config({"enhance": {"clahe_clip": 40.0, "clahe_tiles": 1, "gamma": 5.0, "flatten": 0.5,
                                   "channel": "luminance"},
                       "descriptors": {"interpolation": "bicubic", "pool": 16.0, "normalise": "centred"}})
    assert EnhanceSettings.from_config(cfg["enhance"]) == EnhanceSettings(40.0, 1, 5.0, 0.5, "luminance")
    assert EnhanceSettings.from_config(load_config()["enhance"]) == REFERENCE


def test_default_settings_are_the_reference(photo):
    eq = equalise(photo)
    assert np.array_equal(equalise(photo, EnhanceSettings.from_config(load_config()["enhance"])), eq)
    assert np.array_equal(equalise(photo[..., 1]), eq)   # green channel, as the reference reads


@pytest.mark.parametrize("settings", [
    EnhanceSettings(clahe_clip=4.0), EnhanceSettings(clahe_tiles=4), EnhanceSettings(flatten=0.05),
    EnhanceSettings(channel="luminance"),
])
def test_each_enhancement_setting_changes_the_equalised_image(photo, settings):
    eq = equalise(photo, settings)
    assert eq.dtype == np.uint8 and eq.shape == (SIDE, SIDE)
    assert np.mean(eq != equalise(photo)) > 0.05


def test_higher_clip_limit_gives_more_local_contrast(photo):
    def local_contrast(img):   # mean absolute difference to a 9x9 box mean
        return float(np.mean(np.abs(img.astype(np.float32) - cv2.blur(img.astype(np.float32), (9, 9)))))

    low, ref, high = (equalise(photo, EnhanceSettings(clahe_clip=c)) for c in (1.5, 2.0, 4.0))
    assert local_contrast(low) < local_contrast(ref) < local_contrast(high)


def test_flattening_removes_the_illumination_gradient(photo):
    green = photo[..., 1]
    mask = fov_mask(photo)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
    flat = flatten_illumination(green, 0.05)
    assert flat.dtype == np.float32 and np.all(flat[~mask] == 0)

    def spread(img):   # relative variation of the background (heavy blur) inside the field of view
        bg = cv2.GaussianBlur(img.astype(np.float32), (0, 0), SIDE / 10)[inner]
        return float(bg.std() / bg.mean())

    assert spread(flat) < 0.5 * spread(green)


def test_gamma_one_is_the_identity_table(photo):
    eq = equalise(photo)
    plain = cv2.resize(eq, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32) / np.float32(255)
    assert np.array_equal(model_input(eq, (128, 128), 1.0), plain)
    assert not np.array_equal(model_input(eq, (128, 128)), plain)   # the reference's 1.2 brightens


# -- descriptors ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def desc_map():
    rng = np.random.default_rng(3)
    return rng.standard_normal((32, 10, 12)).astype(np.float32)


@pytest.fixture(scope="module")
def keypoints():
    rng = np.random.default_rng(4)
    return np.stack([rng.uniform(-4, 100, 300), rng.uniform(-4, 84, 300)], 1).astype(np.float32)


def test_bicubic_is_torch_grid_sample(desc_map, keypoints):
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    c, h, w = desc_map.shape
    g = torch.from_numpy(keypoints.copy())
    g[:, 0] = g[:, 0] / (w * 8 - 1) * 2 - 1
    g[:, 1] = g[:, 1] / (h * 8 - 1) * 2 - 1
    ref = f.grid_sample(torch.from_numpy(desc_map)[None], g.view(1, 1, -1, 2), mode="bicubic",
                        align_corners=True, padding_mode="zeros")
    ref = f.normalize(ref.reshape(c, -1), p=2, dim=0).T.numpy()
    ours = sample_descriptors(keypoints, desc_map, interpolation="bicubic")
    assert np.abs(ours - ref).max() < 1e-5
    assert np.abs(ours - sample_descriptors(keypoints, desc_map)).max() > 0.05


def test_pooling_averages_the_neighbourhood(desc_map):
    c, h, w = desc_map.shape
    # On a map linear in x and y the symmetric 3x3 samples average to the centre's.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    coef = np.random.default_rng(5).standard_normal((c, 3)).astype(np.float32)
    linear = coef[:, :1, None] * xx + coef[:, 1:2, None] * yy + coef[:, 2:, None]
    inner = np.array([[30.0, 30.0], [41.5, 52.25], [60.0, 20.0]], np.float32)
    assert np.allclose(sample_descriptors(inner, linear, pool=4.0), sample_descriptors(inner, linear), atol=1e-5)
    # On a random map it is the normalised mean of the 9 raw (unnormalised) samples.
    offsets = np.array([(dx, dy) for dy in (-4, 0, 4) for dx in (-4, 0, 4)], np.float32)
    mean = np.mean([_sample(inner + o, desc_map, 8, "bilinear") for o in offsets], axis=0)
    pooled = sample_descriptors(inner, desc_map, pool=4.0)
    assert np.allclose(pooled, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-5)
    assert not np.allclose(pooled, sample_descriptors(inner, desc_map), atol=1e-2)


def test_root_normalisation_is_the_signed_square_root(desc_map, keypoints):
    d = sample_descriptors(keypoints, desc_map)
    root = np.sign(d) * np.sqrt(np.abs(d))
    root /= np.maximum(np.linalg.norm(root, axis=1, keepdims=True), 1e-12)
    assert np.allclose(sample_descriptors(keypoints, desc_map, normalise="root"), root, atol=1e-6)


def test_centred_normalisation_removes_the_shared_component(desc_map, keypoints):
    common = np.zeros(desc_map.shape[0], np.float32)
    common[0] = 3.0
    shifted = desc_map + common[:, None, None]   # every cell shares one direction (an illumination-like bias)
    plain = sample_descriptors(keypoints[:200], shifted)
    centred = sample_descriptors(keypoints[:200], shifted, normalise="centred")
    assert np.mean(plain[:, 0]) > 0.5 and abs(np.mean(centred[:, 0])) < 0.1


# -- the registrar and the decode stream ---------------------------------------------------------
def _config(random_superretina, tmp_path, extra: dict):  # noqa: F811
    cfg = yaml.safe_load(random_superretina.fast_config.read_text())
    cfg.update(extra)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory, photo):
    folder = tmp_path_factory.mktemp("a_variants")
    refer = cv2.resize(photo, (320, 320))
    query = np.roll(refer, (7, -5), axis=(0, 1))
    paths = folder / "query.jpg", folder / "refer.jpg"
    for p, img in zip(paths, (query, refer)):
        cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return paths


@pytest.mark.parametrize("setting", [{"normalise": "root"}, {"interpolation": "bicubic"}, {"pool": 4.0}])
def test_descriptor_setting_changes_the_registration(random_superretina, tmp_path, jpegs, setting):  # noqa: F811
    with open_app(random_superretina.fast_config, random_superretina.pipeline, "local") as app:
        base = app.registrar.register_files(*jpegs)
    with open_app(_config(random_superretina, tmp_path, {"descriptors": setting}),
                  random_superretina.pipeline, "local") as app:
        other = app.registrar.register_files(*jpegs)
    assert np.array_equal(base.query.xy, other.query.xy)          # same keypoints ...
    assert not np.allclose(base.query.descriptors, other.query.descriptors, atol=1e-3)   # ... other descriptors


def test_stream_with_the_same_enhancement_is_used_and_matches_the_driver(
        random_superretina, tmp_path, jpegs):  # noqa: F811
    pipe = json.loads(random_superretina.pipeline.read_text())
    pipe["superretina_decode"]["superretina_enhance0"]["props"].update(claheClip="4", gamma="1.0", channel="luminance")
    path = tmp_path / "clip4.pipeline"
    path.write_text(json.dumps(pipe))
    settings = EnhanceSettings(clahe_clip=4.0, gamma=1.0, channel="luminance")
    assert read_layout(path).decode.enhance == settings
    same = {"enhance": {"clahe_clip": 4.0, "gamma": 1.0, "channel": "luminance"}}
    with open_app(_config(random_superretina, tmp_path, same), path, "local") as app:
        streamed = app.registrar.register_files(*jpegs)
        app.config["input"]["stream_decode"] = False
        driver = app.registrar.register_files(*jpegs)
    assert (streamed.decoded_in, driver.decoded_in) == ("stream", "driver")
    photo = cv2.imread(str(jpegs[0]), cv2.IMREAD_COLOR)
    assert np.array_equal(streamed.query_equalised, equalise(photo, settings))
    assert np.array_equal(streamed.query_equalised, driver.query_equalised)
    assert np.array_equal(streamed.query.descriptors, driver.query.descriptors)
    assert np.array_equal(streamed.first.matches, driver.first.matches)
    # The default config with that pipeline: the stream enhances otherwise, so the driver reads.
    with open_app(random_superretina.fast_config, path, "local") as app:
        res = app.registrar.register_files(*jpegs)
    assert res.decoded_in == "driver" and np.array_equal(res.query_equalised, equalise(photo))


def test_bad_enhancement_property_is_one_line(random_superretina, tmp_path):  # noqa: F811
    pipe = json.loads(random_superretina.pipeline.read_text())
    pipe["superretina_decode"]["superretina_enhance0"]["props"]["claheClip"] = "strong"
    path = tmp_path / "bad.pipeline"
    path.write_text(json.dumps(pipe))
    with pytest.raises(PipelineError, match="claheClip") as err:
        read_layout(path)
    assert "\n" not in str(err.value)
