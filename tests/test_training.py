"""The training command end to end on tiny images: labels, pairs, losses, checkpoints, resume."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from superretina.model.network import load_checkpoint  # noqa: E402
from superretina.training.labels import junctions  # noqa: E402
from superretina.training.dataset import PairSampler, load_photo  # noqa: E402
from superretina.training.train import batch_loss  # noqa: E402
from superretina.training.train import main as train_main  # noqa: E402


def test_junctions_of_a_drawn_crossing_and_fork():
    mask = np.zeros((100, 100), np.uint8)
    cv2.line(mask, (10, 50), (90, 50), 255, 3)      # a horizontal vessel ...
    cv2.line(mask, (50, 10), (50, 90), 255, 3)      # ... crossed by a vertical one at (50, 50)
    cv2.line(mask, (70, 50), (90, 20), 255, 3)      # a branch leaving at (70, 50)
    pts = junctions(mask > 0)
    assert len(pts) == 2
    np.testing.assert_allclose(pts[np.argsort(pts[:, 0])], [[50, 50], [70, 50]], atol=3)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, retina_bgr):
    """Three small fundus photographs (crops of the scikit-image retina), one without a vessel
    mask so the Frangi fallback labels it."""
    folder = tmp_path_factory.mktemp("fundus")
    img = cv2.resize(retina_bgr, (320, 320), interpolation=cv2.INTER_AREA)
    for i, flip in enumerate((None, 1, 0)):
        view = img if flip is None else cv2.flip(img, flip)
        cv2.imwrite(str(folder / f"tiny_{i}.png"), view)
    from superretina.training.labels import vessel_mask_from_image
    mask = vessel_mask_from_image(img).astype(np.uint8) * 255
    cv2.imwrite(str(folder / "tiny_0_vessels.png"), mask)
    return folder


def _config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "train.yaml").read_text())
    cfg.update(frame=256, batch=2, steps=40, log_every=5, checkpoint_every=20, lr=0.003,
               label_cache=str(tmp_path / "labels"))
    cfg["augment"].update(frame=256, crop=128, desc_points=64)
    cfg["loss"]["bf16"] = False
    cfg["validation"]["enabled"] = False
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _fixed_batch_loss(net, tiny_data, cfg_path) -> float:
    """Loss of a network on one fixed, seeded set of training pairs (no randomness left)."""
    cfg = yaml.safe_load(cfg_path.read_text())
    photos = [load_photo(p, cfg["frame"]) for p in sorted(tiny_data.glob("tiny_?.png"))]
    sampler = PairSampler(photos, cfg["augment"], seed=123)
    samples = [sampler.sample(i % len(photos)) for i in range(6)]
    with torch.no_grad():
        return batch_loss(net.eval(), samples, cfg["loss"])[0].item()


def test_short_training_run_learns_and_resumes(tiny_data, tmp_path):
    cfg = _config(tmp_path)
    out = tmp_path / "run"
    torch.manual_seed(0)
    assert train_main(["--config", str(cfg), "--data", str(tiny_data), "--out", str(out), "--threads", "1",
                       "--steps", "0"]) == 0
    before = _fixed_batch_loss(load_checkpoint(out / "last.pth"), tiny_data, cfg)
    assert train_main(["--config", str(cfg), "--data", str(tiny_data), "--out", str(out), "--threads", "1",
                       "--resume", str(out / "last.pth")]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [5, 10, 15, 20, 25, 30, 35, 40]  # resumed at 0
    net = load_checkpoint(out / "last.pth")                                 # reference key layout, strict
    after = _fixed_batch_loss(net, tiny_data, cfg)
    assert after < before - 0.1, (before, after)                           # the loss falls
    det, desc = net(torch.rand(1, 1, 256, 256))
    assert det.shape == (1, 1, 256, 256) and desc.shape == (1, 256, 30, 30)
    assert torch.load(out / "last.pth", weights_only=False)["step"] == 40


# -- visit artefacts of the augmentation (augment.haze, augment.reflections) ---------------------
def drawn_fundus(side=400):
    """A bright disk (field of view) on black with a dark vessel across it, float32 in [0, 1]."""
    g = np.zeros((side, side), np.float32)
    cv2.circle(g, (side // 2, side // 2), int(0.45 * side), 0.6, -1)
    cv2.line(g, (side // 4, side // 2), (3 * side // 4, side // 2), 0.3, 5)
    return g


def test_field_of_view_is_filled_disk():
    from superretina.training.augment import field_of_view

    g = drawn_fundus()
    g[100:300, 60:120] *= 0.2  # a dim patch inside must not punch a hole
    fov = field_of_view(g)
    assert fov[200, 200] > 0.99 and fov[200, 100] > 0.99 and fov[200, 90] > 0.99
    assert fov[5, 5] < 0.01 and fov[395, 395] < 0.01


def test_haze_keeps_one_minus_veil_of_vessel_contrast_and_leaves_the_surround():
    from superretina.training.augment import field_of_view, hazy

    g = drawn_fundus()
    for veil in (0.3, 0.6):
        out = hazy(np.random.default_rng(0), g, veil, field_of_view(g))
        contrast = out[200, 170:230].mean() - out[206:215, 170:230].mean()  # vessel row vs just below it
        assert contrast / (0.3 - 0.6) == pytest.approx(1 - veil, abs=0.05)
        assert np.abs(out[:20, :20]).max() < 1e-3


def test_reflections_add_bright_spots_on_the_fundus():
    from superretina.training.augment import reflections_of_lens

    g = drawn_fundus()
    out = reflections_of_lens(np.random.default_rng(1), g)
    assert out.max() > 0.85 and out.min() >= 0.0 and (out >= g - 1e-6).all()  # only brightens


def test_artefacts_switch_on_by_config_only():
    from superretina.training.augment import revisit

    g = (drawn_fundus() * 255).astype(np.uint8)
    plain = [revisit(np.random.default_rng(s), g) for s in range(6)]
    explicit_off = [revisit(np.random.default_rng(s), g, 1.0, haze=0.0, reflections=0.0) for s in range(6)]
    assert all(np.array_equal(a, b) for a, b in zip(plain, explicit_off))
    hazy = [revisit(np.random.default_rng(s), g, 1.0, haze=0.6, reflections=1.0) for s in range(6)]
    assert sum(not np.array_equal(a, b) for a, b in zip(plain, hazy)) == 6
