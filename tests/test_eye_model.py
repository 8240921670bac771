"""Eye-model geometry of the synthetic sets: ground truth against an independent ray trace,
renderer against the point maps, FIRE-like homography residuals, manifest."""
import csv
import json
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from superretina.fire.eye_model import EyePairGeometry
from superretina.fire.protocol import list_pairs, load_control_points
from superretina.fire.synth import geometry_from_dict, make_synthetic_set

SIZE = 384


@pytest.fixture(scope="module")
def eye_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("eye") / "set"
    make_synthetic_set(out, ["skimage:retina"], pairs_per_image=6, size=SIZE, seed=5, progress=False)
    return out


def _trace(point, visit_from, visit_to, eye):
    """Independent ray trace of one pixel of ``visit_from`` into ``visit_to`` (dicts of
    synthetic.json): geometric ray-sphere intersection, scipy rotations, complex-number roll."""
    n, c = eye["nodal_offset"], (eye["size"] - 1) / 2
    f = eye["fov_span_px"] / 2 / math.tan(math.radians(eye["fov_deg"]) / 2)
    N = np.array([0.0, 0.0, -n])

    def gaze(v):
        phi = math.radians(v["gaze_direction_deg"])
        return Rotation.from_rotvec(math.radians(v["gaze_deg"]) * np.array([-math.sin(phi), math.cos(phi), 0.0]))

    z = complex(point[0] - c - visit_from["shift"][0], point[1] - c - visit_from["shift"][1])
    z = z / (visit_from["zoom"] * f) * complex(math.cos(math.radians(-visit_from["roll_deg"])),
                                              math.sin(math.radians(-visit_from["roll_deg"])))
    d = np.array([z.real, z.imag, 1.0])
    d /= np.linalg.norm(d)
    t_mid = -N @ d                                 # closest approach of the ray to the centre
    half = math.sqrt(1.0 - (N @ N - t_mid ** 2))   # half chord inside the unit sphere
    X = N + (t_mid + half) * d                     # far intersection: the retina
    assert abs(np.linalg.norm(X) - 1) < 1e-12
    P = gaze(visit_from).inv().apply(X)            # the retinal point of the unturned eye
    e = gaze(visit_to).apply(P) - N
    w = complex(e[0] / e[2], e[1] / e[2]) * complex(math.cos(math.radians(visit_to["roll_deg"])),
                                                   math.sin(math.radians(visit_to["roll_deg"])))
    w *= visit_to["zoom"] * f
    return np.array([c + visit_to["shift"][0] + w.real, c + visit_to["shift"][1] + w.imag])


def test_ground_truth_agrees_with_an_independent_ray_trace(eye_set):
    meta = json.loads((eye_set / "synthetic.json").read_text())
    assert meta["geometry"] == "eye"
    for p in list_pairs(eye_set):
        g = meta["pairs"][p.name]["geometry"]
        assert g["model"] == "eye"
        ref, qry = load_control_points(p.gt_path)
        for k in (0, 7):                           # two points per pair
            traced = _trace(qry[k], g["query_visit"], g["reference_visit"], g["eye"])
            assert np.hypot(*(traced - ref[k])) < 2e-3, (p.name, k, traced, ref[k])   # file: 4 decimals


def test_renderer_agrees_with_the_point_maps(eye_set):
    """Dots drawn on the canvas at the control points' canvas positions, rendered into both
    visits, land on the ground-truth positions."""
    from test_fire_synth import _centroid_error, _dot_image

    meta = json.loads((eye_set / "synthetic.json").read_text())
    for p in list_pairs(eye_set)[:3]:
        geom = geometry_from_dict(meta["pairs"][p.name]["geometry"])
        assert isinstance(geom, EyePairGeometry)
        ref, qry = load_control_points(p.gt_path)
        canvas = _dot_image(np.asarray(meta["pairs"][p.name]["canvas_points"]), SIZE)
        assert _centroid_error(geom.render_query(canvas), qry) < 0.5
        assert _centroid_error(geom.render_reference(canvas), ref) < 0.5
        assert np.abs(geom.query_to_reference(qry) - ref).max() < 1e-3


def test_homography_residuals_grow_with_the_gaze_change_and_a_quadratic_explains_them(eye_set):
    meta = json.loads((eye_set / "synthetic.json").read_text())
    recs = meta["pairs"].values()
    scale = 2912 / SIZE                            # the calibration is stated at FIRE size
    small = [r["best_homography_error_px"] * scale for r in recs if r["category"] in "SA"]
    large = [r["best_homography_error_px"] * scale for r in recs if r["category"] == "P"]
    assert 0.5 < np.mean(small) < 2.5 and 5.0 < np.mean(large) < 11.0, (small, large)
    for r in recs:
        assert r["best_quadratic_error_px"] < 0.5 * r["best_homography_error_px"]
        assert (r["gaze_change_deg"] > 15) == (r["category"] == "P")
    with open(eye_set / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["pair"] for r in rows] == sorted(meta["pairs"])
    assert all(float(r["best_homography_error_px"]) > 0 for r in rows)


def test_training_validation_set_uses_the_eye_model(tmp_path, retina_bgr):
    pytest.importorskip("torch")
    import cv2

    from superretina.training.validate import Validator

    src = tmp_path / "held.png"
    cv2.imwrite(str(src), retina_bgr)
    set_dir = tmp_path / "valset"
    make_synthetic_set(set_dir, [src], pairs_per_image=1, size=256, seed=1, progress=False, geometry="homography")
    Validator([src], {"set_dir": str(set_dir), "size": 256, "pairs_per_image": 1})   # rebuilds the old set
    meta = json.loads((set_dir / "synthetic.json").read_text())
    assert meta["geometry"] == "eye" and meta["pairs"]["S01"]["geometry"]["model"] == "eye"
