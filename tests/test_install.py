"""The package works installed from a wheel, outside the checkout, and run.sh works from any folder.

The wheel is built from this checkout and installed (without its dependencies, which this test
environment already has: they are reached through a path entry, not reinstalled) into a fresh
virtual environment; everything then runs from a folder that is neither the checkout nor the
environment, as a user's would.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import cv2
import pytest

from superretina.demo import make_pair

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The README's first Python example, on this test's files (visit2/visit1 → query/refer)."""
    text = (ROOT / "README.md").read_text()
    code = text.split("## Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    return code.replace("visit2.jpg", "query.jpg").replace("visit1.jpg", "refer.jpg") + textwrap.dedent("""
        print("REPORT", result.status, superretina.__file__)
        print("POINTS", points_in_refer.shape, aligned.shape)
    """)


def _run(cmd, cwd, env=None, timeout=600):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}: rc {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory, retina_bgr):
    """A folder with a query/reference pair, outside the checkout."""
    folder = tmp_path_factory.mktemp("user")
    refer = cv2.resize(retina_bgr, (700, 700), interpolation=cv2.INTER_AREA)
    query, _, _ = make_pair(refer)
    cv2.imwrite(str(folder / "query.jpg"), query)
    cv2.imwrite(str(folder / "refer.jpg"), refer)
    return folder


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, console script, env) of a fresh venv holding the wheel built from this checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", tmp / "dist", ROOT], cwd=tmp)
    wheel, = (tmp / "dist").glob("superretina_mx-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip())
    # The dependencies: this environment's site-packages as a plain path entry, after the venv's own
    # (its .pth files, among them this checkout's editable install, are not read from there).
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", site, wheel], cwd=tmp)
    # pip --target writes no console script: make the one the wheel declares, as pip would.
    script = env_dir / "bin" / "superretina"
    script.write_text(f"#!{python}\nimport sys\nfrom superretina.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return python, script, env, site


def test_installed_package_carries_its_data(installed, user_folder):
    python, _, env, site = installed
    out = _run([python, "-c", "import superretina.resources as r, mxlocal.plugin_loader as p; "
                "print(r.DEFAULT_PIPELINE); print(r.DEFAULT_CONFIG); print(p.BUILTIN_PLUGIN_DIR)"], user_folder, env)
    pipeline, config, plugins = (Path(line) for line in out.stdout.split())
    for path in (pipeline, config, plugins):
        assert path.exists() and str(path).startswith(str(site)), path
    for weights in ("superretina_lowrank2_bf16.bin", "superretina_lowrank2_int8.bin", "superretina_bf16.bin"):
        # the default, --model int8, --model bf16
        assert (pipeline.parent.parent / "model" / weights).is_file()
    assert (pipeline.parent / "superretina_int8.yaml").is_file()   # --model int8's own settings
    assert (site / "superretina" / "py.typed").is_file()     # type checkers read the package's annotations


def test_console_script_registers_with_relative_paths(installed, user_folder):
    _, script, env, site = installed
    assert "superretina QUERY REFER" in _run([script, "--help"], user_folder, env).stdout
    assert _run([script, "--version"], user_folder, env).stdout.startswith("superretina ")
    # A pip user names a shipped model, with no path into the package.
    _run([script, "query.jpg", "refer.jpg", "--model", "fp32", "--device", "cpu", "--out", "fp32"], user_folder, env)
    assert json.loads((user_folder / "fp32" / "result.json").read_text())["model"].startswith(str(site))
    proc = _run([script, "query.jpg", "refer.jpg", "--out", "o"], user_folder, env)
    assert "status: registered" in proc.stdout
    assert {"result.json", "result.jpg", "match_result.jpg", "checkerboard.jpg"} <= {p.name for p in (user_folder / "o").iterdir()}
    # The default output folder is one per pair, in the current folder.
    _run([script, "query.jpg", "refer.jpg"], user_folder, env)
    assert (user_folder / "query_to_refer" / "result.json").is_file()


def test_readme_python_example_runs_installed(installed, user_folder):
    python, _, env, site = installed
    (user_folder / "example.py").write_text(readme_example())
    proc = _run([python, "example.py"], user_folder, env)
    report = next(line for line in proc.stdout.splitlines() if line.startswith("REPORT"))
    assert report.split()[1] == "registered" and str(site) in report
    assert "POINTS (1, 2) (700, 700, 3)" in proc.stdout
    assert (user_folder / "visit2_to_visit1" / "result.json").is_file()


def test_run_sh_from_the_images_folder(user_folder, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = _run(["bash", ROOT / "run.sh", "query.jpg", "refer.jpg", "--out", "via_run_sh"], user_folder, env)
    assert "status: registered" in proc.stdout
    assert (user_folder / "via_run_sh" / "result.json").is_file()
    assert not (ROOT / "via_run_sh").exists()
