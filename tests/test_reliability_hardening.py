"""Issue 14.8: a checkpoint file cannot run code when loaded (torch.load weights_only=True).

(Outputs never written through a symlink: tests/test_reliability_outputs.py.)
"""
from __future__ import annotations

import builtins
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="checkpoints need PyTorch (the train extra)")

from superretina.model.network import CheckpointError, load_checkpoint, read_checkpoint  # noqa: E402
from tests.model_fixtures import assert_one_line_error, run_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class _OpensAFile:
    """Unpickling this calls open(marker, 'w'): the stand-in for arbitrary code in a .pth."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


@pytest.fixture
def hostile_checkpoint(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "hostile.pth"
    torch.save({"net": _OpensAFile(marker)}, path)
    assert not marker.exists()
    return path, marker


def test_hostile_checkpoint_is_refused_without_running_its_code(hostile_checkpoint):
    path, marker = hostile_checkpoint
    with pytest.raises(CheckpointError, match=r"hostile.pth: not a loadable weights-only checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_export_of_a_hostile_checkpoint_is_one_line(hostile_checkpoint, tmp_path):
    path, marker = hostile_checkpoint
    proc = run_cli("export", path, tmp_path / "out.onnx")
    assert_one_line_error(proc, "hostile.pth: not a loadable weights-only checkpoint")
    assert not marker.exists() and not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("name", ["model/superretina.pth", "model/checkpoints/train_resume.pth"])
def test_project_checkpoints_load_weights_only(name):
    path = ROOT / name
    if not path.is_file():
        pytest.skip(f"{name} is not present")
    ckpt = read_checkpoint(path)
    assert "net" in ckpt
    if "train_resume" in name:
        assert {"optimizer", "step", "epoch"} <= set(ckpt)
    else:
        net = load_checkpoint(path)
        assert sum(p.numel() for p in net.parameters()) > 1_000_000


def test_not_a_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"notes.pth: not a loadable"):
        load_checkpoint(path)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list.pth: expected a checkpoint dict with key 'net'"):
        load_checkpoint(tmp_path / "list.pth")
