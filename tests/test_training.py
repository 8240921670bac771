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
