"""Runtime choice: the real SDK only from $MX_SDK_HOME/python, never a same-named file elsewhere.

A stand-in SDK folder (``StreamManagerApi.py`` / ``MxpiDataType_pb2.py`` re-exporting this
project's local runtime) plays the installed SDK; a hostile ``StreamManagerApi.py`` in the
working directory must never run.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = "open('HOSTILE_RAN', 'w').write('x')\n"
PROBE = ("import sys; sys.path.insert(1, {python!r}); from superretina.sdk import load_sdk; "
         "s = load_sdk({choice!r}); print(s.name, s.api.__file__)")


@pytest.fixture
def hostile_cwd(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "StreamManagerApi.py").write_text(HOSTILE)
    (folder / "MxpiDataType_pb2.py").write_text(HOSTILE)
    return folder


@pytest.fixture
def fake_sdk(tmp_path):
    home = tmp_path / "mxVision"
    (home / "python").mkdir(parents=True)
    (home / "python" / "StreamManagerApi.py").write_text("from mxlocal.StreamManagerApi import *  # noqa\n")
    (home / "python" / "MxpiDataType_pb2.py").write_text("from mxlocal.MxpiDataType_pb2 import *  # noqa\n")
    return home


def _probe(cwd: Path, choice: str, sdk_home: Path | None):
    env = {k: v for k, v in os.environ.items() if k not in ("MX_SDK_HOME", "SUPERRETINA_RUNTIME")}
    if sdk_home is not None:
        env["MX_SDK_HOME"] = str(sdk_home)
    # python -c puts the working directory first on sys.path, as `python -m superretina.cli` does.
    code = PROBE.format(python=str(ROOT / "python"), choice=choice)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_auto_without_sdk_is_local_and_ignores_the_working_directory(hostile_cwd):
    proc = _probe(hostile_cwd, "auto", None)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("local ") and "mxlocal" in proc.stdout
    assert not (hostile_cwd / "HOSTILE_RAN").exists()


def test_ascend_is_imported_from_the_sdk_folder_only(hostile_cwd, fake_sdk):
    for choice in ("auto", "ascend"):
        proc = _probe(hostile_cwd, choice, fake_sdk)
        assert proc.returncode == 0, proc.stderr
        name, origin = proc.stdout.split()
        assert name == "ascend" and Path(origin).parent == (fake_sdk / "python").resolve()
    assert not (hostile_cwd / "HOSTILE_RAN").exists()


def test_ascend_without_sdk_is_a_clear_error(hostile_cwd, tmp_path):
    for home in (None, tmp_path / "nowhere"):
        proc = _probe(hostile_cwd, "ascend", home)
        assert proc.returncode != 0 and "RuntimeUnavailable" in proc.stderr
        assert "MX_SDK_HOME/python/StreamManagerApi.py does not exist" in proc.stderr
    assert not (hostile_cwd / "HOSTILE_RAN").exists()


def test_a_module_of_that_name_already_loaded_from_elsewhere_is_refused(hostile_cwd, fake_sdk):
    code = ("import sys; sys.path.insert(1, {python!r}); import StreamManagerApi; "
            "from superretina.sdk import load_sdk, RuntimeUnavailable\n"
            "try:\n    load_sdk('ascend')\nexcept RuntimeUnavailable as e:\n    print('refused:', e)")
    (hostile_cwd / "StreamManagerApi.py").write_text("x = 1\n")   # harmless here: imported on purpose
    env = {**os.environ, "MX_SDK_HOME": str(fake_sdk)}
    proc = subprocess.run([sys.executable, "-c", code.format(python=str(ROOT / "python"))], cwd=hostile_cwd,
                          env=env, capture_output=True, text=True, timeout=120)
    assert "refused: StreamManagerApi would be imported from" in proc.stdout, proc.stdout + proc.stderr
