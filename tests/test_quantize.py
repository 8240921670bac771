"""int8 variant exporter (superretina.model.quantize): same contract, outputs close to fp32.

A seeded random-weights half-width network (trained weights are absent from a fresh clone) is
quantized with two training-split photographs at a 128x128 frame and compared with the float32
model on a held-out photograph, prepared as at inference.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the export needs PyTorch (the train extra)")
onnx = pytest.importorskip("onnx", reason="quantization needs onnx (the train extra)")
ort = pytest.importorskip("onnxruntime")

from superretina.descriptors import sample_descriptors  # noqa: E402
from superretina.keypoints import detect  # noqa: E402
from superretina.model import quantize as q  # noqa: E402

FRAME = 128


@pytest.fixture(scope="module")
def models(tmp_path_factory, shared_data):
    from superretina.model.export import export_onnx
    from superretina.model.network import SuperRetinaNet, checkpoint_dict

    folder = tmp_path_factory.mktemp("quantize")
    torch.manual_seed(0)
    ckpt = folder / "random.pth"
    torch.save(checkpoint_dict(SuperRetinaNet("half")), ckpt)
    fp32 = export_onnx(ckpt, folder / "fp32.onnx", size=FRAME)
    int8 = folder / "int8.onnx"
    rc = q.main([str(fp32), str(int8), "--calib-dir", str(shared_data / "fundus"), "--calib-count", "2",
                 "--frame", str(FRAME)])
    assert rc == 0
    return fp32, int8


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})


def test_calibration_uses_training_split_only(shared_data):
    from superretina.data_split import HELD_OUT

    picks = q.calibration_images(shared_data / "fundus", 16)
    assert len(picks) == 16 and not any(p.stem in HELD_OUT for p in picks)


def test_int8_keeps_contract_and_metadata(models):
    fp32, int8 = models
    a, b = ort.InferenceSession(str(fp32)), ort.InferenceSession(str(int8))
    assert [(i.name, i.type) for i in a.get_inputs()] == [(i.name, i.type) for i in b.get_inputs()]
    assert [(o.name, o.type) for o in a.get_outputs()] == [(o.name, o.type) for o in b.get_outputs()]
    settings = q.read_settings(int8)
    assert settings["precision"] == "int8" and settings["per_channel"] and settings["input_scale"] == "1/255 exact"
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert q.read_settings(fp32) is None


def test_int8_outputs_close_to_fp32_on_a_real_fundus(models, shared_data):
    fp32, int8 = models
    x = q.model_input(shared_data / "fundus" / "drive_01.png", FRAME)  # held out: not calibrated on
    (det_f, desc_f), (det_q, desc_q) = _run(fp32, x), _run(int8, x)
    assert det_q.shape == det_f.shape and desc_q.shape == desc_f.shape
    # Detector probabilities: within a few 8-bit steps of the float map.
    assert np.abs(det_q - det_f).max() < 0.05
    # Descriptors sampled at the float model's keypoints: nearly the same directions.
    kp, _ = detect(det_f[0, 0], 4, 0.01, 4)
    kp = kp[:: max(1, len(kp) // 200)]
    df, dq = sample_descriptors(kp, desc_f[0]), sample_descriptors(kp, desc_q[0])
    live = np.linalg.norm(df, axis=1) > 0.5  # keypoints near the border sample zero padding only
    cos = (df[live] * dq[live]).sum(axis=1)
    assert live.sum() > 10 and np.median(cos) > 0.98 and cos.min() > 0.9


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert q.main([str(tmp_path / "none.onnx"), str(tmp_path / "out.onnx")]) == 2
    assert "model not found" in capsys.readouterr().err
