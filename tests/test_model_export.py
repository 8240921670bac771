"""SuperRetina network and pth2onnx against the inference contract of method §1.

* Checkpoints: ``{'net': state_dict}`` of the full network has exactly the reference's parameter
  names and shapes (listed literally below from §1) and ~3.0 M parameters; loading is strict,
  accepts a DataParallel ``module.`` prefix and infers the widths of a narrower variant.
* Export: ONNX Runtime on the exported model reproduces PyTorch within 1e-4 on an enhanced real
  fundus photograph, for the dynamic export (two sizes) and for the static (2, 1, 768, 768)
  opset-11 export that Ascend's ATC takes.

Running the full network in PyTorch at 768x768 costs ~150 G multiply-adds per image, too much for
the shared test machine: its output shapes are checked on the meta device (shape propagation
without arithmetic), and the numerical parity uses the half-width variant, which is the same
code with smaller channel counts.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the network and its export need PyTorch (the train extra)")
onnx = pytest.importorskip("onnx", reason="the export needs onnx (the train extra)")
ort = pytest.importorskip("onnxruntime")

from superretina.enhance import enhance, to_model_input  # noqa: E402
from superretina.model.export import INPUT_NAME, OUTPUT_NAMES, export_onnx  # noqa: E402
from superretina.model.network import (SuperRetinaNet, Widths, checkpoint_dict,  # noqa: E402
                                       load_checkpoint)
from tests.model_fixtures import random_superretina  # noqa: E402,F401  (pytest fixture)

# Parameter names and shapes of the published network (method §1): conv weights are
# (out, in, kh, kw); the transposed conv's weight is (in, out, kh, kw).
REFERENCE_SHAPES = {
    "conv1a.weight": (64, 1, 3, 3), "conv1a.bias": (64,),
    "conv1b.weight": (64, 64, 3, 3), "conv1b.bias": (64,),
    "conv2a.weight": (64, 64, 3, 3), "conv2a.bias": (64,),
    "conv2b.weight": (64, 64, 3, 3), "conv2b.bias": (64,),
    "conv3a.weight": (128, 64, 3, 3), "conv3a.bias": (128,),
    "conv3b.weight": (128, 128, 3, 3), "conv3b.bias": (128,),
    "conv4a.weight": (128, 128, 3, 3), "conv4a.bias": (128,),
    "conv4b.weight": (128, 128, 3, 3), "conv4b.bias": (128,),
    "convDa.weight": (256, 128, 3, 3), "convDa.bias": (256,),
    "convDb.weight": (256, 256, 4, 4), "convDb.bias": (256,),
    "convDc.weight": (256, 256, 1, 1), "convDc.bias": (256,),
    "trans_conv.weight": (256, 256, 2, 2), "trans_conv.bias": (256,),
    "dconv_up3.0.weight": (128, 256, 3, 3), "dconv_up3.0.bias": (128,),
    "dconv_up3.2.weight": (128, 128, 3, 3), "dconv_up3.2.bias": (128,),
    "dconv_up2.0.weight": (64, 192, 3, 3), "dconv_up2.0.bias": (64,),
    "dconv_up2.2.weight": (64, 64, 3, 3), "dconv_up2.2.bias": (64,),
    "dconv_up1.0.weight": (64, 128, 3, 3), "dconv_up1.0.bias": (64,),
    "dconv_up1.2.weight": (64, 64, 3, 3), "dconv_up1.2.bias": (64,),
    "conv_last.weight": (1, 64, 1, 1), "conv_last.bias": (1,),
}
PARITY_ATOL = 1e-4


@pytest.fixture(scope="module")
def full_net():
    torch.manual_seed(1)
    return SuperRetinaNet("full").eval()


@pytest.fixture(scope="module")
def fundus(retina_bgr):
    """Enhanced skimage retina (float32 [0, 1]) and a warped, darker second view of it."""
    import cv2

    h, w = retina_bgr.shape[:2]
    G = cv2.getRotationMatrix2D((w / 2, h / 2), 7.0, 1.05)
    other = cv2.warpAffine((retina_bgr * 0.8).astype(np.uint8), G, (w, h))
    return enhance(retina_bgr), enhance(other)


def model_batch(images, height, width) -> np.ndarray:
    return np.stack([to_model_input(e, (height, width)) for e in images])[:, None]


def torch_outputs(net, batch: np.ndarray):
    with torch.no_grad():
        det, desc = net(torch.from_numpy(batch))
    return det.numpy(), desc.numpy()


def ort_outputs(path, batch: np.ndarray):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})


# -- checkpoint format ------------------------------------------------------------------------
def test_full_checkpoint_has_reference_keys_and_shapes(full_net):
    ckpt = checkpoint_dict(full_net)
    state = ckpt["net"]
    assert list(state) == list(REFERENCE_SHAPES)
    assert {k: tuple(v.shape) for k, v in state.items()} == REFERENCE_SHAPES
    n_params = sum(v.numel() for v in state.values())
    assert 2.95e6 < n_params < 3.05e6, n_params           # "about 3.0 M parameters"
    assert sum(p.numel() for p in full_net.parameters()) == n_params  # no buffers or extras


def test_strict_load_plain_and_dataparallel(full_net, tmp_path):
    state = full_net.state_dict()
    plain, parallel = tmp_path / "plain.pth", tmp_path / "parallel.pth"
    torch.save({"net": state}, plain)                               # the official layout
    torch.save({"net": {f"module.{k}": v for k, v in state.items()}}, parallel)
    for path in (plain, parallel):
        net = load_checkpoint(path)
        assert net.widths == Widths()
        assert not net.training
        loaded = net.state_dict()
        assert list(loaded) == list(REFERENCE_SHAPES)
        assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_strict_load_rejects_missing_and_unexpected_keys(full_net, tmp_path):
    state = dict(full_net.state_dict())
    missing = dict(state)
    del missing["convDc.bias"]
    extra = {**state, "conv5.weight": torch.zeros(1)}
    for name, bad in (("missing", missing), ("extra", extra)):
        path = tmp_path / f"{name}.pth"
        torch.save({"net": bad}, path)
        with pytest.raises(RuntimeError, match="convDc.bias|conv5.weight"):
            load_checkpoint(path)
    no_net = tmp_path / "state_only.pth"
    torch.save(state, no_net)
    with pytest.raises(ValueError, match="'net'"):
        load_checkpoint(no_net)


def test_half_width_checkpoint_loads_with_inferred_widths(tmp_path):
    torch.manual_seed(2)
    half = SuperRetinaNet("half")
    path = tmp_path / "half.pth"
    torch.save(checkpoint_dict(half), path)
    net = load_checkpoint(path)
    assert net.widths == Widths(32, 32, 64, 64, 128) == Widths.named("half")
    assert list(net.state_dict()) == list(REFERENCE_SHAPES)        # same names, narrower tensors
    assert all(torch.equal(net.state_dict()[k], v) for k, v in half.state_dict().items())


@pytest.mark.parametrize("variant", ["full", "half"])
def test_output_shapes_at_768(variant):
    net = SuperRetinaNet(variant).to("meta")
    det, desc = net(torch.empty(3, 1, 768, 768, device="meta"))
    assert tuple(det.shape) == (3, 1, 768, 768)
    assert tuple(desc.shape) == (3, 256, 94, 94)


# -- ONNX export ------------------------------------------------------------------------------
def test_dynamic_export_matches_pytorch_at_two_sizes(random_superretina, fundus):
    model = onnx.load(str(random_superretina.onnx))
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 1 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3])), dims

    net = load_checkpoint(random_superretina.checkpoint)
    for images, (h, w) in (([fundus[0]], (384, 512)), (list(fundus), (256, 256))):
        batch = model_batch(images, h, w)
        det_t, desc_t = torch_outputs(net, batch)
        det_o, desc_o = ort_outputs(random_superretina.onnx, batch)
        n = len(images)
        assert det_o.shape == (n, 1, h, w) and desc_o.shape == (n, 256, h // 8 - 2, w // 8 - 2)
        np.testing.assert_allclose(det_o, det_t, rtol=0, atol=PARITY_ATOL)
        np.testing.assert_allclose(desc_o, desc_t, rtol=0, atol=PARITY_ATOL)
        # The detector is not trivially flat on a real photograph: parity means something.
        assert det_t.std() > 1e-4


def test_static_export_for_atc(random_superretina, fundus, tmp_path):
    out = export_onnx(random_superretina.checkpoint, tmp_path / "static.onnx", static=True)
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets.get("", opsets.get("ai.onnx")) == 11

    def shapes(values):
        return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}

    assert shapes(model.graph.input) == {INPUT_NAME: [2, 1, 768, 768]}
    assert shapes(model.graph.output) == {OUTPUT_NAMES[0]: [2, 1, 768, 768], OUTPUT_NAMES[1]: [2, 256, 94, 94]}

    batch = model_batch(fundus, 768, 768)
    det_t, desc_t = torch_outputs(load_checkpoint(random_superretina.checkpoint), batch)
    det_o, desc_o = ort_outputs(out, batch)
    assert det_o.shape == (2, 1, 768, 768) and desc_o.shape == (2, 256, 94, 94)
    np.testing.assert_allclose(det_o, det_t, rtol=0, atol=PARITY_ATOL)
    np.testing.assert_allclose(desc_o, desc_t, rtol=0, atol=PARITY_ATOL)
