"""A deterministic random-weights SuperRetina model and a pipeline that runs it, for tests.

The default weights (model/superretina.onnx) are trained, not committed, and absent from a
fresh clone; the tests of the application need a real ONNX model of the real architecture
all the same.  ``random_superretina`` builds one once per session: seeded random weights of
the half-width network (same inputs, outputs and parameter names as the published one, ~4x
fewer multiply-adds), exported with the project's own pth2onnx (dynamic batch and size), and
a copy of pipeline/superretina.pipeline whose modelPath points at it.

Random weights give keypoints, descriptors and homographies, just not good ones: tests using
this model check that things run and report, not registration accuracy.

Use it by importing the fixture into a test module::

    from tests.model_fixtures import random_superretina  # noqa: F401  (pytest fixture)

The export (~10 s) runs once per session even when several modules import the fixture.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PIPELINE = PROJECT_ROOT / "pipeline" / "superretina.pipeline"
SEED = 0
WIDTHS = "half"
# Registration parameters for fast tests: a random-weights detector fires everywhere, and
# matching/LMEDS on thousands of keypoints costs seconds per pass on a shared 2-core machine.
FAST_CONFIG = "keypoints:\n  max_keypoints: 300\n"


@dataclass(frozen=True)
class RandomModel:
    """Files of the test model; all in one temporary folder."""

    folder: Path
    checkpoint: Path      # {'net': state_dict, 'widths': ...} of SuperRetinaNet(WIDTHS), seed SEED
    onnx: Path            # dynamic export of it (input (N,1,H,W); detector, descriptor)
    pipeline: Path        # pipeline/superretina.pipeline with modelPath = onnx (absolute)
    fast_config: Path     # YAML: max_keypoints 300


_CACHE: dict[Path, RandomModel] = {}


def write_pipeline(path: Path, model_path: str | Path, source: Path = DEFAULT_PIPELINE) -> Path:
    """Copy ``source`` to ``path`` with every mxpi_tensorinfer modelPath set to ``model_path``."""
    cfg = json.loads(Path(source).read_text())
    for elements in cfg.values():
        for el in elements.values() if isinstance(elements, dict) else ():
            if isinstance(el, dict) and el.get("factory") == "mxpi_tensorinfer":
                el["props"]["modelPath"] = str(model_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=4))
    return path


def build_random_model(folder: Path) -> RandomModel:
    """Export the seeded random-weights network into ``folder`` (needs torch and onnx)."""
    import torch

    from superretina.model.export import export_onnx
    from superretina.model.network import SuperRetinaNet, checkpoint_dict

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    net = SuperRetinaNet(WIDTHS)
    checkpoint = folder / "random_superretina.pth"
    torch.save(checkpoint_dict(net, seed=SEED), checkpoint)
    onnx_path = export_onnx(checkpoint, folder / "random_superretina.onnx")
    pipeline = write_pipeline(folder / "superretina.pipeline", onnx_path.resolve())
    fast = folder / "fast.yaml"
    fast.write_text(FAST_CONFIG)
    return RandomModel(folder, checkpoint, onnx_path, pipeline, fast)


@pytest.fixture(scope="session")
def random_superretina(tmp_path_factory) -> RandomModel:
    """The session's random-weights SuperRetina model and pipeline (skips without torch)."""
    pytest.importorskip("torch", reason="building the test model needs PyTorch (the train extra)")
    pytest.importorskip("onnx", reason="building the test model needs onnx (the train extra)")
    # A module that imports this fixture gets its own copy of it from pytest, so the
    # session-wide reuse is done here.
    base = tmp_path_factory.getbasetemp()
    if base not in _CACHE:
        _CACHE[base] = build_random_model(base / "random_superretina")
    return _CACHE[base]


# -- running the CLI as a user does -----------------------------------------------------------
def cli_env() -> dict:
    """Environment for ``python -m superretina.cli``: the project's import root, no MindX SDK."""
    env = {k: v for k, v in os.environ.items() if k not in ("MX_SDK_HOME", "SUPERRETINA_RUNTIME")}
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT / "python"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_cli(*args, cwd: Path | None = None, env: dict | None = None, timeout: float = 300,
            python_args: tuple = ()) -> subprocess.CompletedProcess:
    """``python -m superretina.cli ARGS`` in a subprocess; text stdout/stderr captured."""
    cmd = [sys.executable, *python_args, "-m", "superretina.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd or PROJECT_ROOT, env=env or cli_env(), capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> str:
    """The CLI failed with ``code`` and one ``error: ...`` line on stderr containing ``fragments``."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line
