"""The ``fast`` network variant (detector head at 1/2 resolution + depth-to-space).

* Contract: the same inputs and outputs as the published network — detector (N,1,H,W),
  descriptor (N,256,H/8-2,W/8-2) — at the official and half widths.
* Checkpoints say which head they carry (parameter names, ``architecture``); loading is strict
  and picks the right class; the published head still loads as before.
* Distillation start: the student copies the teacher's encoder and descriptor head, so its
  descriptors are the teacher's bit for bit; only the new head trains.
* Export: ONNX Runtime and the OpenVINO IR (f32 and the shipped bf16 precision) reproduce
  PyTorch on an enhanced real photograph, and the IR has no convolution at full resolution
  besides the encoder's first block (the point of the variant).
* The shipped fast and lowrank models (0.5.0's and 0.6.0's lowrank2; when present): the IR is made from the ONNX, which is the
  checkpoint.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the network and its export need PyTorch (the train extra)")
pytest.importorskip("onnx", reason="the export needs onnx (the train extra)")
ort = pytest.importorskip("onnxruntime")
ov = pytest.importorskip("openvino")

from superretina.enhance import enhance, to_model_input  # noqa: E402
from superretina.model.export import INPUT_NAME, OUTPUT_NAMES, export_onnx  # noqa: E402
from superretina.model.network import (SuperRetinaFastNet, SuperRetinaLowRankNet, SuperRetinaNet,  # noqa: E402
                                       architecture_of, checkpoint_dict, load_checkpoint, read_checkpoint)
from superretina.model.to_openvino import convert  # noqa: E402
from superretina.training.distill import init_student, student_logits, teacher_and_features  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {"pth": ROOT / "model" / "superretina_fast.pth", "onnx": ROOT / "model" / "superretina_fast.onnx",
           "xml": ROOT / "model" / "superretina_fast_bf16.xml"}
PARITY_ATOL = 1e-4


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory):
    """A seeded fast network whose new head is not the zero map: checkpoint, ONNX, f32 and bf16 IR."""
    folder = tmp_path_factory.mktemp("fast")
    torch.manual_seed(3)
    net = SuperRetinaFastNet("half").eval()
    ckpt = folder / "fast.pth"
    torch.save(checkpoint_dict(net), ckpt)
    onnx_path = export_onnx(ckpt, folder / "fast.onnx")
    return {"net": net, "pth": ckpt, "onnx": onnx_path,
            "f32": convert(onnx_path, folder / "fast_f32.xml", "f32"),
            "bf16": convert(onnx_path, folder / "fast_bf16.xml", "bf16")}


@pytest.fixture(scope="module")
def photo(retina_bgr):
    """(1, 1, 256, 320) enhanced skimage retina in [0, 1]."""
    return to_model_input(enhance(retina_bgr), (256, 320))[None, None].astype(np.float32)


def torch_run(net, x):
    with torch.no_grad():
        return tuple(t.numpy() for t in net(torch.from_numpy(x)))


def ov_run(xml, x):
    compiled = ov.Core().compile_model(str(xml), "CPU", {
        "INFERENCE_PRECISION_HINT": ov.Core().read_model(str(xml)).get_rt_info(
            ["runtime_options", "INFERENCE_PRECISION_HINT"]).astype(str)})
    out = compiled([x])
    return tuple(np.asarray(out[compiled.output(n)]) for n in OUTPUT_NAMES)


@pytest.mark.parametrize("widths", ["full", "half"])
@pytest.mark.parametrize("size", [(768, 768), (384, 512)])
def test_outputs_have_the_contract_shapes(widths, size):
    h, w = size
    net = SuperRetinaFastNet(widths).to("meta")
    det, desc = net(torch.empty(2, 1, h, w, device="meta"))
    assert tuple(det.shape) == (2, 1, h, w)
    assert tuple(desc.shape) == (2, 256, h // 8 - 2, w // 8 - 2)


def test_checkpoint_names_its_head_and_loads_strictly(tmp_path):
    torch.manual_seed(0)
    fast, unet = SuperRetinaFastNet("half"), SuperRetinaNet("half")
    ck_fast, ck_unet = checkpoint_dict(fast), checkpoint_dict(unet)
    assert ck_fast["architecture"] == "fast" and ck_unet["architecture"] == "unet"
    assert architecture_of(ck_fast["net"]) == "fast" and architecture_of(ck_unet["net"]) == "unet"
    assert not any(k.startswith(("dconv_up1.", "conv_last.")) for k in ck_fast["net"])
    for net, ck in ((fast, ck_fast), (unet, ck_unet)):
        path = tmp_path / f"{ck['architecture']}.pth"
        torch.save({"net": {f"module.{k}": v for k, v in ck["net"].items()}}, path)  # DataParallel names too
        loaded = load_checkpoint(path)
        assert type(loaded) is type(net)
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())
    broken = dict(ck_fast["net"])
    del broken["det_refine.bias"]
    torch.save({"net": broken}, tmp_path / "broken.pth")
    with pytest.raises(RuntimeError, match="det_refine.bias"):
        load_checkpoint(tmp_path / "broken.pth")


def test_distillation_student_keeps_the_teachers_descriptors(photo):
    torch.manual_seed(1)
    teacher = SuperRetinaNet("half").eval()
    student = init_student(teacher).eval()
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("det_") for n in trainable)
    det_t, desc_t = torch_run(teacher, photo)
    det_s, desc_s = torch_run(student, photo)
    assert np.array_equal(desc_s, desc_t)
    assert det_s.shape == det_t.shape
    # The training shortcut (head on the teacher's features) is the network's own detector.
    x = torch.from_numpy(photo)
    logits_t, feats = teacher_and_features(teacher, x)
    with torch.no_grad():
        np.testing.assert_allclose(torch.sigmoid(student_logits(student, feats)).numpy(), det_s, atol=1e-6)
        np.testing.assert_allclose(torch.sigmoid(logits_t).numpy(), det_t, atol=1e-6)


def test_onnx_and_ir_agree_with_pytorch(fast_model, photo):
    det_t, desc_t = torch_run(fast_model["net"], photo)
    assert det_t.std() > 1e-4  # the head's output varies over a real photograph: parity means something
    det_o, desc_o = ort.InferenceSession(str(fast_model["onnx"]), providers=["CPUExecutionProvider"]).run(
        list(OUTPUT_NAMES), {INPUT_NAME: photo})
    np.testing.assert_allclose(det_o, det_t, rtol=0, atol=PARITY_ATOL)
    np.testing.assert_allclose(desc_o, desc_t, rtol=0, atol=PARITY_ATOL)
    det_f, desc_f = ov_run(fast_model["f32"], photo)
    np.testing.assert_allclose(det_f, det_t, rtol=0, atol=PARITY_ATOL)
    np.testing.assert_allclose(desc_f, desc_t, rtol=0, atol=PARITY_ATOL)
    det_b, desc_b = ov_run(fast_model["bf16"], photo)  # bf16 arithmetic: close, not equal
    assert det_b.shape == det_t.shape and desc_b.shape == desc_t.shape
    assert np.abs(det_b - det_t).mean() < 0.01 and np.abs(desc_b - desc_t).mean() < 0.01


def test_bench_reads_the_fast_weights_back_from_onnx(fast_model, photo):
    """The bench's PyTorch column runs the weights of an ONNX export: the fast head is recognised."""
    from benchmarks.bench import torch_network

    net = torch_network(fast_model["onnx"])
    assert isinstance(net, SuperRetinaFastNet)
    for a, b in zip(torch_run(net, photo), torch_run(fast_model["net"], photo)):
        np.testing.assert_array_equal(a, b)


