"""The command line as a user meets it: ``python -m superretina.cli`` (what ``bash run.sh`` runs).

Help for the application and for each subcommand exits 0 and says what the command does; a
pipeline whose model file is missing (a fresh clone before training) gives one clear line.
"""
import shutil

import cv2
import numpy as np
import pytest

from tests.model_fixtures import DEFAULT_PIPELINE, assert_one_line_error, run_cli


def test_top_level_help():
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for fragment in ("superretina QUERY REFER", "--out", "--pipeline", "--runtime", "--model", "--device",
                     "export-transform",
                     "fire", "compare", "synth", "demo", "--help"):
        assert fragment in text, fragment
    assert proc.stderr == ""


# subcommand -> phrases its help must contain (what it does, its arguments)
SUBCOMMAND_HELP = {
    "register": ["usage:", "query", "refer", "result.json", "match_result.jpg", "Exit code", "--pipeline"],
    "demo": ["usage:", "known", "homography", "control-point error"],
    "fire": ["usage:", "fire_dir", "FIRE protocol", "mAUC", "Resumable", "--jobs"],
    "compare": ["usage:", "fire_dir", "every method", "FIRE protocol"],
    "synth": ["usage:", "--from", "synthetic FIRE-format", "eye model", "--geometry", "--series"],
    "series": ["usage:", "images", "--out", "--reference", "series.json", "flicker.html", "unconnected"],
}


@pytest.mark.parametrize("command", sorted(SUBCOMMAND_HELP))
def test_subcommand_help(command):
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in SUBCOMMAND_HELP[command]:
        assert fragment in proc.stdout, (command, fragment)


def test_missing_arguments_are_usage_errors():
    proc = run_cli("register")
    assert proc.returncode == 2
    assert "required" in proc.stderr and "query" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture
def fresh_clone_pipeline(tmp_path):
    """The default pipeline file where its model (../model/superretina_lowrank2_int8.xml) was never made."""
    pipeline = tmp_path / "pipeline" / "superretina.pipeline"
    pipeline.parent.mkdir()
    shutil.copy(DEFAULT_PIPELINE, pipeline)
    return pipeline


def test_default_model_missing_message(fresh_clone_pipeline, tmp_path):
    query, refer = tmp_path / "q.png", tmp_path / "r.png"
    rng = np.random.default_rng(0)
    for p in (query, refer):
        cv2.imwrite(str(p), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    proc = run_cli(query, refer, "--out", tmp_path / "out", "--pipeline", fresh_clone_pipeline)
    expected_model = tmp_path / "model" / "superretina_lowrank2_int8.xml"
    line = assert_one_line_error(proc, f"{fresh_clone_pipeline}: ", "modelPath ../model/superretina_lowrank2_int8.xml",
                                 str(expected_model), "does not exist", "qat_int8_state.pt",
                                 f"superretina.training.qat --out RUN --export {expected_model}",
                                 "resolved against the pipeline file's folder")
    assert not (tmp_path / "out" / "result.json").exists(), line


def test_demo_with_missing_model(fresh_clone_pipeline, tmp_path):
    """The first thing a user runs (``bash run.sh``) explains where the weights come from."""
    proc = run_cli("--out", tmp_path / "out", "--pipeline", fresh_clone_pipeline)
    assert_one_line_error(proc, "modelPath", "does not exist", "superretina.training.qat")


def test_missing_pipeline_file(tmp_path):
    proc = run_cli("--out", tmp_path / "out", "--pipeline", tmp_path / "nope.pipeline")
    assert_one_line_error(proc, f"{tmp_path / 'nope.pipeline'}: ", "not found")


def test_out_that_is_a_file_is_refused_before_any_work(tmp_path):
    not_a_folder = tmp_path / "results.txt"
    not_a_folder.write_text("")
    # The images do not even exist: the --out check comes first, so no model or image is touched.
    proc = run_cli(tmp_path / "q.png", tmp_path / "r.png", "--out", not_a_folder)
    assert_one_line_error(proc, f"{not_a_folder}: ", "--out must be a folder")
    proc = run_cli("--out", not_a_folder)   # the demo too
    assert_one_line_error(proc, f"{not_a_folder}: ", "--out must be a folder")
