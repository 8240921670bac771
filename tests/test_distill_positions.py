"""Distillation of the fast head with keypoint positions in the loss and ``dconv_up2`` trained.

* ``nms_maxima`` finds the keypoints ``keypoints.detect`` finds (its first suppression round),
  on a real detector map.
* ``keypoint_weights`` weighs up the teacher's keypoints and the student's maxima that the
  teacher lacks, and nothing else.
* ``--train-decoder``: ``dconv_up2`` trains with the head, the descriptors stay the teacher's
  bit for bit, and the training shortcut (``dconv_up2`` on the teacher's cached input) is the
  network's own detector.
* ``--init`` starts from a fast checkpoint and refuses one whose shared parameters differ.
* ``subpixel_loss`` reads the registrar's sub-pixel positions (``refine_subpixel``) off both maps,
  is zero where they agree and pulls a shifted maximum back to the teacher's.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="distillation needs PyTorch (the train extra)")

from superretina.enhance import enhance, to_model_input  # noqa: E402
from superretina.keypoints import detect, refine_subpixel  # noqa: E402
from superretina.model.network import (SuperRetinaFastNet, SuperRetinaNet, checkpoint_dict,  # noqa: E402
                                       load_checkpoint, read_checkpoint)
from superretina.training.distill import (distill_loss, init_student, keypoint_weights, main,  # noqa: E402
                                          nms_maxima, parabola_offsets, student_logits, subpixel_loss,
                                          teacher_and_features)


@pytest.fixture(scope="module")
def photo(retina_bgr):
    """(1, 1, 256, 320) enhanced skimage retina in [0, 1]."""
    return to_model_input(enhance(retina_bgr), (256, 320))[None, None].astype(np.float32)


def logit(p):
    return float(np.log(p / (1 - p)))


def test_nms_maxima_are_the_keypoints_detect_reads(photo):
    torch.manual_seed(2)
    teacher = SuperRetinaNet("half").eval()
    with torch.no_grad():
        t_logits = teacher_and_features(teacher, torch.from_numpy(photo))[0]
    prob = torch.sigmoid(t_logits)[0, 0].numpy()
    thresh = float(np.quantile(prob, 0.99))  # a random net's map: keep its top percent as "keypoints"
    for radius in (2, 4):
        mine = np.argwhere(nms_maxima(t_logits, radius, thresh)[0, 0].numpy())[:, ::-1]
        kp, _ = detect(prob, nms_size=radius, nms_thresh=thresh, border=0)
        assert len(kp) > 5
        np.testing.assert_array_equal(mine[np.lexsort((mine[:, 0], mine[:, 1]))], kp.astype(int))


def test_keypoint_weights_cover_teacher_keypoints_and_spurious_student_maxima():
    low = logit(1e-4)
    t = torch.full((1, 1, 40, 40), low)
    s = torch.full((1, 1, 40, 40), low)
    t[0, 0, 10, 10] = logit(0.5)     # teacher keypoint; the student's is 1 px off: not spurious
    s[0, 0, 10, 11] = logit(0.4)
    s[0, 0, 30, 30] = logit(0.3)     # student maximum where the teacher has nothing
    t[0, 0, 30, 5] = logit(0.005)    # below nms_thresh: not a keypoint
    w = keypoint_weights(s, t, weight=20.0, radius=2, nms=4)[0, 0]
    assert w.shape == (40, 40)
    hot = (w > 1).numpy()
    expected = np.zeros((40, 40), bool)
    expected[8:13, 8:13] = True      # 5x5 around the teacher keypoint
    expected[28:33, 28:33] = True    # and around the spurious student maximum
    np.testing.assert_array_equal(hot, expected)
    assert float(w.max()) == 21.0 and float(w.min()) == 1.0
    # Putting the student's peak where the teacher's is pays far more with the weights than without.
    s2 = s.clone()
    s2[0, 0, 10, 10], s2[0, 0, 10, 11] = t[0, 0, 10, 10], low
    gain_w = distill_loss(s, t, w[None, None])[0] - distill_loss(s2, t, w[None, None])[0]
    gain_1 = distill_loss(s, t)[0] - distill_loss(s2, t)[0]
    assert float(gain_w) > 10 * float(gain_1) > 0


def test_trained_decoder_keeps_the_teachers_descriptors(photo):
    torch.manual_seed(1)
    teacher = SuperRetinaNet("half").eval()
    student = init_student(teacher, decoder=True).eval()
    trainable = {n.split(".")[0] for n, p in student.named_parameters() if p.requires_grad}
    assert trainable == {"det_skip", "det_fuse", "det_refine", "det_out", "dconv_up2"}
    with torch.no_grad():
        for p in student.dconv_up2.parameters():  # as if it had trained
            p.add_(0.01 * torch.randn_like(p))
        det_s, desc_s = (t.numpy() for t in student(torch.from_numpy(photo)))
        desc_t = teacher(torch.from_numpy(photo))[1].numpy()
        assert np.array_equal(desc_s, desc_t)
        logits_t, (x1, u2) = teacher_and_features(teacher, torch.from_numpy(photo), decoder=True)
        assert u2.shape[1] == teacher.widths.c3 + teacher.widths.c2  # dconv_up2's input
        np.testing.assert_allclose(torch.sigmoid(student_logits(student, (x1, u2), decoder=True)).numpy(),
                                   det_s, atol=1e-6)


def test_run_with_decoder_positions_and_init(distill_inputs, tmp_path):
    data, teacher, teacher_path, _ = distill_inputs
    start = init_student(teacher)
    with torch.no_grad():
        start.det_out.bias.fill_(-3.0)   # a recognisable starting head
    torch.save(checkpoint_dict(start), tmp_path / "start.pth")
    out = tmp_path / "run"
    args = ["--teacher", str(teacher_path), "--data", str(data), "--out", str(out), "--crop", "64",
            "--batch", "2", "--views-per-visit", "2", "--pool", "4", "--window", "32", "--minutes", "0.05",
            "--init", str(tmp_path / "start.pth"), "--train-decoder", "--kp-weight", "20", "--kp-nms", "4"]
    assert main(args) == 0
    net = load_checkpoint(out / "final.pth")
    assert isinstance(net, SuperRetinaFastNet)
    meta = read_checkpoint(out / "final.pth")["distillation"]
    assert meta["train_decoder"] and meta["kp_weight"] == 20.0 and meta["init"].endswith("start.pth")
    assert "teacher_kp_found" in meta["agreement_heldout"] or meta["agreement_heldout"] == {}
    assert (out / "best.pth").is_file() or meta["agreement_heldout"] == {}
    state, first = net.state_dict(), start.state_dict()
    assert abs(float(state["det_out.bias"].mean()) + 3.0) < 0.5          # started from --init
    assert not torch.equal(state["dconv_up2.0.weight"], first["dconv_up2.0.weight"])  # dconv_up2 learned
    frozen = [k for k in state if not k.startswith(("det_", "dconv_up2."))]
    assert frozen and all(torch.equal(state[k], teacher.state_dict()[k]) for k in frozen)
    # An --init whose shared parameters are not the teacher's: one line, exit 2.
    other = init_student(SuperRetinaNet("half"))
    torch.save(checkpoint_dict(other), tmp_path / "other.pth")
    bad = args[:-7] + ["--init", str(tmp_path / "other.pth")]
    assert main(bad) == 2


def test_subpixel_offsets_are_the_registrars(photo):
    """On the shipped network's detector map of a real photograph, the (clipped) parabola offsets
    at its keypoints are where ``refine_subpixel`` moves them."""
    from pathlib import Path

    net = load_checkpoint(Path(__file__).resolve().parents[1] / "model" / "superretina_lowrank2.pth").eval()
    with torch.no_grad():
        p = net(torch.from_numpy(photo))[0]
    keep = nms_maxima(torch.logit(p.clamp(1e-7, 1 - 1e-7)), 10)[0, 0, 1:-1, 1:-1]
    ox, oy, bx, by = (t[0, 0][keep].numpy() for t in parabola_offsets(p))
    ys, xs = np.nonzero(keep.numpy())
    kp = np.stack([xs + 1, ys + 1], axis=1).astype(np.float32)
    bends = (bx < 0) & (by < 0)
    assert bends.sum() > 20
    moved = refine_subpixel(p[0, 0].numpy(), kp)[bends] - kp[bends]
    np.testing.assert_allclose(moved, np.clip(np.stack([ox, oy], axis=1)[bends], -0.5, 0.5), atol=1e-4)


def test_subpixel_loss_is_zero_on_agreement_and_pulls_a_shifted_peak_back():
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(32.0), indexing="ij")

    def blob(cx, cy=9.8):
        return (0.6 * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5 ** 2)))[None, None]

    target = blob(12.3)
    keypoints = nms_maxima(torch.logit(target.clamp(1e-7, 1 - 1e-7)), 10)
    assert int(keypoints.sum()) == 1
    loss, n = subpixel_loss(target, target, keypoints)
    assert n == 1 and float(loss) == 0.0
    losses = []
    for cx in (12.0, 11.6, 11.2):   # the student's peak further and further left of the teacher's
        x = torch.tensor(cx, requires_grad=True)
        loss, n = subpixel_loss(blob(x), target, keypoints)
        loss.backward()
        assert n == 1 and x.grad < 0   # descending the loss moves the peak right, to the teacher's
        losses.append(float(loss))
    assert 0 < losses[0] < losses[1] < losses[2]
    flat = torch.full_like(target, 0.3)   # no peak on the student's map: nothing to compare
    assert subpixel_loss(flat, target, keypoints)[1] == 0