def full_resolution_convolutions(xml: Path, side: int = 256) -> list[str]:
    """Names of the IR's Convolution nodes whose output is side x side for a side x side input."""
    model = ov.Core().read_model(str(xml))
    model.reshape({INPUT_NAME: [1, 1, side, side]})
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() == "Convolution" and list(op.get_output_shape(0))[2:] == [side, side]]


def test_ir_has_no_full_resolution_decoder(fast_model, tmp_path):
    fast = full_resolution_convolutions(fast_model["bf16"])
    assert len(fast) == 2, fast  # conv1a, conv1b: the encoder's first block, shared with the descriptors
    torch.manual_seed(3)
    torch.save(checkpoint_dict(SuperRetinaNet("half")), tmp_path / "unet.pth")
    unet_xml = convert(export_onnx(tmp_path / "unet.pth", tmp_path / "unet.onnx"), tmp_path / "unet.xml")
    assert len(full_resolution_convolutions(unet_xml)) > len(fast) + 2  # + dconv_up1, conv_last
    model = ov.Core().read_model(str(fast_model["bf16"]))
    assert any(op.get_type_name() == "DepthToSpace" for op in model.get_ordered_ops())


@pytest.mark.parametrize("variant", ["fast", "lowrank", "lowrank2"])
def test_shipped_variant_is_one_model_in_three_formats(variant, photo):
    """The shipped fast and lowrank models (0.5.0's and 0.6.0's): IR from the ONNX, ONNX = checkpoint on a fixed input,
    descriptors the default model's, pipeline = the default's with its modelPath."""
    shipped = {k: v.with_name(v.name.replace("_fast", f"_{variant}")) for k, v in SHIPPED.items()}
    if not shipped["xml"].is_file():
        pytest.skip(f"{shipped['xml'].name} not shipped")
    model = ov.Core().read_model(str(shipped["xml"]))
    assert model.get_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"]).astype(str) == "bf16"
    source = model.get_rt_info(["superretina", "source_onnx_sha256"]).astype(str)
    assert source == hashlib.sha256(shipped["onnx"].read_bytes()).hexdigest()
    net = load_checkpoint(shipped["pth"])
    assert isinstance(net, {"fast": SuperRetinaFastNet, "lowrank": SuperRetinaLowRankNet,
                            "lowrank2": SuperRetinaLowRankNet}[variant])
    assert getattr(net, "up2_ranks", None) == {"lowrank2": (24, 12)}.get(variant)
    det_t, desc_t = torch_run(net, photo)
    det_o, desc_o = ort.InferenceSession(str(shipped["onnx"]), providers=["CPUExecutionProvider"]).run(
        list(OUTPUT_NAMES), {INPUT_NAME: photo})
    np.testing.assert_allclose(det_o, det_t, rtol=0, atol=PARITY_ATOL)
    np.testing.assert_allclose(desc_o, desc_t, rtol=0, atol=PARITY_ATOL)
    det_v, desc_v = ov_run(shipped["xml"], photo)   # bf16 arithmetic: close, not equal
    assert np.abs(det_v - det_t).mean() < 0.01 and np.abs(desc_v - desc_t).mean() < 0.01
    # Its descriptors are the default model's: only the detector head was trained.
    default = load_checkpoint(ROOT / "model" / "superretina.pth")
    np.testing.assert_array_equal(torch_run(default, photo)[1], desc_t)
    # The pipeline is the default one with modelPath pointing at the variant's IR, nothing else changed.
    default_p, variant_p = (json.loads((ROOT / "pipeline" / n).read_text())
                            for n in ("superretina.pipeline", f"superretina_{variant}.pipeline"))
    for stream in default_p:   # both streams (decode and tensor) name the model
        assert variant_p[stream]["mxpi_tensorinfer0"]["props"].pop("modelPath") == f"../model/{shipped['xml'].name}"
        default_p[stream]["mxpi_tensorinfer0"]["props"].pop("modelPath")
    assert variant_p == default_p


