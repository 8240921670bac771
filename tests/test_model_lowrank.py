"""The ``lowrank`` network variant (the full-resolution decoder block factorised to low rank).

* Contract: the published network's inputs and outputs; descriptors bit-identical to the
  network it was fitted from (only the detector's last block changes).
* The fit (``model/lowrank.py``): at full rank it is the published block (away from the
  zero-padded border, where the input mean it folds into the bias differs from zero padding);
  at the shipped ranks on the shipped weights most keypoints stay where they were.
* The head computes ``up1_in``'s ``dconv_up2`` part before the upsampling: the same map as the
  block on the concatenated features (what distillation trains on).
* Export: ONNX Runtime and the OpenVINO IR reproduce PyTorch.
* Distillation ``--student lowrank`` trains only the factorised block and ``conv_last``, and
  resumes; bad inputs exit 2 with one line.
* ``dconv_up2`` factorised too (``--up2-ranks``): at full rank the same network; the training
  path (its half-resolution part on the whole crop, the rest on a window) computes the network's
  own map; distillation trains both factorised blocks and ``conv_last`` only.
"""
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the network and its export need PyTorch (the train extra)")
pytest.importorskip("onnx", reason="the export needs onnx (the train extra)")
ort = pytest.importorskip("onnxruntime")
ov = pytest.importorskip("openvino")

import torch.nn.functional as F  # noqa: E402

from superretina.enhance import enhance, to_model_input  # noqa: E402
from superretina.model.export import INPUT_NAME, OUTPUT_NAMES, export_onnx  # noqa: E402
from superretina.model.lowrank import factorise, factorise_decoder_block, main as lowrank_main  # noqa: E402
from superretina.model.network import (CheckpointError, SuperRetinaFastNet, SuperRetinaLowRankNet,  # noqa: E402
                                       SuperRetinaNet, architecture_of, checkpoint_dict, load_checkpoint, read_checkpoint)
from superretina.model.to_openvino import convert  # noqa: E402
from superretina.training.distill import keypoint_agreement, student_logits, teacher_and_features  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_DEFAULT = ROOT / "model" / "superretina.pth"
PARITY_ATOL = 1e-4


def torch_run(net, x):
    with torch.no_grad():
        return tuple(t.numpy() for t in net(torch.from_numpy(x)))


@pytest.fixture(scope="module")
def frames(retina_bgr):
    """Two enhanced 256x256 views of the skimage retina (the second mirrored), in [0, 1]."""
    img = to_model_input(enhance(retina_bgr), (256, 256)).astype(np.float32)
    return [img, np.ascontiguousarray(img[:, ::-1])]


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(5)
    return SuperRetinaNet("half").eval()


def test_full_rank_fit_is_the_published_block_and_keeps_the_descriptors(teacher, frames):
    net, kept = factorise(teacher, frames, ranks=(64, 32))
    assert isinstance(net, SuperRetinaLowRankNet) and net.ranks == (64, 32)
    assert kept[0] == pytest.approx(1.0) and kept[1] == pytest.approx(1.0)
    x = frames[0][None, None]
    det_t, desc_t = torch_run(teacher, x)
    det_l, desc_l = torch_run(net, x)
    np.testing.assert_array_equal(desc_l, desc_t)
    assert det_l.shape == det_t.shape == (1, 1, 256, 256)
    assert det_t.std() > 1e-4
    np.testing.assert_allclose(det_l[..., 2:-2, 2:-2], det_t[..., 2:-2, 2:-2], rtol=0, atol=1e-4)
    # low rank is an approximation, not the same network
    small, _ = factorise(teacher, frames, ranks=(4, 2))
    assert np.abs(torch_run(small, x)[0] - det_t)[..., 2:-2, 2:-2].max() > 1e-3


def test_head_split_before_upsampling_is_the_block_on_the_concatenation(teacher, frames):
    net, _ = factorise(teacher, frames, ranks=(16, 8))
    x = torch.from_numpy(frames[1][None, None])
    with torch.no_grad():
        x1, x2, x3, x4 = net.encode(x)
        head = net.detector_head(x1, x2, x3, x4)

        def up(t):
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True)

        y = net.dconv_up3(torch.cat([up(x4), x3], dim=1))
        y = net.dconv_up2(torch.cat([up(y), x2], dim=1))
        block = torch.sigmoid(net.conv_last(net.full_resolution_block(torch.cat([up(y), x1], dim=1))))
        np.testing.assert_allclose(head.numpy(), block.numpy(), rtol=0, atol=1e-5)
        # ... and what distillation trains on (the teacher's block input) is that concatenation
        logits, feats = teacher_and_features(teacher, x, lowrank=True)
        np.testing.assert_allclose(torch.sigmoid(student_logits(net, feats)).numpy(), head.numpy(), atol=1e-5)


