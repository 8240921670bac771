"""The status decision (issue 17, part 3): field-of-view keypoint mask, evidence, confidence.

Runs the shipped default model on scikit-image's CC0 retina (the demo's known-homography pair,
700 px) and, where ../shared/data is present, on a different-subject pair of the fundus set.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

import superretina
from superretina.confidence import assess, implausibility
from superretina.config import ConfigError, load_config
from superretina.demo import control_point_error
from superretina.fov import inside, model_fov
from superretina.registrar import Timer
from superretina.transform import HomographyTransform, TransformChoice

MODEL_HW = (768, 768)


# --------------------------------------------------------------------------- field of view
def _rim_and_centre(mask_unreduced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A model-frame point on the disc's rim (the edge of the un-eroded mask along the middle
    row) and the disc's centre."""
    row = mask_unreduced[MODEL_HW[0] // 2]
    left = int(np.argmax(row))                      # first pixel inside the disc
    return np.array([left + 1.0, MODEL_HW[0] // 2]), np.array([MODEL_HW[1] / 2, MODEL_HW[0] / 2])


def test_model_fov_excludes_the_rim_and_keeps_the_centre(retina_bgr):
    plain = model_fov(retina_bgr, MODEL_HW, 0)
    eroded = model_fov(retina_bgr, MODEL_HW, 8)
    assert 0.3 < plain.mean() < 0.95            # the retina photograph's disc, not the whole frame
    rim, centre = _rim_and_centre(plain)
    assert inside(plain, [centre])[0] and inside(eroded, [centre])[0]
    assert not inside(eroded, [rim])[0]
    assert not inside(eroded, [[2.0, 2.0]])[0]   # the black corner


def test_flat_image_keeps_its_whole_frame():
    assert model_fov(np.full((300, 400), 120, np.uint8), MODEL_HW, 8).all()


def test_registrar_drops_a_keypoint_on_the_rim(session, retina_bgr):
    """A detector map with three peaks (centre, rim, corner): the registrar keeps the centre one."""
    reg = session._app.registrar
    fov = model_fov(retina_bgr, MODEL_HW, reg.cfg["keypoints"]["fov_margin"])
    rim, centre = _rim_and_centre(model_fov(retina_bgr, MODEL_HW, 0))
    det = np.zeros(MODEL_HW, np.float32)
    for x, y in (centre, rim, (20.0, 20.0)):
        det[int(y), int(x)] = 0.9
    desc = np.random.default_rng(0).normal(size=(256, MODEL_HW[0] // 8 - 2, MODEL_HW[1] // 8 - 2)).astype(np.float32)
    hw = retina_bgr.shape[:2]
    kept = reg._features(det, desc, hw, Timer(), fov=fov)
    everything = reg._features(det, desc, hw, Timer())
    assert len(everything.model_xy) == 3
    assert len(kept.model_xy) == 1
    np.testing.assert_allclose(kept.model_xy[0], np.floor(centre), atol=1.0)


# --------------------------------------------------------------------------- confidence
def test_confidence_orders_a_right_and_a_wrong_result_of_the_same_pair(session, demo):
    query, refer, G, pts = demo
    reg = session.register(query, refer)
    assert reg.registered and control_point_error(reg.homography, G, pts) < 5.0
    raw = reg._raw
    right = assess(raw, MODEL_HW)
    # The same pair's result with its transform moved 40 px (about 44 model px at 700 px)
    # and slightly rotated: a wrong registration of the same matches.
    wrong_res = copy.copy(raw)
    c, s = np.cos(0.02), np.sin(0.02)
    shift = np.array([[c, -s, 40.0], [s, c, -25.0], [0, 0, 1]])
    wrong_res.H = shift @ raw.H
    wrong_res.transform = TransformChoice(HomographyTransform(wrong_res.H), "homography")
    wrong = assess(wrong_res, MODEL_HW)
    assert right.implausible is None and wrong.implausible is None
    assert right.evidence.support > 3 * max(wrong.evidence.support, 1)
    assert right.confidence > 0.9 > 0.1 > wrong.confidence
    assert reg.confidence == pytest.approx(right.confidence, abs=1e-4)
    info = reg.to_json()
    assert 0.0 <= info["confidence"] <= 1.0 and info["assessment"]["evidence"]["support"] == right.evidence.support


def test_an_implausible_transform_is_named(session, demo):
    raw = session.register(demo[0], demo[1])._raw
    squashed = copy.copy(raw)
    squashed.H = np.diag([1.0, 3.0, 1.0]) @ raw.H            # y stretched 3x: no two fundus photographs
    squashed.transform = TransformChoice(HomographyTransform(squashed.H), "homography")
    a = assess(squashed, MODEL_HW)
    assert a.confidence == 0.0 and "anisotropy" in a.implausible
    assert a.failure(0.5).startswith("implausible transform")
    assert implausibility(raw.assessment.evidence) is None


@pytest.mark.parametrize("query, refer, reason", [
    ("drive_02.png", "drive_17.png", ""),               # issue 17's case: 10 rim inliers were `registered`
    ("chase_05R.png", "drive_11.png", "confidence "),   # reaches a transform: 8 supporting matches (0.8.0;
                                                         # 0.6.0's drive_20 -> drive_10 finds no homography now)
])
def test_a_different_subject_pair_fails_with_a_reason(session, shared_data, tmp_path, query, refer, reason):
    fundus = shared_data / "fundus"
    reg = session.register(fundus / query, fundus / refer)
    assert reg.status == "failed" and reg.reason and reg.reason.startswith(reason), reg.reason
    assert reg.confidence < session.config["confidence"]["min_confidence"]
    assert reg.homography is None and reg.transform is None
    saved = superretina.load_result(reg.save(tmp_path / "pair")[-1])
    assert saved.status == "failed" and saved.reason == reg.reason and saved.confidence == reg.confidence


# --------------------------------------------------------------------------- settings
@pytest.mark.parametrize("section, key, value, allowed", [
    ("keypoints", "fov_margin", -2, ">= -1"),
    ("keypoints", "fov_margin", 65, "<= 64"),
    ("keypoints", "fov_margin", 2.5, "an integer"),
    ("confidence", "min_confidence", 1.5, "<= 1"),
    ("confidence", "min_confidence", -0.1, ">= 0"),
    ("confidence", "min_confidence", "high", "a number"),
])
def test_new_settings_are_range_checked(tmp_path, section, key, value, allowed):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({section: {key: value}}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {section}.{key} must be ") and allowed in message and "\n" not in message
