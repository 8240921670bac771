"""The series' graph, frame and joint refinement on known geometry (no model: fast).

Four views with known homographies into the frame, noisy matches with outliers between some of
them: the joint refinement recovers the transforms better than chaining the pair estimates;
an image no pair reaches is left out, not forced in; pair selection stays near-linear.
"""
import numpy as np
import cv2
import pytest

from superretina.homography import transform_points
from superretina.series import frame, graph
from superretina.series.refine import EdgeMatches, refine
from superretina.transform import transform_from_json

SIDE = 400


def _truth(rng, k):
    """Homography image k -> frame: a rotation, scale, shift and a little keystone."""
    if k == 0:
        return np.eye(3)
    a, s = np.radians(rng.uniform(-8, 8)), rng.uniform(0.95, 1.05)
    c = (SIDE - 1) / 2
    R = np.array([[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0], [0, 0, 1]])
    T = np.array([[1, 0, c + rng.uniform(-60, 60)], [0, 1, c + rng.uniform(-60, 60)], [0, 0, 1]])
    K = np.array([[1, 0, 0], [0, 1, 0], [rng.uniform(-2e-4, 2e-4), rng.uniform(-2e-4, 2e-4), 1]])
    return T @ K @ R @ np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]])


def _matches(rng, G, i, j, n=40, noise=1.5, outliers=0.15):
    """Matches i -> j: points of image i that image j also shows, noisy, some wrong."""
    xi = rng.uniform(0, SIDE - 1, (4 * n, 2))
    xj = transform_points(np.linalg.inv(G[j]) @ G[i], xi)
    inside = np.all((xj >= 0) & (xj <= SIDE - 1), axis=1)
    xi, xj = xi[inside][:n], xj[inside][:n]
    xj = xj + rng.normal(0, noise, xj.shape)
    bad = rng.random(len(xj)) < outliers
    xj[bad] += rng.uniform(-40, 40, (int(bad.sum()), 2))
    return xi, xj


def _grid():
    g = np.linspace(0, SIDE - 1, 9)
    gx, gy = np.meshgrid(g, g)
    return np.stack([gx.ravel(), gy.ravel()], 1)


def _four_views(seed):
    """Known transforms, a longitudinal graph (strong neighbours in time, weaker skips) and the
    pair estimates (LMEDS), as a series gets them from its pairs."""
    rng = np.random.default_rng(seed)
    G = [_truth(rng, k) for k in range(4)]
    links = [(1, 0, 60), (2, 1, 60), (3, 2, 60), (2, 0, 25), (3, 1, 25), (3, 0, 25)]
    edges, pair_H, wedges = [], {}, []
    for i, j, n in links:
        xi, xj = _matches(rng, G, i, j, n=n, noise=2.0)
        H, mask = cv2.findHomography(xi, xj, cv2.LMEDS)
        inl = int(mask.sum())
        pair_H[(i, j)] = H
        edges.append(EdgeMatches(i, j, xi, xj, 1.0))
        wedges.append((i, j, inl / (inl + 20)))
    return G, edges, pair_H, wedges


def test_joint_refinement_beats_chaining_on_four_views():
    g = _grid()
    chain_all, joint_all = [], []
    for seed in range(4):
        G, edges, pair_H, wedges = _four_views(seed)
        H0 = frame.initial_homographies(4, 0, wedges, pair_H)
        res = refine([(SIDE, SIDE)] * 4, 0, H0, edges, "homography", scale_px=2.0)
        chain = np.mean([np.linalg.norm(transform_points(H0[k], g) - transform_points(G[k], g), axis=1).mean()
                         for k in (1, 2, 3)])
        joint = np.mean([np.linalg.norm(res.transforms[k].apply(g) - transform_points(G[k], g), axis=1).mean()
                         for k in (1, 2, 3)])
        assert joint < chain, (seed, chain, joint)
        assert res.cost["refined_median_px"] < res.cost["initial_median_px"]
        chain_all.append(chain)
        joint_all.append(joint)
        # the reference stays the identity, every transform round-trips through JSON
        assert np.allclose(res.transforms[0].apply(g), g)
        for t in res.transforms:
            back = transform_from_json(t.to_json())
            assert np.allclose(back.apply(g), t.apply(g)) and np.allclose(back.inverse(t.apply(g)), g, atol=1e-6)
    assert np.mean(joint_all) < 0.8 * np.mean(chain_all), (chain_all, joint_all)