def test_distillation_run_trains_the_head_only_and_resumes(distill_inputs, tmp_path):
    """A short run on a folder of two photographs: the written model is a fast network whose
    descriptors are the teacher's; --resume continues the step count; bad paths exit 2."""
    from superretina.training.distill import main as distill

    data, teacher, teacher_path, small = distill_inputs
    out = tmp_path / "run"
    args = ["--teacher", str(teacher_path), "--data", str(data), "--out", str(out), "--crop", "64",
            "--batch", "2", "--views-per-visit", "2", "--pool", "4", "--window", "32", "--minutes", "0.05"]
    assert distill(args) == 0
    first = read_checkpoint(out / "last.pth")["step"]
    assert first > 0
    net = load_checkpoint(out / "final.pth")
    assert isinstance(net, SuperRetinaFastNet)
    x = to_model_input(enhance(small), (128, 128))[None, None].astype(np.float32)
    np.testing.assert_array_equal(torch_run(net, x)[1], torch_run(teacher, x)[1])
    changed = [k for k, v in net.state_dict().items() if k.startswith("det_")
               and not torch.equal(v, init_student(teacher).state_dict()[k])]
    assert changed  # the head learned something
    assert distill(args[:-1] + ["0.1", "--resume"]) == 0
    assert read_checkpoint(out / "last.pth")["step"] > first
    assert distill(["--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert distill(["--teacher", str(out / "final.pth"), "--data", str(data), "--out", str(out)]) == 2
