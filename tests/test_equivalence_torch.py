"""Equivalence of the NumPy/OpenCV post-processing with a plain PyTorch implementation of §2.

Maps with real image structure come from a seeded random-weights stand-in network
(benchmarks/reference_torch.py) run on enhanced fundus photographs: the query, and a copy warped by
a known homography (for the shared CHASE image also resized, so query and reference differ in
size). Both implementations then process the same (2, 1, 768, 768) detector and
(2, 256, 94, 94) descriptor maps.

Keypoint scaling to the original image has two conventions, compared explicitly:
* reference: ``int(x / 768 * W)`` in float32, truncated -- used by tests that must reproduce
  the reference's matches and homography exactly;
* project: float ``x * W / 768`` -- kept by the registration code; its homography is close to
  the truncated one (and, on these pairs, closer to the true warp).
"""
import cv2
import numpy as np
import pytest

from superretina.descriptors import sample_descriptors
from superretina.enhance import enhance, to_model_input
from superretina.homography import estimate_homography, transform_points
from superretina.keypoints import detect, to_original
from superretina.matching import ratio_match
from benchmarks.reference_torch import MODEL_SIZE, ref_match, ref_register, stand_in_maps, warped_pair

MODEL = (MODEL_SIZE, MODEL_SIZE)


@pytest.fixture(scope="module", params=["skimage-retina", "shared-chase_01L"])
def case(request):
    if request.param == "skimage-retina":
        bgr = request.getfixturevalue("retina_bgr")
        query, refer, H_true = warped_pair(bgr, 1.0)
    else:
        path = request.getfixturevalue("shared_data") / "fundus" / "chase_01L.png"
        query, refer, H_true = warped_pair(cv2.imread(str(path), cv2.IMREAD_COLOR), 0.8)
    sizes = [query.shape[:2], refer.shape[:2]]
    inputs = np.stack([to_model_input(enhance(query), MODEL), to_model_input(enhance(refer), MODEL)])
    det, desc = stand_in_maps(inputs)
    ref = ref_register(det, desc, sizes)

    ours = {"keypoints": [], "scores": [], "descriptors": [], "scaled": [], "scaled_float": []}
    for i in range(2):
        kp, sc = detect(det[i])
        ours["keypoints"].append(kp)
        ours["scores"].append(sc)
        ours["descriptors"].append(sample_descriptors(kp, desc[i]))
        ours["scaled"].append(to_original(kp, MODEL, sizes[i], truncate=True))
        ours["scaled_float"].append(to_original(kp, MODEL, sizes[i]))
    ours["matches"] = ratio_match(ours["descriptors"][0], ours["descriptors"][1])
    m = ours["matches"]
    ours["result"] = estimate_homography(ours["scaled"][0][m[:, 0]], ours["scaled"][1][m[:, 1]])
    ours["result_float"] = estimate_homography(ours["scaled_float"][0][m[:, 0]],
                                               ours["scaled_float"][1][m[:, 1]])
    return {"det": det, "desc": desc, "sizes": sizes, "H_true": H_true, "ref": ref, "ours": ours}


def test_maps_have_the_network_shapes_and_enough_keypoints(case):
    assert case["det"].shape == (2, 1, 768, 768) and case["desc"].shape == (2, 256, 94, 94)
    assert all(1000 < len(k) < 5000 for k in case["ref"]["keypoints"])


def test_keypoints_and_scores_identical(case):
    for i in range(2):
        assert np.array_equal(case["ours"]["keypoints"][i], case["ref"]["keypoints"][i])
        assert np.array_equal(case["ours"]["scores"][i], case["ref"]["scores"][i])


def test_descriptors_within_1e_5(case):
    for i in range(2):
        ours, ref = case["ours"]["descriptors"][i], case["ref"]["descriptors"][i]
        assert ours.shape == ref.shape == (len(case["ref"]["keypoints"][i]), 256)
        assert np.abs(ours - ref).max() < 1e-5


def test_scaled_keypoints_both_conventions(case):
    for i in range(2):
        trunc = case["ours"]["scaled"][i]
        assert np.array_equal(trunc, case["ref"]["scaled"][i])          # reference: identical
        flt = case["ours"]["scaled_float"][i]
        assert np.all((flt - trunc >= -1e-3) & (flt - trunc < 1.0 + 1e-3))  # float: < 1 px above


def test_matches_identical(case):
    assert len(case["ref"]["matches"]) > 200
    assert np.array_equal(case["ours"]["matches"], case["ref"]["matches"])
    # Also on the reference's own descriptors (same input to both matchers).
    d = case["ref"]["descriptors"]
    assert np.array_equal(ratio_match(d[0], d[1]), ref_match(d[0], d[1]))


def test_homography_identical_with_reference_truncation(case):
    res, ref = case["ours"]["result"], case["ref"]
    assert res.ok and ref["H"] is not None
    assert np.allclose(res.H, ref["H"] / ref["H"][2, 2], rtol=1e-9, atol=1e-12)
    assert np.array_equal(res.inlier_mask, ref["mask"])
    assert res.inlier_rate == pytest.approx(ref["mask"].sum() / len(ref["mask"]))


def test_homography_with_float_keypoints_is_close(case):
    res, res_t = case["ours"]["result_float"], case["ours"]["result"]
    assert res.ok
    h, w = case["sizes"][0]
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], float)
    moved = transform_points(res.H, corners)
    # Same matches, coordinates differing by < 1 px: the models agree within a few pixels ...
    assert np.abs(moved - transform_points(res_t.H, corners)).max() < 5.0
    # ... and both register the known warp (the stand-in descriptors are far from SuperRetina's).
    assert np.abs(moved - transform_points(case["H_true"], corners)).max() < 6.0
