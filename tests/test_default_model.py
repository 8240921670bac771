"""The shipped models: the default (the lowrank2 network in int8, test_model_int8) registers
a warped scikit-image retina below 5 px through the default pipeline, as `bash run.sh` (the demo)
does on a fresh machine; the published-head model it was distilled from (fp32 ONNX, and its bf16
IR: ``--model bf16``) registers alike."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from superretina.app import open_app
from superretina.demo import control_point_error, make_pair

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "model" / "superretina.onnx"
BF16_IR = ROOT / "model" / "superretina_bf16.xml"
LOWRANK2_ONNX = ROOT / "model" / "superretina_lowrank2.onnx"
LOWRANK2_IR = ROOT / "model" / "superretina_lowrank2_bf16.xml"   # --model lowrank2, the float network the default quantizes
DEFAULT_IR = ROOT / "model" / "superretina_lowrank2_int8.xml"
FP32_PIPELINE = ROOT / "pipeline" / "superretina_fp32.pipeline"
CHECKPOINT = ROOT / "model" / "superretina.pth"


@pytest.fixture(scope="module")
def app():
    assert DEFAULT_IR.is_file(), f"the default model model/{DEFAULT_IR.name} must ship with the project"
    with open_app(runtime="local") as opened:
        yield opened


def test_shipped_model_registers_a_warped_retina(app, retina_bgr):
    query, G, pts = make_pair(retina_bgr)
    res = app.registrar.register_images(query, retina_bgr)
    assert res.status == "registered", res.reason
    assert control_point_error(res.H, G, pts) < 5.0
    assert res.final.homography.num_inliers >= 20


def test_demo_command_passes(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MX_SDK_HOME", "SUPERRETINA_RUNTIME")}
    env["PYTHONPATH"] = str(ROOT / "python")
    proc = subprocess.run([sys.executable, "-m", "superretina.cli", "--out", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout
    for name in ("match_result.jpg", "result.jpg", "checkerboard.jpg", "result.json"):
        assert (tmp_path / name).stat().st_size > 0


def test_shipped_checkpoint_is_the_onnx_model(retina_bgr):
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from superretina.enhance import enhance, to_model_input
    from superretina.model.network import load_checkpoint

    net = load_checkpoint(CHECKPOINT)
    x = to_model_input(enhance(retina_bgr), (384, 384))[None, None]
    with torch.no_grad():
        det, desc = (t.numpy() for t in net(torch.from_numpy(x)))
    det_o, desc_o = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    np.testing.assert_allclose(det_o, det, atol=1e-4)
    np.testing.assert_allclose(desc_o, desc, atol=1e-4)


# -- the float lowrank2 model, the published-head models (bf16 and the fp32 one it is made from) -
@pytest.mark.parametrize("ir, onnx", [(LOWRANK2_IR, LOWRANK2_ONNX), (BF16_IR, MODEL)])
def test_bf16_irs_are_made_from_the_shipped_onnx(ir, onnx):
    """Each IR records the sha256 of the ONNX it was converted from: retraining a model without
    re-running superretina.model.to_openvino fails here."""
    import hashlib

    ov = pytest.importorskip("openvino")
    model = ov.Core().read_model(str(ir))
    assert model.get_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"]).astype(str) == "bf16"
    source = model.get_rt_info(["superretina", "source_onnx_sha256"]).astype(str)
    assert source == hashlib.sha256(onnx.read_bytes()).hexdigest()


def test_named_pipelines_are_the_default_with_another_model():
    """bf16 (the published head, the default until 0.5.0), fp32 (its ONNX), lowrank2 (the float
    default until 0.8.0) and int8 (the default's own name): the default pipeline with modelPath
    pointing at their model, nothing else changed."""
    import json

    default = json.loads((ROOT / "pipeline" / "superretina.pipeline").read_text())
    for stream in ("superretina", "superretina_decode"):  # the tensor and the decode stream (docs/stream.md)
        assert default[stream]["mxpi_tensorinfer0"]["props"].pop("modelPath") == f"../model/{DEFAULT_IR.name}"
    for name, model in (("bf16", BF16_IR), ("fp32", MODEL), ("lowrank2", LOWRANK2_IR), ("int8", DEFAULT_IR)):
        named = json.loads((ROOT / "pipeline" / f"superretina_{name}.pipeline").read_text())
        for stream in ("superretina", "superretina_decode"):
            assert named[stream]["mxpi_tensorinfer0"]["props"].pop("modelPath") == f"../model/{model.name}"
        assert named == default


def test_fp32_model_registers_like_the_default(app, retina_bgr):
    from benchmarks.bench import homography_distance

    query, G, pts = make_pair(retina_bgr)
    with open_app(pipeline=FP32_PIPELINE, runtime="local") as fp32:
        assert fp32.model == MODEL
        res = fp32.registrar.register_images(query, retina_bgr)
    assert res.status == "registered", res.reason
    assert control_point_error(res.H, G, pts) < 5.0
    default = app.registrar.register_images(query, retina_bgr)
    assert homography_distance(res.H.tolist(), default.H.tolist(), pts) < 1.0


@pytest.mark.parametrize("ir, onnx", [(LOWRANK2_IR, LOWRANK2_ONNX), (BF16_IR, MODEL)])
def test_bf16_irs_are_what_the_converter_makes(ir, onnx, tmp_path):
    """Converting the shipped ONNX again gives the shipped IR: the same weights byte for byte and
    the same graph (layer names aside: the ONNX importer numbers unnamed nodes per process)."""
    import re

    pytest.importorskip("openvino")
    from superretina.model.to_openvino import convert

    xml = convert(onnx, tmp_path / "again.xml")
    assert xml.with_suffix(".bin").read_bytes() == ir.with_suffix(".bin").read_bytes()

    def graph(path):
        return re.sub(r' name="[^"]*"', "", path.read_text())

    assert graph(xml) == graph(ir)


# -- the real same-eye pair of ../shared/data/pairs ---------------------------------------------
def test_real_pair_registers_through_the_fallback_estimator(app, shared_data, tmp_path):
    """example1/example2: a real pair (exposure change, lens reflections, ~6 % scale, 126 px shift).
    About a third of the model's matches are right, below LMEDS's breakdown point: the reference's
    estimator alone fails, the configured fallback (USAC_MAGSAC) registers it, and the result
    agrees with SIFT's homography (this pair has no ground truth)."""
    from benchmarks.bench import homography_distance
    from superretina.fire.sift import register_sift
    from superretina.image_io import read_pair

    query, refer = read_pair(shared_data / "pairs" / "example1.jpg", shared_data / "pairs" / "example2.jpg")
    res = app.registrar.register_images(query, refer)
    assert res.status == "registered", res.reason
    assert res.first.homography.method == "USAC_MAGSAC"
    sift = register_sift(query, refer)
    assert sift.failure_reason == ""
    grid = np.stack(np.meshgrid(np.arange(300, 1500, 100), np.arange(300, 1500, 100)), -1).reshape(-1, 2)
    assert homography_distance(res.H.tolist(), sift.H.tolist(), grid) < 20.0

    no_fallback = tmp_path / "lmeds_only.yaml"
    no_fallback.write_text("homography:\n  fallback: none\n")
    with open_app(no_fallback, runtime="local") as lmeds_only:
        failed = lmeds_only.registrar.register_images(query, refer)
    assert failed.status == "failed" and failed.first.homography.method == "LMEDS"


def test_subpixel_keypoints_through_the_driver(retina_bgr, tmp_path):
    cfg = tmp_path / "subpixel.yaml"
    cfg.write_text("keypoints:\n  subpixel: true\n")
    query, G, pts = make_pair(retina_bgr)
    with open_app(cfg, runtime="local") as sub:
        res = sub.registrar.register_images(query, retina_bgr)
    assert res.status == "registered" and control_point_error(res.H, G, pts) < 5.0
    frac = np.abs(res.refer.model_xy - np.round(res.refer.model_xy))
    assert (frac > 1e-3).mean() > 0.5 and frac.max() <= 0.5  # refined, and by at most half a pixel
