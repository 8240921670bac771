"""The decode stream (appsrc → mxpi_imagedecoder → superretina_enhance → mxpi_tensorinfer → appsink)
and the tensor stream of one pipeline file, and the thumbnails drawn at their own size.

* ``superretina_enhance`` gives the driver's model input and equalised image bit for bit, on a
  real JPEG decoded by the stream's decoder;
* ``register_files`` sends JPEGs through the decode stream and other formats through the tensor
  stream; both give the same keypoints, matches and homography as the driver's own reading;
* a JPEG the stream cannot decode falls back to the driver, which names the file;
* the pipeline's two streams must run one model; the Ascend pipeline holds SDK elements only.

Model: the session's random-weights SuperRetina (tests/model_fixtures.py); nothing here checks accuracy.
"""
import json
import threading

import cv2
import numpy as np
import pytest

from superretina.app import open_app
from superretina.enhance import equalise, model_input
from superretina.fov import half_fov, half_fov_hw
from superretina.image_io import ImageReadError
from superretina.stream_client import PipelineError, read_layout
from tests.model_fixtures import PROJECT_ROOT, random_superretina, write_pipeline  # noqa: F401

SIDE = 320


@pytest.fixture(scope="module")
def app(random_superretina):
    with open_app(random_superretina.fast_config, random_superretina.pipeline, "local") as opened:
        yield opened


