"""TorchScript models (``.pt``) in mxpi_tensorinfer: the engine for GPUs through PyTorch, run on the CPU here."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch", reason="TorchScript export and engine need PyTorch (the train extra)")

from mxlocal.model_runtime import ModelLoadError, TorchScriptModel, open_model  # noqa: E402
from superretina.app import open_app  # noqa: E402
from superretina.demo import make_pair  # noqa: E402
from superretina.model.export import export_torchscript, main as export_main  # noqa: E402
from tests.model_fixtures import random_superretina, write_pipeline  # noqa: E402,F401  (pytest fixture)


@pytest.fixture(scope="module")
def scripted(random_superretina, tmp_path_factory):  # noqa: F811
    return export_torchscript(random_superretina.checkpoint, tmp_path_factory.mktemp("ts") / "random.pt")


def test_torchscript_engine_computes_what_the_onnx_does(random_superretina, scripted, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MXLOCAL_TORCH_DEVICE", "cpu")
    model = open_model(scripted)
    assert isinstance(model, TorchScriptModel) and model.on_cpu and "cpu" in model.engine
    # where the module's weights are, as PyTorch says: what result.json records
    assert model.report() == {"device": "cpu", "name": "torch", "version": torch.__version__, "providers": ["cpu"]}
    assert [t.describe() for t in model.inputs] == ["input[-1, 1, -1, -1] FLOAT32"]
    assert [t.name for t in model.outputs] == ["detector", "descriptor"]
    x = np.random.default_rng(0).random((2, 1, 96, 128)).astype(np.float32)  # not the traced size
    det, desc = model.run([x])
    ref_det, ref_desc = ort.InferenceSession(str(random_superretina.onnx), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})
    np.testing.assert_allclose(det, ref_det, atol=1e-4)
    np.testing.assert_allclose(desc, ref_desc, atol=1e-4)


def test_pipeline_with_a_torchscript_model_registers_like_onnx(random_superretina, scripted, retina_bgr,  # noqa: F811
                                                                tmp_path, monkeypatch):
    monkeypatch.setenv("MXLOCAL_TORCH_DEVICE", "cpu")
    query, _, _ = make_pair(retina_bgr)
    pipe = write_pipeline(tmp_path / "ts.pipeline", scripted.resolve())
    with open_app(random_superretina.fast_config, pipe, "local") as app:
        res = app.registrar.register_images(query, retina_bgr)
    with open_app(random_superretina.fast_config, random_superretina.pipeline, "local") as app:
        ref = app.registrar.register_images(query, retina_bgr)
    assert len(res.query.xy) == len(ref.query.xy) and len(res.refer.xy) == len(ref.refer.xy)
    # the same keypoints; their subpixel offsets (keypoints.subpixel) follow the float outputs
    np.testing.assert_allclose(res.query.xy, ref.query.xy, rtol=0, atol=0.1)


def test_a_plain_torchscript_file_is_refused_with_the_reason(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.ReLU()), str(plain))
    with pytest.raises(ModelLoadError, match="plain.pt.*mxlocal.json"):
        open_model(plain)


def test_export_cli_writes_torchscript_and_refuses_static(random_superretina, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "cli.pt"
    assert export_main([str(random_superretina.checkpoint), str(out)]) == 0
    assert open_model(out).outputs[1].dims == [-1, 256, -1, -1]
    with pytest.raises(SystemExit, match="--static is for ONNX"):
        export_main([str(random_superretina.checkpoint), str(tmp_path / "s.pt"), "--static"])