@pytest.mark.skipif(not SHIPPED_DEFAULT.is_file(), reason="model/superretina.pth not shipped")
def test_fit_at_the_shipped_ranks_keeps_most_keypoints_of_the_shipped_weights(retina_bgr):
    shipped = load_checkpoint(SHIPPED_DEFAULT)
    frame = to_model_input(enhance(retina_bgr), (512, 512)).astype(np.float32)
    net, kept = factorise(shipped, [frame, np.ascontiguousarray(frame[::-1])], ranks=(16, 8))
    assert kept[0] > 0.98 and kept[1] > 0.99
    agree = keypoint_agreement(shipped, net, [np.ascontiguousarray(frame[:, ::-1])])   # a view not fitted on
    assert agree["teacher_kp"] > 100
    assert agree["teacher_kp_found"] > 0.85 and agree["student_kp_in_teacher"] > 0.85


def test_checkpoint_names_its_head_and_loads_strictly(teacher, frames, tmp_path):
    net, _ = factorise(teacher, frames, ranks=(12, 6))
    torch.save(checkpoint_dict(net), tmp_path / "lr.pth")
    ck = read_checkpoint(tmp_path / "lr.pth")
    assert ck["architecture"] == "lowrank" and architecture_of(ck["net"]) == "lowrank"
    back = load_checkpoint(tmp_path / "lr.pth")
    assert isinstance(back, SuperRetinaLowRankNet) and back.ranks == (12, 6)
    for a, b in zip(torch_run(back, frames[0][None, None]), torch_run(net, frames[0][None, None])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("more", [{}, {"up2_": (16, 8)}, {"up2_": (16, 8), "up3_": (24, 12)}],
                         ids=["up1", "up1+up2", "up1+up2+up3"])
def test_onnx_and_ir_agree_with_pytorch(teacher, frames, tmp_path, more):
    net, _ = factorise(teacher, frames, ranks=(16, 8))
    for prefix, ranks in more.items():
        net, _ = factorise_decoder_block(teacher, net, frames, prefix, ranks)
    torch.save(checkpoint_dict(net), tmp_path / "lr.pth")
    onnx_path = export_onnx(tmp_path / "lr.pth", tmp_path / "lr.onnx")
    x = np.ascontiguousarray(np.concatenate([frames[0][None, None], frames[1][None, None]])[..., :, :192])
    det_t, desc_t = torch_run(net, x)
    det_o, desc_o = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        list(OUTPUT_NAMES), {INPUT_NAME: x})
    np.testing.assert_allclose(det_o, det_t, rtol=0, atol=PARITY_ATOL)
    np.testing.assert_allclose(desc_o, desc_t, rtol=0, atol=PARITY_ATOL)
    for precision in ("f32", "bf16"):
        xml = convert(onnx_path, tmp_path / f"lr_{precision}.xml", precision)
        compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": precision})
        out = compiled([x])
        det_v, desc_v = (np.asarray(out[compiled.output(n)]) for n in OUTPUT_NAMES)
        if precision == "f32":
            np.testing.assert_allclose(det_v, det_t, rtol=0, atol=PARITY_ATOL)
            np.testing.assert_allclose(desc_v, desc_t, rtol=0, atol=PARITY_ATOL)
        else:   # bf16 arithmetic: close, not equal
            assert np.abs(det_v - det_t).mean() < 0.01 and np.abs(desc_v - desc_t).mean() < 0.01


