"""Tests of superretina.matching (method §2 step 8) against cv2.BFMatcher."""
import cv2
import numpy as np
import pytest

from superretina.matching import ratio_match, two_nearest
from benchmarks.reference_torch import ref_match


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def bf_two_nearest(q, r):
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(q, r, k=2)
    return (np.array([[m.trainIdx, n.trainIdx] for m, n in knn]),
            np.array([[m.distance, n.distance] for m, n in knn], np.float32))


def test_hand_case():
    refs = np.array([[1, 0], [0, 1], [-1, 0]], np.float32)
    queries = np.array([[0.9, 0.1],    # d1 0.141 (ref 0), d2 1.273 (ref 1): kept
                        [0.5, 0.5],    # exact tie between refs 0 and 1: d1 == d2, rejected
                        [-0.2, 0.9],   # d1 0.224 (ref 1), d2 1.204 (ref 2): kept
                        [0.0, 0.0]],   # three-way tie: rejected
                       np.float32)
    assert ratio_match(queries, refs).tolist() == [[0, 0], [2, 1]]
    idx, dist = two_nearest(queries, refs)
    assert idx.tolist() == [[0, 1], [0, 1], [1, 2], [0, 1]]  # ties: lower index first
    assert np.allclose(dist[0], [np.hypot(0.1, 0.1), np.hypot(0.9, 0.9)], atol=1e-6)
    # With a permissive ratio a tie is a match, to the lower index, as with BFMatcher.
    assert ratio_match(queries, refs, ratio=1.5).tolist() == [[0, 0], [1, 0], [2, 1], [3, 0]]
    assert np.array_equal(ratio_match(queries, refs, ratio=1.5), ref_match(queries, refs, 1.5))


def test_fewer_than_two_references_or_no_queries_give_no_matches():
    q = unit(np.random.default_rng(0).standard_normal((5, 8)))
    assert ratio_match(q, q[:1]).shape == (0, 2)
    assert ratio_match(q, q[:0]).shape == (0, 2)
    assert ratio_match(q[:0], q).shape == (0, 2)
    assert ratio_match(q, q[:1]).dtype == np.int64
    assert np.array_equal(ratio_match(q, q[:2], ratio=2.0), ref_match(q, q[:2], 2.0))


@pytest.mark.parametrize("noise", [0.05, 0.3, 0.6])
def test_equals_bfmatcher_on_random_unit_descriptors(noise):
    rng = np.random.default_rng(int(noise * 100))
    r = unit(rng.standard_normal((700, 256)))
    q = unit(r[rng.integers(0, 700, 600)] + noise * rng.standard_normal((600, 256)))
    assert np.array_equal(ratio_match(q, r), ref_match(q, r))
    idx, dist = two_nearest(q, r)
    bf_idx, bf_dist = bf_two_nearest(q, r)
    assert np.array_equal(idx, bf_idx)
    assert np.abs(dist - bf_dist).max() < 1e-6


def test_duplicated_references_tie_to_the_lower_index():
    rng = np.random.default_rng(3)
    base = unit(rng.standard_normal((40, 32)))
    r = np.concatenate([base, base])          # every reference appears twice
    q = unit(base + 0.1 * rng.standard_normal(base.shape).astype(np.float32))
    idx, _ = two_nearest(q, r)
    assert np.array_equal(idx, bf_two_nearest(q, r)[0])
    assert np.array_equal(ratio_match(q, r, ratio=1.01), ref_match(q, r, 1.01))
    assert ratio_match(q, r).shape == (0, 2)  # d1 == d2 for every query


def test_large_offset_descriptors_where_the_product_formula_cancels():
    # |q|^2 + |r|^2 - 2 q.r loses ~7 digits here; candidates within the rounding bound are
    # re-ranked with direct differences, so the result is still BFMatcher's.
    rng = np.random.default_rng(4)
    r = (100.0 + rng.standard_normal((300, 64))).astype(np.float32)
    q = (r[rng.integers(0, 300, 200)] + 0.7 * rng.standard_normal((200, 64))).astype(np.float32)
    assert np.array_equal(two_nearest(q, r)[0], bf_two_nearest(q, r)[0])
    assert np.array_equal(ratio_match(q, r), ref_match(q, r))


def test_ratio_exactly_near_the_threshold():
    # Queries on the segment between two references, at distance ratio 0.9 * (1 +- delta):
    # inside the product's error bound, so these rows are decided from exact distances.
    rng = np.random.default_rng(5)
    n, c = 300, 128
    r = unit(rng.standard_normal((2 * n + 200, c)))
    delta = np.repeat([1e-4, -1e-4, 1e-5, -1e-5, 2e-6, -2e-6], n // 6)
    rho = 0.9 * (1.0 + delta)
    t = (rho / (1.0 + rho))[:, None]
    q = ((1.0 - t) * r[0:2 * n:2] + t * r[1:2 * n:2]).astype(np.float32)
    from superretina.matching import _float32_stage

    assert _float32_stage(q, r, 0.9).exact.sum() >= n // 2
    ours = ratio_match(q, r)
    assert np.array_equal(ours, ref_match(q, r))
    assert set(ours[:, 0]) == set(np.flatnonzero(delta < 0))  # d1 < 0.9 d2 exactly there


def test_shape_errors():
    with pytest.raises(ValueError, match="descriptors"):
        ratio_match(np.zeros((3, 4), np.float32), np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="at least 2"):
        two_nearest(np.zeros((3, 4), np.float32), np.zeros((1, 4), np.float32))