def test_quadratic_kept_only_when_held_out_matches_say_so():
    """Homography data: the quadratic must not win by more than noise (auto needs a 10 % gain)."""
    rng = np.random.default_rng(5)
    G = [_truth(rng, k) for k in range(3)]
    links = [(1, 0), (2, 0), (2, 1)]
    edges, pair_H, wedges = [], {}, []
    for i, j in links:
        xi, xj = _matches(rng, G, i, j, n=120, noise=1.0, outliers=0.0)
        pair_H[(i, j)] = cv2.findHomography(xi, xj, 0)[0]
        edges.append(EdgeMatches(i, j, xi, xj, 1.0))
        wedges.append((i, j, 0.8))
    H0 = frame.initial_homographies(3, 0, wedges, pair_H)
    res = refine([(SIDE, SIDE)] * 3, 0, H0, edges, "auto", scale_px=2.0)
    assert res.model == "homography" and "held-out" in res.reason
    assert set(res.held_out) == {"homography", "quadratic"}


def test_an_image_no_pair_reaches_is_left_out():
    rng = np.random.default_rng(3)
    G = [_truth(rng, k) for k in range(3)]
    xi, xj = _matches(rng, G, 1, 0)
    H = cv2.findHomography(xi, xj, cv2.LMEDS)[0]
    wedges = [(1, 0, 0.7)]
    assert graph.components(3, [(1, 0)]) == [[0, 1], [2]]
    H0 = frame.initial_homographies(3, 0, wedges, {(1, 0): H})
    assert H0[2] is None
    res = refine([(SIDE, SIDE)] * 3, 0, H0, [EdgeMatches(1, 0, xi, xj)], "homography", 2.0)
    assert res.transforms[2] is None and res.transforms[1] is not None


def test_reference_is_the_best_connected_image():
    # a chain 0 - 1 - 2 - 3 - 4: the middle connects the others best
    wedges = [(0, 1, 0.9), (1, 2, 0.9), (2, 3, 0.9), (3, 4, 0.9)]
    assert frame.choose_reference(5, wedges) == 2
    assert frame.choose_reference(5, wedges, given=4) == 4


def test_pair_plan_is_all_pairs_for_few_images_and_near_linear_for_many():
    sim = np.random.default_rng(0).random((30, 30))
    sim = (sim + sim.T) / 2
    assert len(graph.initial_pairs(list(range(6)), sim[:6, :6], 8, 1, 2)) == 15
    plan = graph.initial_pairs(list(range(30)), sim, 8, 1, 2)
    assert len(plan) <= 30 * 3 < 435
    assert all((k, k + 1) in plan for k in range(29))                # neighbours in time
    # image 7 cut off, image 3 with one pair only: each gets one more untried partner
    registered = [(k, k + 1) for k in range(6)] + [(k, k + 1) for k in range(8, 29)] + [(0, 9)]
    new = graph.fill_pairs(30, set(registered), registered, sim, min_degree=2)
    assert any(7 in p for p in new) and all(p not in registered for p in new)


def test_edge_weight_is_confidence_times_precision():
    base = {"status": "registered", "num_inliers": 80, "inlier_rate": 0.5,
            "residuals": {"transform": {"within_5px": 0.6}}}
    assert graph.edge_weight(base) == pytest.approx(80 / 100 * 0.6)              # no confidence: precision
    assert graph.edge_weight({**base, "confidence": 0.42}) == pytest.approx(0.42 * 0.48)
    assert graph.edge_weight({**base, "residuals": None}) == pytest.approx(0.8 * 0.5)   # no residuals: inlier rate
    assert graph.edge_weight({**base, "num_inliers": 10}) < graph.edge_weight(base)
    assert graph.edge_weight({**base, "status": "failed"}) == 0.0


def test_thumbnail_similarity_ranks_the_same_eye_above_noise(retina_bgr):
    img = cv2.resize(retina_bgr, (512, 512))
    shifted = np.roll(img, 25, axis=1)
    noise = np.random.default_rng(0).integers(0, 255, img.shape, dtype=np.uint8)
    S = graph.similarity_matrix([graph.thumbnail(x) for x in (img, shifted, noise)])
    assert S[0, 1] > 2 * S[0, 2] and S[0, 1] == S[1, 0]