def test_fit_command_writes_a_lowrank_checkpoint_and_refuses_bad_input(distill_inputs, tmp_path, capsys):
    data, teacher, teacher_path, _ = distill_inputs
    out = tmp_path / "fit.pth"
    assert lowrank_main([str(teacher_path), str(out), "--data", str(data), "--ranks", "8,4", "--calib", "2"]) == 0
    net = load_checkpoint(out)
    assert isinstance(net, SuperRetinaLowRankNet) and net.ranks == (8, 4)
    assert read_checkpoint(out)["factorised"]["ranks"] == [8, 4]
    assert read_checkpoint(out)["factorised"]["fitted_here"] == ["up1_"]
    capsys.readouterr()
    for args in (["--ranks", "8"], ["--ranks", "a,b"], ["--ranks", "65,4"]):
        assert lowrank_main([str(teacher_path), str(tmp_path / "x.pth"), "--data", str(data), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and "ranks" in err and err.count("\n") == 1
    assert lowrank_main([str(out), str(tmp_path / "x.pth"), "--data", str(data)]) == 2   # not a unet head
    assert "published (unet)" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()


def test_lowrank_distillation_trains_the_block_only_and_resumes(distill_inputs, tmp_path):
    from superretina.training.distill import main as distill

    data, teacher, teacher_path, small = distill_inputs

    def run(out, minutes="0.05", *extra):
        return distill(["--teacher", str(teacher_path), "--data", str(data), "--out", str(out), "--crop", "64",
                        "--batch", "2", "--views-per-visit", "2", "--pool", "4", "--window", "32",
                        "--minutes", minutes, "--student", "lowrank", "--kp-weight", "5", "--kp-nms", "4", *extra])

    out = tmp_path / "run"
    assert run(out, "0.05", "--ranks", "8,4") == 0
    first = read_checkpoint(out / "last.pth")
    assert first["step"] > 0 and first["distillation"]["student"] == "lowrank"
    net = load_checkpoint(out / "final.pth")
    assert isinstance(net, SuperRetinaLowRankNet) and net.ranks == (8, 4)
    x = to_model_input(enhance(small), (128, 128))[None, None].astype(np.float32)
    np.testing.assert_array_equal(torch_run(net, x)[1], torch_run(teacher, x)[1])
    shared = teacher.state_dict()
    for k, v in net.state_dict().items():
        if not k.startswith(("up1_", "conv_last.")):
            assert torch.equal(v, shared[k]), k
    assert run(tmp_path / "run2", "0.05", "--init", str(out / "final.pth")) == 0   # --init: a written checkpoint
    assert run(out, "0.1", "--resume") == 0
    assert read_checkpoint(out / "last.pth")["step"] > first["step"]
    torch.save(checkpoint_dict(SuperRetinaFastNet("half")), tmp_path / "fast.pth")
    assert run(tmp_path / "run3", "0.05", "--init", str(tmp_path / "fast.pth")) == 2   # not a lowrank start
    assert run(tmp_path / "run3", "0.05", "--ranks", "8") == 2


def test_full_rank_up2_fit_is_the_same_network_and_keeps_the_descriptors(teacher, frames):
    lowrank, _ = factorise(teacher, frames, ranks=(16, 8))
    net, kept = factorise_decoder_block(teacher, lowrank, frames, "up2_", ranks=(96, 32))
    assert net.ranks == (16, 8) and net.up2_ranks == (96, 32) and not hasattr(net, "dconv_up2")
    assert kept[0] == pytest.approx(1.0) and kept[1] == pytest.approx(1.0)
    x = frames[1][None, None]
    det_l, desc_l = torch_run(lowrank, x)
    det_n, desc_n = torch_run(net, x)
    np.testing.assert_array_equal(desc_n, desc_l)
    assert det_l.std() > 1e-4
    # the folded input mean differs from zero padding at the half-resolution border only
    np.testing.assert_allclose(det_n[..., 12:-12, 12:-12], det_l[..., 12:-12, 12:-12], rtol=0, atol=1e-4)
    # dconv_up2's own output: the same at full rank, an approximation at low rank
    small, _ = factorise_decoder_block(teacher, lowrank, frames, "up2_", ranks=(4, 2))
    with torch.no_grad():
        _, x2, x3, x4 = lowrank.encode(torch.from_numpy(x))
        y2 = [m.half_resolution_decoder(x2, x3, x4)[..., 4:-4, 4:-4] for m in (lowrank, net, small)]
    assert y2[0].std() > 1e-3
    assert (y2[1] - y2[0]).abs().max() < 1e-4 < 1e-3 < (y2[2] - y2[0]).abs().max()
    with pytest.raises(ValueError, match="ranks"):
        factorise_decoder_block(teacher, lowrank, frames, "up2_", ranks=(97, 8))


def test_full_rank_up3_fit_is_the_same_network_and_needs_a_factorised_up2(teacher, frames):
    lowrank, _ = factorise(teacher, frames, ranks=(16, 8))
    with pytest.raises(CheckpointError, match="dconv_up2"):
        factorise_decoder_block(teacher, lowrank, frames, "up3_", ranks=(24, 12))
    with pytest.raises(ValueError, match="up2_ranks"):
        SuperRetinaLowRankNet("half", (16, 8), None, (24, 12))
    up2, _ = factorise_decoder_block(teacher, lowrank, frames, "up2_", ranks=(24, 12))
    w = teacher.widths
    net, kept = factorise_decoder_block(teacher, up2, frames, "up3_", ranks=(w.c4 + w.c3, w.c3))
    assert net.up2_ranks == (24, 12) and net.up3_ranks == (w.c4 + w.c3, w.c3) and not hasattr(net, "dconv_up3")
    assert kept[0] == pytest.approx(1.0) and kept[1] == pytest.approx(1.0)
    for k, v in up2.state_dict().items():   # every other block kept bit for bit
        if not k.startswith("dconv_up3."):
            assert torch.equal(v, net.state_dict()[k]), k
    x = frames[1][None, None]
    np.testing.assert_array_equal(torch_run(net, x)[1], torch_run(up2, x)[1])
    small, _ = factorise_decoder_block(teacher, up2, frames, "up3_", ranks=(4, 2))
    with torch.no_grad():
        _, _, x3, x4 = up2.encode(torch.from_numpy(x))
        y3 = [m.quarter_resolution_decoder(x3, x4)[..., 3:-3, 3:-3] for m in (up2, net, small)]
    assert y3[0].std() > 1e-3
    full, low = (y3[1] - y3[0]).abs().max(), (y3[2] - y3[0]).abs().max()
    assert full < 1e-5 and low > 20 * full
    with pytest.raises(CheckpointError, match="whole"):   # already factorised
        factorise_decoder_block(teacher, net, frames, "up3_", ranks=(24, 12))
    with pytest.raises(ValueError, match="ranks"):
        factorise_decoder_block(teacher, up2, frames, "up3_", ranks=(w.c4 + w.c3 + 1, 8))


@pytest.mark.parametrize("more", [{"up2_": (24, 12)}, {"up2_": (24, 12), "up3_": (32, 16)}], ids=["up2", "up2+up3"])
def test_decoder_training_path_is_the_networks_map_on_windows_of_the_crop(teacher, frames, tmp_path, more):
    net, _ = factorise(teacher, frames, ranks=(16, 8))
    for prefix, ranks in more.items():
        net, _ = factorise_decoder_block(teacher, net, frames, prefix, ranks)
    torch.save(checkpoint_dict(net), tmp_path / "net.pth")
    back = load_checkpoint(tmp_path / "net.pth")
    assert back.ranks == (16, 8) and back.up2_ranks == more["up2_"] and back.up3_ranks == more.get("up3_")
    x = torch.from_numpy(np.stack([frames[0], frames[1]])[:, None, :128, :128].copy())
    with torch.no_grad():
        _, feats = teacher_and_features(teacher, x, lowrank=True, up2=True, up3="up3_" in more)
        whole = student_logits(back, feats)
        np.testing.assert_allclose(torch.sigmoid(whole).numpy(), back(x)[0].numpy(), rtol=0, atol=1e-5)
        offsets = [(16, 48), (64, 0)]
        windows = torch.stack([feats[-1][i, :, y:y + 48, x0:x0 + 48] for i, (y, x0) in enumerate(offsets)])
        cut = student_logits(back, (*feats[:-1], windows), offsets=offsets)
        expected = torch.stack([whole[i, :, y:y + 48, x0:x0 + 48] for i, (y, x0) in enumerate(offsets)])
        m = 8   # a window's edge lacks the context of the whole crop (the loss leaves it out too)
        np.testing.assert_allclose(cut[..., m:-m, m:-m].numpy(), expected[..., m:-m, m:-m].numpy(), rtol=0, atol=1e-6)


def test_up2_fit_command_and_its_distillation(distill_inputs, tmp_path, capsys):
    from superretina.training.distill import main as distill

    data, teacher, teacher_path, small = distill_inputs
    fit = tmp_path / "fit.pth"
    assert lowrank_main([str(teacher_path), str(fit), "--data", str(data), "--ranks", "8,4", "--calib", "2"]) == 0
    up2 = tmp_path / "fit_up2.pth"
    assert lowrank_main([str(teacher_path), str(up2), "--data", str(data), "--calib", "2", "--up2-ranks", "12,6",
                         "--from-lowrank", str(fit)]) == 0
    net = load_checkpoint(up2)
    assert net.ranks == (8, 4) and net.up2_ranks == (12, 6)
    kept_block = load_checkpoint(fit).state_dict()
    for k, v in net.state_dict().items():   # the given block kept, bit for bit
        if k.startswith(("up1_", "conv_last.")):
            assert torch.equal(v, kept_block[k]), k
    up3 = tmp_path / "fit_up3.pth"
    assert lowrank_main([str(teacher_path), str(up3), "--data", str(data), "--calib", "2", "--up3-ranks", "16,8",
                         "--from-lowrank", str(up2)]) == 0
    net3 = load_checkpoint(up3)
    assert net3.up2_ranks == (12, 6) and net3.up3_ranks == (16, 8)
    assert read_checkpoint(up3)["factorised"]["fitted_here"] == ["up3_"]
    for k, v in net.state_dict().items():   # the given blocks kept, bit for bit
        if not k.startswith("dconv_up3."):
            assert torch.equal(v, net3.state_dict()[k]), k
    capsys.readouterr()
    for args in (["--up2-ranks", "12"], ["--from-lowrank", str(fit)], ["--up2-ranks", "12,6", "--from-lowrank", str(up2)],
                 ["--up2-ranks", "12,6", "--from-lowrank", str(teacher_path)], ["--up3-ranks", "16,8"],
                 ["--up3-ranks", "16,8", "--from-lowrank", str(fit)], ["--up3-ranks", "16,8", "--from-lowrank", str(up3)],
                 ["--up3-ranks", "8,x", "--from-lowrank", str(up2)]):
        assert lowrank_main([str(teacher_path), str(tmp_path / "x.pth"), "--data", str(data), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1
    assert not (tmp_path / "x.pth").exists()

    out = tmp_path / "run"
    assert distill(["--teacher", str(teacher_path), "--data", str(data), "--out", str(out), "--crop", "64",
                    "--batch", "2", "--views-per-visit", "2", "--pool", "4", "--window", "32", "--minutes", "0.05",
                    "--student", "lowrank", "--init", str(up2)]) == 0
    trained = load_checkpoint(out / "final.pth")
    assert trained.up2_ranks == (12, 6) and read_checkpoint(out / "last.pth")["distillation"]["up2_ranks"] == [12, 6]
    x = to_model_input(enhance(small), (128, 128))[None, None].astype(np.float32)
    np.testing.assert_array_equal(torch_run(trained, x)[1], torch_run(teacher, x)[1])
    shared, start = teacher.state_dict(), net.state_dict()
    changed = [k for k, v in trained.state_dict().items() if not torch.equal(v, start[k])]
    assert changed and all(k.startswith(("up1_", "up2_", "conv_last.")) for k in changed)
    for k, v in trained.state_dict().items():
        if not k.startswith(("up1_", "up2_", "conv_last.")):
            assert torch.equal(v, shared[k]), k

    out3 = tmp_path / "run3"   # dconv_up3 factorised too: its block learns with the others
    assert distill(["--teacher", str(teacher_path), "--data", str(data), "--out", str(out3), "--crop", "64",
                    "--batch", "2", "--views-per-visit", "2", "--pool", "4", "--window", "32", "--minutes", "0.05",
                    "--student", "lowrank", "--init", str(up3)]) == 0
    trained3 = load_checkpoint(out3 / "final.pth")
    assert trained3.up3_ranks == (16, 8) and read_checkpoint(out3 / "last.pth")["distillation"]["up3_ranks"] == [16, 8]
    np.testing.assert_array_equal(torch_run(trained3, x)[1], torch_run(teacher, x)[1])
    start3 = net3.state_dict()
    changed = {k.split("_")[0] for k, v in trained3.state_dict().items() if not torch.equal(v, start3[k])}
    assert "up3" in changed and changed <= {"up1", "up2", "up3", "conv"}
