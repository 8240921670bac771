"""`export-transform` (issue 20, item 11): a saved result's transform read back by scikit-image,
OpenCV and SimpleITK, and compared with the result's own mapping and warp.

One real registration (the shipped default model on a small demo pair) gives a
result.json; two variants of it carry a known homography and a known curved quadratic (fitted
to a bent mapping), so that each format is checked on both models.
"""
import json

import cv2
import numpy as np
import pytest

from superretina.api import Session, load_result
from superretina.demo import make_pair
from superretina.export_transform import export_transform, polynomial_params, skimage_params
from superretina.transform import HomographyTransform, fit_quadratic
from tests.model_fixtures import assert_one_line_error, run_cli

skimage_transform = pytest.importorskip("skimage.transform")


@pytest.fixture(scope="module")
def images(retina_bgr):
    refer = cv2.resize(retina_bgr, (320, 288), interpolation=cv2.INTER_AREA)   # not square: axes kept apart
    query, _, _ = make_pair(refer)
    return cv2.resize(query, (300, 270), interpolation=cv2.INTER_AREA), refer


@pytest.fixture(scope="module")
def saved(images, tmp_path_factory):
    """{'registered': folder of the real result, 'homography': ..., 'quadratic': ...}: result.json folders."""
    query, refer = images
    root = tmp_path_factory.mktemp("export")
    with Session(runtime="local") as session:
        reg = session.register(query, refer)
    assert reg.registered, reg
    reg.save(root / "registered")
    info = reg.to_json()
    H = np.array([[1.03, 0.05, 6.0], [-0.04, 0.98, -4.0], [2e-5, -1e-5, 1.0]])
    g = np.stack(np.meshgrid(np.linspace(0, 299, 12), np.linspace(0, 269, 11)), -1).reshape(-1, 2)
    bent = HomographyTransform(H).apply(g) + 2e-4 * (g - 150) ** 2 * [1, -1]   # a curved mapping
    quad, _ = fit_quadratic(g, bent)
    out = {"registered": root / "registered"}
    for name, t in (("homography", HomographyTransform(H)), ("quadratic", quad)):
        folder = root / name
        folder.mkdir()
        (folder / "result.json").write_text(json.dumps({**info, "status": "registered", "reason": None,
                                                        "homography": H.tolist(), "transform": t.to_json()}))
        out[name] = folder
    return out


def _points(reg, n=200):
    rng = np.random.default_rng(0)
    return rng.uniform([0, 0], [reg.query_size[1] - 1, reg.query_size[0] - 1], (n, 2))