@pytest.fixture(scope="module")
def files(tmp_path_factory, retina_bgr):
    """The retina photograph (JPEG, PNG) and a shifted copy of it (JPEG), SIDE x SIDE."""
    folder = tmp_path_factory.mktemp("stream_decode")
    refer = cv2.resize(retina_bgr, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    query = np.roll(refer, (9, -6), axis=(0, 1))
    paths = {"refer": folder / "refer.jpg", "query": folder / "query.jpg", "query_png": folder / "query.png"}
    cv2.imwrite(str(paths["refer"]), refer, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(paths["query"]), query, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(paths["query_png"]), cv2.imread(str(paths["query"])))   # same pixels as the JPEG decodes to
    return paths


def test_enhance_element_matches_the_driver_bit_for_bit(app, files):
    data = files["query"].read_bytes()
    decoded = app.stream.infer_encoded_async(data, image=True).result(timeout=120)
    photo = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    eq = equalise(photo)
    assert np.array_equal(decoded.image, photo)
    assert np.array_equal(decoded.equalised, eq)
    assert np.array_equal(decoded.model_input, model_input(eq, (768, 768)))
    det, desc = app.stream.infer(model_input(eq, (768, 768))[None, None])
    assert np.array_equal(decoded.detector, det) and np.array_equal(decoded.descriptor, desc)


def test_the_stream_sends_the_field_of_view_mask_instead_of_the_photograph(app, files):
    data = files["refer"].read_bytes()
    decoded = app.stream.infer_encoded_async(data).result(timeout=120)
    assert decoded.image is None
    photo = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    # the mask the driver finds on the photograph, at half the model frame, as 0/1 bytes
    assert decoded.fov.dtype == np.uint8 and decoded.fov.shape == half_fov_hw((768, 768))
    assert np.array_equal(decoded.fov, half_fov(photo, (768, 768)))
    assert 0.3 < decoded.fov.mean() < 0.95   # the retina's disc, not the whole frame
    # Without pictures nothing full-size comes back, and the keypoints are the driver's (same mask).
    assert app.config["keypoints"]["fov_margin"] >= 0
    streamed = app.registrar.register_files(files["query"], files["refer"])
    assert streamed.decoded_in == "stream" and streamed.query_image is None and streamed.refer_image is None
    app.config["input"]["stream_decode"] = False
    try:
        driver = app.registrar.register_files(files["query"], files["refer"])
    finally:
        app.config["input"]["stream_decode"] = True
    assert driver.decoded_in == "driver"
    _same(streamed, driver)


def _same(a, b):
    assert a.status == b.status
    assert np.array_equal(a.query.xy, b.query.xy) and np.array_equal(a.refer.xy, b.refer.xy)
    assert np.array_equal(a.first.matches, b.first.matches)
    assert (a.H is None and b.H is None) or np.array_equal(a.H, b.H)


def test_both_streams_give_the_drivers_result(app, files):
    cfg = app.config["input"]
    streamed = app.registrar.register_files(files["query"], files["refer"], images=True)
    assert streamed.decoded_in == "stream" and "stream" in streamed.seconds and "enhance" not in streamed.seconds
    cfg["stream_decode"] = False
    try:
        driver = app.registrar.register_files(files["query"], files["refer"], images=True)
    finally:
        cfg["stream_decode"] = True
    assert driver.decoded_in == "driver"
    _same(streamed, driver)
    assert np.array_equal(streamed.query_image, driver.query_image)
    assert np.array_equal(streamed.refer_equalised, driver.refer_equalised)
    # A PNG query: the tensor stream, same pixels, same result.
    png = app.registrar.register_files(files["query_png"], files["refer"])
    assert png.decoded_in == "driver"
    _same(png, driver)


def test_pairs_in_flight_through_the_decode_stream_keep_their_results(app, files):
    pairs = [(files["query"], files["refer"]), (files["refer"], files["query"])]
    alone = [app.registrar.register_files(q, r) for q, r in pairs[:2]]
    got = [None] * len(pairs)

    def run(i):
        got[i] = app.registrar.register_files(*pairs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(pairs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for i, res in enumerate(got):
        assert res is not None and res.decoded_in == "stream"
        _same(res, alone[i % 2])


def test_a_jpeg_the_stream_cannot_decode_is_named_by_the_driver(app, files, tmp_path):
    bad = tmp_path / "broken.jpg"
    data = files["refer"].read_bytes()
    bad.write_bytes(data[:600] + b"\x00" * 50)   # a valid header, then no image data
    with pytest.raises(ImageReadError, match="broken.jpg"):
        app.registrar.register_files(bad, files["refer"])
    # the stream still serves the next pair
    assert app.registrar.register_files(files["query"], files["refer"]).decoded_in == "stream"


def test_streams_must_run_one_model(tmp_path, random_superretina):
    cfg = json.loads(random_superretina.pipeline.read_text())
    cfg["superretina_decode"]["mxpi_tensorinfer0"]["props"]["modelPath"] = "other.onnx"
    path = tmp_path / "two_models.pipeline"
    path.write_text(json.dumps(cfg))
    with pytest.raises(PipelineError, match="both streams must run the same model"):
        read_layout(path)


def test_shipped_pipelines_layouts():
    for name in ("superretina.pipeline", "superretina_fp32.pipeline"):
        layout = read_layout(PROJECT_ROOT / "pipeline" / name)
        assert layout.decode is not None and layout.decode.model_hw == (768, 768)
        assert layout.infer_stream == b"superretina" and layout.decode.stream == b"superretina_decode"
    # The Ascend file stays runnable on the real SDK: only SDK elements, tensors in (docs/stream.md).
    ascend = PROJECT_ROOT / "pipeline" / "superretina_ascend.pipeline"
    factories = {el["factory"] for s in json.loads(ascend.read_text()).values() for el in s.values()
                 if isinstance(el, dict) and "factory" in el}
    assert factories <= {"appsrc", "mxpi_imagedecoder", "mxpi_imageresize", "mxpi_tensorinfer", "appsink"}
    assert read_layout(ascend).decode is None


def test_thumbnail_warp_is_the_transform_between_shrunk_frames():
    from superretina.thumbnails import _Scaled, thumbnail_warp
    from superretina.transform import HomographyTransform

    class Result:  # what thumbnail_warp reads of a RegistrationResult
        H = np.array([[1.02, 0.01, 5.0], [-0.02, 0.99, -3.0], [1e-5, 0.0, 1.0]])
        transform = None
        query_size = (400, 400)

    s = 0.25
    Hs = thumbnail_warp(Result, s, s, (100, 100))
    p = np.array([[10.0, 20.0], [300.0, 150.0]])
    t = HomographyTransform(Result.H)
    small = cv2.perspectiveTransform((p * s)[None], Hs)[0]
    assert np.allclose(small, t.apply(p) * s, atol=1e-9)
    scaled = _Scaled(t, s, s)
    assert np.allclose(scaled.inverse(t.apply(p) * s), p * s, atol=1e-9)


def test_thumbnail_maps_of_a_quadratic_follow_the_full_size_transform():
    from superretina.thumbnails import thumbnail_warp
    from superretina.transform import HomographyTransform, fit_quadratic

    rng = np.random.default_rng(0)
    pq = rng.uniform(0, 800, (200, 2))
    pr = pq * 1.01 + [12.0, -7.0] + 2e-5 * (pq - 400) ** 2   # a curved mapping, query → reference pixels
    quad, _ = fit_quadratic(pq, pr)

    class Choice:
        transform = quad

    class Result:
        H = np.eye(3)
        transform = Choice
        query_size = (800, 800)

    s = 0.25
    mx, my = thumbnail_warp(Result, s, s, (200, 200))
    assert not isinstance(quad, HomographyTransform) and mx.shape == (200, 200)
    # thumbnail pixel (x, y) shows query pixel (mx, my)/s; the transform maps that to (x, y)/s
    ys, xs = np.mgrid[20:180:16, 20:180:16]
    query = np.stack([mx[ys, xs].ravel(), my[ys, xs].ravel()], 1) / s
    refer = np.stack([xs.ravel(), ys.ravel()], 1) / s
    assert np.abs(quad.apply(query) - refer).max() < 0.05 / s   # within 0.05 thumbnail pixels
