"""OpenVINO IR models in mxpi_tensorinfer (mxlocal.model_runtime) and their conversion."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

ov = pytest.importorskip("openvino")

from mxlocal.model_runtime import ModelLoadError, OpenVinoModel, open_model  # noqa: E402
from mxlocal_support import conv_model, get_tensors, pipeline, protobuf_in, tensor_array, tensor_package_list  # noqa: E402
from superretina.model.to_openvino import ConvertError, convert, main  # noqa: E402
from tests.model_fixtures import random_superretina  # noqa: E402,F401  (pytest fixture)


def _bf16_capable() -> bool:
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.fixture(scope="module")
def conv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ov")
    onnx_path = conv_model(folder / "conv.onnx", batch=2, size=16)
    return {"onnx": onnx_path, "f32": convert(onnx_path, folder / "conv_f32.xml", "f32"),
            "bf16": convert(onnx_path, folder / "conv_bf16.xml", "bf16")}


def _ort(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def test_f32_ir_matches_onnx_runtime(conv):
    x = np.random.default_rng(0).standard_normal((2, 1, 16, 16)).astype(np.float32)
    model = OpenVinoModel(conv["f32"])
    assert model.precision == "f32" and "f32" in model.engine
    assert [t.describe() for t in model.inputs] == ["x[2, 1, 16, 16] FLOAT32"]
    feat, pool = model.run([x])
    ref_feat, ref_pool = _ort(conv["onnx"], x)
    np.testing.assert_allclose(feat, ref_feat, atol=1e-5)
    np.testing.assert_allclose(pool, ref_pool, atol=1e-5)
    # The request's output memory is reused: earlier results must not change under a new run.
    before = feat.copy()
    model.run([x * 3])
    np.testing.assert_array_equal(feat, before)


def test_bf16_ir_carries_its_precision_and_stays_close(conv):
    x = np.random.default_rng(1).standard_normal((2, 1, 16, 16)).astype(np.float32)
    model = OpenVinoModel(conv["bf16"])
    assert model.precision == ("bf16" if _bf16_capable() else "f32")
    feat, _ = model.run([x])
    ref, _ = _ort(conv["onnx"], x)
    np.testing.assert_allclose(feat, ref, atol=0.05, rtol=0.02)  # bf16 keeps ~3 significant digits


def test_engine_is_chosen_by_suffix(conv, tmp_path):
    assert type(open_model(conv["f32"])).__name__ == "OpenVinoModel"
    assert type(open_model(conv["onnx"])).__name__ == "OnnxRuntimeModel"
    other = tmp_path / "model.tflite"
    other.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"model.tflite: unknown model format '.tflite'"):
        open_model(other)


def test_ir_without_its_weights_names_the_file(conv, tmp_path):
    xml = tmp_path / "lonely.xml"
    xml.write_text(conv["f32"].read_text())
    with pytest.raises(ModelLoadError, match="cannot load OpenVINO model .*lonely.xml"):
        OpenVinoModel(xml)


def test_stream_runs_an_ir_like_an_onnx_model(api, conv):
    props = {"dataSource": "appsrc0", "modelPath": str(conv["f32"]), "singleBatchInfer": "1"}
    assert api.CreateMultipleStreams(pipeline("ir", {"mxpi_tensorinfer0": ("mxpi_tensorinfer", props)})) == 0
    x = np.random.default_rng(2).standard_normal((2, 1, 16, 16)).astype(np.float32)
    assert api.SendProtobuf(b"ir", 0, protobuf_in(tensor_package_list(x))) == 0
    feat, pool = get_tensors(api, b"ir").tensorPackageVec[0].tensorVec
    ref_feat, ref_pool = _ort(conv["onnx"], x)
    np.testing.assert_allclose(tensor_array(feat, np.float32, ref_feat.shape), ref_feat, atol=1e-5)
    np.testing.assert_allclose(tensor_array(pool, np.float32, ref_pool.shape), ref_pool, atol=1e-5)
    assert list(feat.tensorShape) == [1, 4, 16, 16]  # SDK convention: leading dim reported as 1


def test_convert_refuses_bad_arguments(conv, tmp_path, capsys):
    with pytest.raises(ConvertError, match="no such ONNX model"):
        convert(tmp_path / "missing.onnx", tmp_path / "out.xml")
    with pytest.raises(ConvertError, match="must be an .xml path"):
        convert(conv["onnx"], tmp_path / "out.bin")
    assert main([str(tmp_path / "missing.onnx"), str(tmp_path / "o.xml")]) == 2
    assert "error:" in capsys.readouterr().err


def test_superretina_ir_rewrites_keep_the_outputs(random_superretina, tmp_path):
    """The real architecture: both CPU rewrites apply, and the f32 IR computes what the ONNX does."""

    xml = convert(random_superretina.onnx, tmp_path / "sr_f32.xml", "f32")
    rewrites = ov.Core().read_model(str(xml)).get_rt_info(["superretina", "cpu_rewrites"]).astype(str)
    assert rewrites == "concat_convolutions=3,transposed_convolutions=1"
    x = np.random.default_rng(3).random((1, 1, 96, 128)).astype(np.float32)
    model = OpenVinoModel(xml)
    det, desc = model.run([x])
    ref_det, ref_desc = ort.InferenceSession(str(random_superretina.onnx), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})
    assert det.shape == ref_det.shape and desc.shape == ref_desc.shape
    np.testing.assert_allclose(det, ref_det, atol=1e-4)
    np.testing.assert_allclose(desc, ref_desc, atol=1e-4)


def test_the_first_input_shape_runs_on_a_static_copy_with_the_same_outputs(random_superretina, tmp_path, monkeypatch):
    """A dynamic IR is compiled again for the first shape it runs (the model frame in the
    application); that copy gives the dynamic model's outputs bit for bit, other shapes keep the
    dynamic model, and a shape the network cannot take still fails alone."""
    xml = convert(random_superretina.onnx, tmp_path / "sr_f32.xml", "f32")
    rng = np.random.default_rng(5)
    frame, other = (rng.random((1, 1, 96, 128)).astype(np.float32) for _ in range(2))
    other = other[:, :, :64, :80].copy()
    monkeypatch.setenv("MXLOCAL_STATIC_SHAPES", "0")
    dynamic = OpenVinoModel(xml)
    expected = [dynamic.run([x]) for x in (frame, other, frame)]
    monkeypatch.setenv("MXLOCAL_STATIC_SHAPES", "1")
    model = OpenVinoModel(xml)
    got = [model.run([x]) for x in (frame, other, frame)]
    for g, e in zip(got, expected):
        for a, b in zip(g, e):
            np.testing.assert_array_equal(a, b)
    assert [k for k, v in model._static.items() if v is not None] == [((1, 1, 96, 128),)]
    with pytest.raises(Exception):
        model.run([np.zeros((1, 3), np.float32)])   # wrong rank: no static copy, the dynamic model fails
    np.testing.assert_array_equal(model.run([other])[0], expected[1][0])
    np.testing.assert_array_equal(model.run([frame])[1], expected[0][1])