@pytest.mark.parametrize("model", ["homography", "quadratic"])
def test_skimage_parameters_map_as_the_result(saved, tmp_path, model):
    path = export_transform(saved[model], "skimage", tmp_path / "t.json")
    data = json.loads(path.read_text())
    reg = load_result(saved[model])
    pts = _points(reg)
    if model == "homography":
        assert data["class"] == "ProjectiveTransform"
        tform = skimage_transform.ProjectiveTransform(matrix=np.array(data["matrix"]))
        np.testing.assert_allclose(tform.inverse(tform(pts)), pts, atol=1e-8)
    else:
        assert data["class"] == "PolynomialTransform" and data["order"] == 2
        tform = skimage_transform.PolynomialTransform(np.array(data["params"]))
        # scikit-image's own fit of the same mapping gives the same 12 numbers: same basis, same order.
        fitted = skimage_transform.PolynomialTransform()
        assert fitted.estimate(pts, reg.transform.apply(pts), order=2)
        np.testing.assert_allclose(fitted.params, np.array(data["params"]), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(tform(pts), reg.transform.apply(pts), atol=1e-6)


def test_polynomial_params_are_the_expanded_normalised_quadratic(saved, tmp_path):
    from superretina.transform import transform_from_json

    reg = load_result(saved["quadratic"])
    t = transform_from_json(reg.transform.to_json())
    x, y = 123.4, 56.7
    basis = np.array([1, x, y, x * x, x * y, y * y])
    np.testing.assert_allclose(polynomial_params(t) @ basis, t.apply([[x, y]])[0], atol=1e-9)
    # The Python API takes the in-memory Registration as well as a path.
    assert skimage_params(reg)["params"] == json.loads(
        export_transform(saved["quadratic"], "skimage", tmp_path / "p.json").read_text())["params"]


@pytest.mark.parametrize("model", ["homography", "quadratic", "registered"])
def test_opencv_maps_warp_as_the_result(saved, images, tmp_path, model):
    query, _ = images
    path = export_transform(saved[model], "opencv-maps", tmp_path / "maps.npz")
    with np.load(path) as z:
        mx, my = z["map_x"], z["map_y"]
    reg = load_result(saved[model])
    assert mx.shape == my.shape == reg.refer_size and mx.dtype == np.float32
    warped = cv2.remap(query, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    expected = reg.transform.warp(query)
    diff = np.abs(warped.astype(int) - expected.astype(int))
    assert diff.mean() < 0.5 and np.percentile(diff, 99.5) <= 2, (diff.mean(), diff.max())
    # The maps are the inverse of the forward mapping: forward(map(p)) = p inside the query.
    ys, xs = np.mgrid[20:reg.refer_size[0] - 20:37, 20:reg.refer_size[1] - 20:41]
    q = np.stack([mx[ys, xs], my[ys, xs]], -1).reshape(-1, 2).astype(np.float64)
    inside = (q >= 0).all(1) & (q[:, 0] < reg.query_size[1]) & (q[:, 1] < reg.query_size[0])
    p = np.stack([xs, ys], -1).reshape(-1, 2)[inside]
    np.testing.assert_allclose(reg.transform.apply(q[inside]), p, atol=0.01)


@pytest.mark.parametrize("suffix", [".mha", ".nii.gz"])
@pytest.mark.parametrize("model", ["homography", "quadratic"])
def test_displacement_field_read_by_simpleitk(saved, images, tmp_path, model, suffix):
    sitk = pytest.importorskip("SimpleITK", reason="the round trip reads the field with SimpleITK")
    query, refer = images
    path = export_transform(saved[model], "displacement", tmp_path / f"field{suffix}")
    image = sitk.ReadImage(str(path))
    reg = load_result(saved[model])
    h, w = reg.refer_size
    assert image.GetSize() == (w, h) and image.GetNumberOfComponentsPerPixel() == 2
    np.testing.assert_allclose(image.GetSpacing(), (1, 1))
    np.testing.assert_allclose(image.GetOrigin(), (0, 0), atol=1e-12)
    np.testing.assert_allclose(image.GetDirection(), (1, 0, 0, 1), atol=1e-12)
    tx = sitk.DisplacementFieldTransform(sitk.Cast(image, sitk.sitkVectorFloat64))
    # ITK's transform maps reference (fixed) points to the query (moving) points they show.
    for p in ([40.0, 50.0], [160.0, 140.0], [250.0, 200.0]):
        q = np.array(tx.TransformPoint(p))
        np.testing.assert_allclose(reg.transform.apply([q])[0], p, atol=0.01)
    # Resampling the query through it gives the result's warp.
    moving = sitk.GetImageFromArray(cv2.cvtColor(query, cv2.COLOR_BGR2GRAY).astype(np.float32))
    fixed = sitk.GetImageFromArray(np.zeros((h, w), np.float32))
    warped = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, tx, sitk.sitkLinear, 0.0))
    expected = reg.transform.warp(cv2.cvtColor(query, cv2.COLOR_BGR2GRAY)).astype(np.float32)
    inner = (slice(2, h - 2), slice(2, w - 2))   # ITK and OpenCV treat the last half pixel differently
    diff = np.abs(warped[inner] - expected[inner])
    assert diff.mean() < 0.5 and np.percentile(diff, 99) < 2.0, (diff.mean(), diff.max())


def test_mha_is_readable_without_simpleitk(saved, tmp_path):
    """The .mha is written with numpy alone; its header and data parse back by hand."""
    path = export_transform(saved["quadratic"], "displacement", tmp_path / "field.mha")
    raw = path.read_bytes()
    head, _, data = raw.partition(b"ElementDataFile = LOCAL\n")
    fields = dict(line.split(" = ") for line in head.decode().splitlines())
    w, h = map(int, fields["DimSize"].split())
    assert fields["ElementType"] == "MET_FLOAT" and fields["ElementNumberOfChannels"] == "2"
    arr = np.frombuffer(data, "<f4").reshape(h, w, 2)
    reg = load_result(saved["quadratic"])
    p = np.array([100.0, 120.0])
    np.testing.assert_allclose(reg.transform.apply([p + arr[120, 100]])[0], p, atol=0.01)


def test_cli_default_names_and_one_line_errors(saved, tmp_path):
    proc = run_cli("export-transform", saved["quadratic"], "--format", "skimage")
    assert proc.returncode == 0, proc.stderr
    assert (saved["quadratic"] / "transform_skimage.json").is_file()
    assert f"wrote {saved['quadratic'] / 'transform_skimage.json'}" in proc.stdout
    assert_one_line_error(run_cli("export-transform", saved["homography"], "--format", "opencv-maps",
                                  "--out", tmp_path / "maps.json"), "maps.json", ".npz")
    assert_one_line_error(run_cli("export-transform", tmp_path / "nothere", "--format", "skimage"), "nothere")
    failed = tmp_path / "failed"
    failed.mkdir()
    info = json.loads((saved["homography"] / "result.json").read_text())
    (failed / "result.json").write_text(json.dumps({**info, "status": "failed", "reason": "too few matches",
                                                    "homography": None, "transform": None}))
    assert_one_line_error(run_cli("export-transform", failed, "--format", "displacement"),
                          "no transform to export", "too few matches")
