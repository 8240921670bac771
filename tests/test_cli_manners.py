"""Command-line manners and choosing a model and a device by name (issue 20, items 12 and 13).

``--version``; bare ``superretina`` prints the help (``bash run.sh`` alone still runs the demo);
help and usage name ``superretina``, or ``bash run.sh`` under run.sh; ``-v``/``-q``/``--log-file``;
``--model NAME`` from the shipped pipeline files; ``--device cpu|gpu|auto`` with one clear line
where there is no GPU (this machine has none: the ``gpu`` tests skip where one is present).
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import pytest

from mxlocal.model_runtime import ENV_DEVICE, gpu_missing
from superretina import __version__
from superretina.demo import make_pair
from superretina.models import ModelChoiceError, check_device, choose_pipeline, default_model_name, shipped_models
from superretina.stream_client import read_layout
from superretina.resources import DEFAULT_PIPELINE
from tests.model_fixtures import PROJECT_ROOT, assert_one_line_error, cli_env, run_cli


@pytest.fixture(scope="module")
def pair(tmp_path_factory, retina_bgr):
    folder = tmp_path_factory.mktemp("manners")
    refer = cv2.resize(retina_bgr, (384, 384), interpolation=cv2.INTER_AREA)
    query, _, _ = make_pair(refer)
    cv2.imwrite(str(folder / "q.png"), query)
    cv2.imwrite(str(folder / "r.png"), refer)
    return folder / "q.png", folder / "r.png"


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"superretina {__version__}", proc


def test_bare_command_prints_help_naming_superretina():
    proc = run_cli()
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout == run_cli("--help").stdout
    assert "superretina demo" in proc.stdout and "superretina QUERY REFER" in proc.stdout
    assert "bash run.sh" not in proc.stdout.replace("(`bash run.sh` only", "")
    assert "usage: superretina batch" in run_cli("batch", "--help").stdout
    assert "usage: superretina QUERY REFER" in run_cli("register", "--help").stdout


def test_run_sh_names_itself_and_runs_the_demo_when_bare(tmp_path):
    """run.sh's own logic, with a stand-in console script that shows what it was given."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    stub = venv / "bin" / "superretina"
    stub.write_text('#!/bin/sh\necho "PROG=$SUPERRETINA_PROG ARGS=$*"\n')
    stub.chmod(0o755)
    (venv / "bin" / "python").symlink_to(shutil.which("python3") or "/usr/bin/python3")
    for stamp in (".installed", ".installed_train_dev_cluster_"):
        (venv / stamp).touch()
    env = {**os.environ, "SUPERRETINA_VENV": str(venv)}

    def run_sh(*args):
        proc = subprocess.run(["bash", PROJECT_ROOT / "run.sh", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert run_sh() == "PROG=bash run.sh ARGS=demo"
    assert run_sh("q.jpg", "r.jpg") == "PROG=bash run.sh ARGS=q.jpg r.jpg"
    # And the real CLI under that name says so in its usage lines.
    proc = run_cli("batch", "--help", env={**cli_env(), "SUPERRETINA_PROG": "bash run.sh"})
    assert "usage: bash run.sh batch" in proc.stdout


def test_model_names_come_from_the_pipeline_files(tmp_path):
    names = shipped_models()
    files = sorted(DEFAULT_PIPELINE.parent.glob("*.pipeline"))
    # every shipped pipeline has a name; the default is the named pipeline that runs its model
    assert set(names.values()) == set(files) - {DEFAULT_PIPELINE}
    assert default_model_name() == "int8"
    assert read_layout(names["int8"]).model_path == read_layout(DEFAULT_PIPELINE).model_path
    assert read_layout(names["lowrank2"]).model_path != read_layout(DEFAULT_PIPELINE).model_path
    assert names["bf16"].name == "superretina_bf16.pipeline" and names["fp32"].name == "superretina_fp32.pipeline"
    # Without a named pipeline for its model, the default is named after its model file.
    for f in files:
        if f.name != "superretina_int8.pipeline":
            shutil.copy(f, tmp_path / f.name)
    assert shipped_models(tmp_path)["lowrank2_int8"] == tmp_path / DEFAULT_PIPELINE.name
    assert default_model_name(tmp_path) == "lowrank2_int8"
    tmp_path = tmp_path / "all"
    tmp_path.mkdir()
    # A pipeline file added to the folder is a name at once.
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(files[0], tmp_path / "superretina_extra.pipeline")
    assert "extra" in shipped_models(tmp_path) and set(names) < set(shipped_models(tmp_path))
    assert choose_pipeline("fp32", None) == names["fp32"] and choose_pipeline(None, None) is None
    with pytest.raises(ModelChoiceError, match="give one of them"):
        choose_pipeline("fp32", "my.pipeline")


def test_unknown_model_and_model_with_pipeline_are_one_line(pair, tmp_path):
    q, r = pair
    line = assert_one_line_error(run_cli(q, r, "--model", "int4", "--out", tmp_path / "a"), "--model", "'int4'")
    for name in shipped_models():
        assert name in line
    assert_one_line_error(run_cli(q, r, "--model", "fp32", "--pipeline", DEFAULT_PIPELINE, "--out", tmp_path / "b"),
                          "--model fp32", "--pipeline")
    # batch and fire take the same names.
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"query,refer\n{q},{r}\n")
    assert_one_line_error(run_cli("batch", pairs, "--out", tmp_path / "c", "--model", "int4"), "unknown model 'int4'")
    assert_one_line_error(run_cli("fire", tmp_path, "--model", "int4"), "unknown model 'int4'")


def test_model_and_device_cpu_register_with_info_log(pair, tmp_path):
    q, r = pair
    log = tmp_path / "run.log"
    proc = run_cli(q, r, "--model", "fp32", "--device", "cpu", "--out", tmp_path / "o", "-v", "--log-file", log)
    assert proc.returncode == 0, proc.stderr
    assert "status: registered" in proc.stdout
    info = json.loads((tmp_path / "o" / "result.json").read_text())
    assert info["model"].endswith("superretina.onnx") and info["pipeline"].endswith("superretina_fp32.pipeline")
    # -v: the runtime's info lines (the engine it opened, on the CPU provider alone).
    engine = [ln for ln in proc.stderr.splitlines() if "onnxruntime" in ln]
    assert engine and "CPUExecutionProvider" in engine[0] and "CUDA" not in engine[0], proc.stderr
    text = log.read_text()
    assert "INFO mxlocal" in text and "CPUExecutionProvider" in text
    assert text[:4].isdigit()                  # lines start with the time


def test_quiet_prints_nothing_but_errors(pair, tmp_path):
    q, r = pair
    proc = run_cli(q, r, "--model", "fp32", "--out", tmp_path / "o", "-q")
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc
    assert (tmp_path / "o" / "result.json").is_file()
    assert_one_line_error(run_cli(q, tmp_path / "missing.png", "-q", "--out", tmp_path / "p"), "missing.png")


def test_bad_global_options_are_one_line(pair, tmp_path):
    q, r = pair
    assert_one_line_error(run_cli(q, r, "--log-file", tmp_path / "no" / "dir" / "x.log", "--out", tmp_path / "o"),
                          "x.log", "--log-file")
    proc = run_cli(q, r, "-v", "-q")
    assert proc.returncode == 2 and "-v and -q" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(gpu_missing(".xml") is None or gpu_missing(".onnx") is None,
                    reason="this machine has a GPU: the 'absent' line cannot be seen")
@pytest.mark.parametrize("model, engine", [("bf16", "OpenVINO"), ("fp32", "ONNX Runtime")])
def test_device_gpu_without_one_is_one_line(pair, tmp_path, model, engine):
    q, r = pair
    assert_one_line_error(run_cli(q, r, "--model", model, "--device", "gpu", "--out", tmp_path / "o"),
                          "--device gpu", "no GPU", engine, "use cpu")
    assert not (tmp_path / "o" / "result.json").exists()
    # The same check where the environment asks for the GPU (no --device given).
    env = {**cli_env(), ENV_DEVICE: "gpu"}
    assert_one_line_error(run_cli(q, r, "--model", model, "--out", tmp_path / "e", env=env),
                          f"${ENV_DEVICE} gpu", "no GPU", engine)


def test_device_rules_and_environment(pair, monkeypatch):
    with pytest.raises(ModelChoiceError, match="applies to the local runtime"):
        check_device("cpu", Path("m.om"), "ascend")
    assert check_device(None, Path("m.onnx"), "local") == "auto"
    # The Session's device is set for the model's opening only; the user's environment comes back.
    import superretina

    monkeypatch.setenv(ENV_DEVICE, "gpu")
    with superretina.Session(model="fp32", device="cpu", runtime="local") as session:
        assert session.provenance["model"].endswith("superretina.onnx")
        assert session.register(*pair).registered
    assert os.environ[ENV_DEVICE] == "gpu"
