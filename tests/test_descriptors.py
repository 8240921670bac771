"""Tests of superretina.descriptors (method §2 step 6)."""
import numpy as np
import pytest
import torch

from superretina.descriptors import sample_descriptors
from benchmarks.reference_torch import ref_sample


def test_hand_case_bilinear_and_normalisation():
    # scale=1 and w=h=2: x / (2*1 - 1) * 2 - 1 in [-1, 1], then (g + 1) / 2 * (2 - 1) = x,
    # so keypoints are plain map coordinates.
    dmap = np.zeros((2, 2, 2), np.float32)
    dmap[0] = [[0.0, 1.0], [2.0, 3.0]]
    dmap[1] = 1.0
    kps = np.array([[0.5, 0.0], [1.0, 1.0], [0.5, 0.5]], np.float32)
    out = sample_descriptors(kps, dmap, scale=1)
    # (0.5, 0): ch0 = 0.5, ch1 = 1 -> / sqrt(1.25); (1, 1): (3, 1) / sqrt(10); centre: (1.5, 1).
    expected = np.array([[0.5, 1.0], [3.0, 1.0], [1.5, 1.0]])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert out.dtype == np.float32 and out.shape == (3, 2)
    assert np.allclose(out, expected, atol=1e-7)


def test_scale_8_maps_751_to_the_last_cell_and_pads_with_zeros():
    rng = np.random.default_rng(0)
    dmap = rng.standard_normal((16, 94, 94)).astype(np.float32)
    cell = lambda y, x: dmap[:, y, x] / np.linalg.norm(dmap[:, y, x])  # noqa: E731
    out = sample_descriptors(np.array([[0, 0], [751, 751], [751, 0]], np.float32), dmap)
    assert np.allclose(out, [cell(0, 0), cell(93, 93), cell(0, 93)], atol=1e-6)
    # Past 751 (the reference's w*8-1) the right-hand corners fall outside: only the
    # in-map corner contributes, so the direction is still that cell's.
    beyond = sample_descriptors(np.array([[759, 0]], np.float32), dmap)
    assert np.allclose(beyond[0], cell(0, 93), atol=1e-6)
    # Entirely outside: all corners padded with zeros, the row stays zero (eps in normalise).
    far = sample_descriptors(np.array([[-30, -30], [900, 5]], np.float32), dmap)
    assert np.array_equal(far, np.zeros((2, 16), np.float32))


def test_equals_torch_grid_sample_on_random_maps():
    rng = np.random.default_rng(1)
    dmap = rng.standard_normal((256, 94, 94)).astype(np.float32)
    kps = np.concatenate([rng.uniform(-10, 780, (500, 2)),
                          rng.integers(0, 768, (500, 2)),
                          [[0, 0], [751, 751], [767, 767], [763, 4]]]).astype(np.float32)
    ours = sample_descriptors(kps, dmap)
    ref = ref_sample(torch.from_numpy(kps), torch.from_numpy(dmap)).numpy()
    assert np.abs(ours - ref).max() < 1e-6


def test_non_square_map_uses_each_axis_size():
    rng = np.random.default_rng(2)
    dmap = rng.standard_normal((8, 30, 50)).astype(np.float32)
    kps = rng.uniform(0, 390, (200, 2)).astype(np.float32)
    ref = ref_sample(torch.from_numpy(kps), torch.from_numpy(dmap)).numpy()
    assert np.abs(sample_descriptors(kps, dmap[None]) - ref).max() < 1e-6  # (1, C, h, w) accepted


def test_empty_and_bad_input():
    assert sample_descriptors(np.empty((0, 2), np.float32), np.zeros((4, 3, 3), np.float32)).shape == (0, 4)
    with pytest.raises(ValueError, match=r"\(C, h, w\)"):
        sample_descriptors(np.zeros((1, 2), np.float32), np.zeros((3, 3), np.float32))
