"""Tests of superretina.keypoints (method §2 steps 5 and 7)."""
import numpy as np
import pytest
import torch

from superretina.keypoints import detect, simple_nms, to_original
from benchmarks.reference_torch import ref_detect, ref_simple_nms


def torch_nms(x: np.ndarray, radius: int) -> np.ndarray:
    return ref_simple_nms(torch.from_numpy(x)[None, None], radius)[0, 0].numpy()


# ---------------------------------------------------------------------------- simple_nms
def test_simple_nms_hand_case_second_round_recovers_a_distant_peak():
    # Radius 1. 1.0 is a maximum; 0.9 is not (its window holds 1.0) and is suppressed; 0.8 is
    # not a maximum at first (its window holds 0.9) but becomes one once the window of 1.0 is
    # zeroed, and lies outside that window: SuperPoint keeps it.
    row = np.array([[1.0, 0.9, 0.8, 0.0, 0.0, 0.3]], np.float32)
    out = simple_nms(row, 1)
    assert np.array_equal(out, np.array([[1.0, 0.0, 0.8, 0.0, 0.0, 0.3]], np.float32))


def test_simple_nms_plateau_keeps_every_equal_pixel():
    x = np.zeros((5, 6), np.float32)
    x[2, 2] = x[2, 3] = 0.5  # two equal neighbours: both equal their window maximum
    x[0, 5] = 0.2
    out = simple_nms(x, 1)
    expected = np.zeros_like(x)
    expected[2, 2] = expected[2, 3] = 0.5
    expected[0, 5] = 0.2
    assert np.array_equal(out, expected)
    assert np.array_equal(out, torch_nms(x, 1))


def test_simple_nms_border_acts_as_minus_infinity_padding():
    # All-negative map: with zero padding the border pixels would never be maxima.
    x = -np.arange(1, 26, dtype=np.float32).reshape(5, 5)
    out = simple_nms(x, 2)
    assert out[0, 0] == -1.0  # the corner is the maximum of its clipped window
    assert np.array_equal(out, torch_nms(x, 2))


def test_simple_nms_radius_zero_keeps_everything():
    x = np.random.default_rng(0).random((7, 9)).astype(np.float32)
    assert np.array_equal(simple_nms(x, 0), x)


def test_simple_nms_equals_torch_on_random_maps_with_ties():
    rng = np.random.default_rng(1)
    for trial in range(60):
        h, w = rng.integers(1, 40, 2)
        r = int(rng.integers(0, 6))
        x = (rng.integers(0, 4, (h, w)) / 3).astype(np.float32) - (0.5 if trial % 2 else 0.0)
        assert np.array_equal(simple_nms(x, r), torch_nms(x, r)), (trial, h, w, r)


def test_simple_nms_rejects_bad_input():
    with pytest.raises(ValueError, match="radius"):
        simple_nms(np.zeros((3, 3), np.float32), -1)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        simple_nms(np.zeros((2, 3, 3), np.float32), 1)


# ---------------------------------------------------------------------------- detect
def test_detect_hand_case_threshold_border_and_order():
    h, w, b = 20, 30, 4
    x = np.zeros((h, w), np.float32)
    x[b, 10] = 0.5              # y == border: kept
    x[b - 1, 20] = 0.5          # y == border - 1: dropped
    x[h - b - 1, 5] = 0.7       # y == H - border - 1: kept
    x[12, w - b] = 0.9          # x == W - border: dropped
    x[12, w - b - 1 - 8] = 0.6  # interior, kept
    x[8, 15] = np.float32(0.01)  # not strictly above the threshold: dropped
    kps, scores = detect(x, nms_size=2, nms_thresh=0.01, border=b)
    assert kps.dtype == np.float32 and scores.dtype == np.float32
    # Row-major: sorted by y, then x; columns are (x, y).
    assert kps.tolist() == [[10, 4], [17, 12], [5, 15]]
    assert np.allclose(scores, [0.5, 0.6, 0.7])


def test_detect_equals_torch_reference_and_accepts_batch_axes():
    rng = np.random.default_rng(2)
    x = rng.random((120, 90)).astype(np.float32) ** 4
    kps, scores = detect(x[None, None], nms_size=3, nms_thresh=0.05, border=4)
    (ref_k, ref_s), = ref_detect(torch.from_numpy(x)[None, None], 3, 0.05, 4)
    assert np.array_equal(kps, ref_k.numpy()) and np.array_equal(scores, ref_s.numpy())
    assert len(kps) > 50


def test_detect_empty_results():
    kps, scores = detect(np.zeros((16, 16), np.float32))
    assert kps.shape == (0, 2) and scores.shape == (0,)
    kps, _ = detect(np.ones((6, 6), np.float32), border=3)  # no interior left
    assert kps.shape == (0, 2)


# ---------------------------------------------------------------------------- to_original
def test_to_original_float_and_truncated_conventions():
    kp = np.array([[767.0, 0.0], [383.0, 500.0]], np.float32)
    out = to_original(kp, (768, 768), (960, 999))  # (height, width)
    assert np.allclose(out, [[767 * 999 / 768, 0.0], [383 * 999 / 768, 500 * 960 / 768]])
    trunc = to_original(kp, (768, 768), (960, 999), truncate=True)
    # int(767 / 768 * 999) = int(997.699) = 997; int(383/768*999) = 498; int(500/768*960) = 625
    assert trunc.tolist() == [[997.0, 0.0], [498.0, 625.0]]
    ref = [(int(torch.tensor(x) / 768 * 999), int(torch.tensor(y) / 768 * 960)) for x, y in kp]
    assert trunc.tolist() == [list(map(float, p)) for p in ref]


# ---------------------------------------------------------------------------- refine_subpixel
def test_subpixel_recovers_the_peak_of_a_sampled_parabola():
    from superretina.keypoints import refine_subpixel

    yy, xx = np.mgrid[0:20, 0:30].astype(np.float32)
    cx, cy = 12.3, 7.8  # true peak
    heat = (1.0 - 0.01 * ((xx - cx) ** 2 + (yy - cy) ** 2)).astype(np.float32)
    kp, _ = detect(heat, nms_size=30, nms_thresh=0.01, border=1)
    assert kp.tolist() == [[12.0, 8.0]]
    np.testing.assert_allclose(refine_subpixel(heat, kp), [[cx, cy]], atol=1e-4)


def test_subpixel_puts_a_two_pixel_plateau_in_between_and_leaves_edges():
    from superretina.keypoints import refine_subpixel

    heat = np.zeros((9, 9), np.float32)
    heat[4, 4] = heat[4, 5] = 0.8  # either pixel may win NMS: both refine to x = 4.5
    heat[3, 4] = heat[5, 4] = heat[3, 5] = heat[5, 5] = 0.4
    out = refine_subpixel(heat, np.array([[4, 4], [5, 4], [0, 4]], np.float32))
    np.testing.assert_allclose(out[:2], [[4.5, 4.0], [4.5, 4.0]])
    assert out[2].tolist() == [0.0, 4.0]  # on the map's edge: unchanged
    flat = np.full((5, 5), 0.5, np.float32)  # no curvature: unchanged
    assert refine_subpixel(flat, np.array([[2, 2]], np.float32)).tolist() == [[2.0, 2.0]]
