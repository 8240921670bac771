"""A pipeline's own registration settings (``NAME.yaml`` beside ``NAME.pipeline``): laid over the
defaults and under the user's config, checked with errors naming their file, recorded in every
result (the effective config, the file's name, the batch setup's key), and found for ``--model``,
``--pipeline`` and the CLI's early settings check alike. The shipped case is ``--model int8``
(``keypoints.nms_thresh`` 0.02, docs/int8-model.md).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from superretina.config import DEFAULT_PIPELINE, ConfigError, load_config, pipeline_settings
from tests.model_fixtures import assert_one_line_error, run_cli

INT8_PIPELINE = DEFAULT_PIPELINE.parent / "superretina_int8.pipeline"
INT8_SETTINGS = DEFAULT_PIPELINE.parent / "superretina_int8.yaml"
LOWRANK2_PIPELINE = DEFAULT_PIPELINE.parent / "superretina_lowrank2.pipeline"   # a float model: no settings


@pytest.fixture
def own_pipeline(tmp_path):
    """The default pipeline copied into a user's folder (its model path made absolute), with a
    settings file beside it."""
    layout = json.loads(DEFAULT_PIPELINE.read_text())
    for stream in layout.values():
        props = stream["mxpi_tensorinfer0"]["props"]
        props["modelPath"] = str((DEFAULT_PIPELINE.parent / props["modelPath"]).resolve())
    pipeline = tmp_path / "mine.pipeline"
    pipeline.write_text(json.dumps(layout))
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"keypoints": {"nms_thresh": 0.05, "nms_size": 6}}))
    return pipeline


def test_layers_defaults_then_model_then_user(tmp_path, own_pipeline):
    settings = pipeline_settings(own_pipeline)
    assert settings == own_pipeline.with_suffix(".yaml")
    cfg = load_config(None, settings)
    assert (cfg["keypoints"]["nms_thresh"], cfg["keypoints"]["nms_size"]) == (0.05, 6)
    assert cfg["keypoints"]["border"] == load_config()["keypoints"]["border"]   # the rest: defaults
    user = tmp_path / "user.yaml"
    user.write_text("keypoints:\n  nms_thresh: 0.03\n")
    for given in (user, {"keypoints": {"nms_thresh": 0.03}}):
        cfg = load_config(given, settings)
        assert (cfg["keypoints"]["nms_thresh"], cfg["keypoints"]["nms_size"]) == (0.03, 6)   # user wins


def test_pipelines_without_settings_have_none(tmp_path):
    assert pipeline_settings(LOWRANK2_PIPELINE) is None
    assert pipeline_settings(None) is None
    assert pipeline_settings(tmp_path / "absent.pipeline") is None
    (tmp_path / "dir.yaml").mkdir()   # not a file: not settings
    assert pipeline_settings(tmp_path / "dir.pipeline") is None


@pytest.mark.parametrize("content, fragment", [
    ("keypoints:\n  nms_thresh: 2\n", "keypoints.nms_thresh must be"),
    ("keypoints:\n  nms_tresh: 0.02\n", "unknown key 'keypoints.nms_tresh'"),
    ("[1, 2]\n", "expected a YAML mapping"),
])
def test_a_bad_settings_file_is_named(tmp_path, own_pipeline, content, fragment):
    own_pipeline.with_suffix(".yaml").write_text(content)
    with pytest.raises(ConfigError) as err:
        load_config(None, pipeline_settings(own_pipeline))
    assert str(err.value).startswith(f"{own_pipeline.with_suffix('.yaml')}: ") and fragment in str(err.value)
    proc = run_cli("demo", "--pipeline", own_pipeline, "--out", tmp_path / "demo")   # before any work
    assert_one_line_error(proc, str(own_pipeline.with_suffix(".yaml")), fragment)
    assert not (tmp_path / "demo").exists()


def test_int8_runs_with_its_settings_and_says_so(tmp_path, demo):
    import superretina
    from superretina.batch.fingerprint import app_setup, setup_sha

    assert pipeline_settings(INT8_PIPELINE) == INT8_SETTINGS
    assert yaml.safe_load(INT8_SETTINGS.read_text()) == {"keypoints": {"nms_thresh": 0.02}}
    # the default runs the int8 network with the same settings (its own file, beside its pipeline)
    assert yaml.safe_load(pipeline_settings(DEFAULT_PIPELINE).read_text()) == yaml.safe_load(INT8_SETTINGS.read_text())
    query, refer, _, _ = demo
    with superretina.Session(model="int8") as s8, superretina.Session(model="lowrank2") as s:
        assert s8.config["keypoints"]["nms_thresh"] == 0.02 and s.config["keypoints"]["nms_thresh"] == 0.01
        assert s8.provenance["model_settings"] == str(INT8_SETTINGS) and "model_settings" not in s.provenance
        saved = s8.register(query, refer).save(tmp_path / "pair")
        result = json.loads(next(p for p in saved if p.name == "result.json").read_text())
        setups = app_setup(s8._app), app_setup(s._app)
    assert result["config"]["keypoints"]["nms_thresh"] == 0.02
    assert result["model_settings"] == str(INT8_SETTINGS)
    assert setups[0]["model_settings"] == str(INT8_SETTINGS) and "model_settings" not in setups[1]
    assert setups[0]["config_sha"] != setups[1]["config_sha"] and setup_sha(setups[0]) != setup_sha(setups[1])
    with superretina.Session(model="int8", config={"keypoints": {"nms_thresh": 0.03}}) as s8:
        assert s8.config["keypoints"]["nms_thresh"] == 0.03


def test_cli_and_a_copied_pipeline_take_the_settings(tmp_path, own_pipeline):
    proc = run_cli("demo", "--pipeline", own_pipeline, "--out", tmp_path / "demo")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "demo" / "result.json").read_text())
    assert result["config"]["keypoints"]["nms_thresh"] == 0.05
    assert result["model_settings"] == str(own_pipeline.with_suffix(".yaml"))
    shutil.copy(own_pipeline, tmp_path / "bare.pipeline")   # copied without its settings: the defaults
    proc = run_cli("demo", "--pipeline", tmp_path / "bare.pipeline", "--out", tmp_path / "bare")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "bare" / "result.json").read_text())
    assert result["config"]["keypoints"]["nms_thresh"] == 0.01
    assert "model_settings" not in result
