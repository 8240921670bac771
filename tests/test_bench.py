"""The speed benchmark (benchmarks/bench.py): CLI end to end on a small pair, and its helpers.

A seeded random-weights half-width network stands in for the trained weights (absent from a
fresh clone); a 128x128 model frame and 300 keypoints keep one run of each side to seconds.
"""
import json

import numpy as np
import pytest

from benchmarks.bench import build_parser, homography_distance, main, pipeline_with_model
from superretina.stream_client import read_layout

torch = pytest.importorskip("torch", reason="the PyTorch baseline needs torch (the train extra)")
pytest.importorskip("onnx", reason="the export needs onnx (the train extra)")


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    from superretina.model.export import export_onnx
    from superretina.model.network import SuperRetinaNet, checkpoint_dict

    folder = tmp_path_factory.mktemp("bench_model")
    torch.manual_seed(0)
    ckpt = folder / "random.pth"
    torch.save(checkpoint_dict(SuperRetinaNet("half")), ckpt)
    return export_onnx(ckpt, folder / "random.onnx", size=128)


def test_bench_cli_runs_both_sides_and_writes_json(small_model, tmp_path, capsys):
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("model:\n  image_width: 128\n  image_height: 128\nkeypoints:\n  max_keypoints: 300\n")
    out = tmp_path / "bench.json"
    from superretina.model.to_openvino import convert

    ir = convert(small_model, tmp_path / "random.xml", "bf16")  # the second engine, side by side
    rc = main(["--size", "256", "--runs", "1", "--warmup", "0", "--model", str(small_model), "--model", str(ir),
               "--baseline-model", str(small_model), "--config", str(cfg), "--json", str(out), "--quiet"])
    assert rc == 0
    table = capsys.readouterr().out
    for label in ("read (2 JPEG decodes)", "inference (2 images)", "matching trick", "outputs (pictures + json)",
                  "end to end", "peak RSS, MB (VmHWM)", "torch eager"):
        assert label in table
    report = json.loads(out.read_text())
    sides = report["sizes"][0]["sides"]
    # the default --baseline: version 0.2.0's driver, extracted from git, on --baseline-model
    assert set(sides) == {"random.onnx", "random.xml", "0.2.0 (git 6edbbc6)", "torch eager"}
    assert sides["0.2.0 (git 6edbbc6)"]["engine"].startswith("onnxruntime ")
    import superretina
    assert sides["0.2.0 (git 6edbbc6)"]["version"] == "0.2.0" != superretina.__version__
    assert sides["random.onnx"]["version"] == superretina.__version__
    ratio = sides["random.onnx"]["median"]["total"] / sides["0.2.0 (git 6edbbc6)"]["median"]["total"]
    assert (f"end to end with pictures: random.onnx {sides['random.onnx']['median']['total']:.3f} s / "
            f"0.2.0 (git 6edbbc6) {sides['0.2.0 (git 6edbbc6)']['median']['total']:.3f} s = {ratio:.2f}x") in table
    assert sides["random.onnx"]["engine"].startswith("onnxruntime ")
    assert sides["random.xml"]["engine"].startswith("openvino ")
    assert sides["torch eager"]["engine"].startswith("torch ")
    assert "random.xml: openvino" in table
    for side in sides.values():
        stages = side["median"]
        assert stages["total"] > 0 and stages["inference"] > 0 and side["peak_rss_mb"] > 50
        # The parts cannot exceed the whole (the driver's stages are disjoint).
        parts = sum(stages[k] for k in ("read", "enhance", "inference", "nms", "descriptors", "matching",
                                        "homography", "matching trick", "outputs"))
        assert parts <= stages["total"] * 1.01
        assert side["keypoints"][0] <= 300


def test_help_explains_the_options(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--runs", "--model", "--json", "--sizes", "--max-keypoints", "ru_maxrss"):
        assert option in text


def test_pipeline_copy_points_at_the_model(tmp_path, small_model):
    pipe = pipeline_with_model(small_model, tmp_path / "p.pipeline")
    assert read_layout(pipe).model_path == str(small_model.resolve())


def test_homography_distance():
    pts = np.array([[0.0, 0.0], [100.0, 50.0]])
    shift = np.array([[1, 0, 3], [0, 1, 4], [0, 0, 1]], float)
    assert homography_distance(np.eye(3), shift, pts) == pytest.approx(5.0)
    assert homography_distance(None, shift, pts) == float("inf")


def test_missing_model_is_one_line_error(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "none.onnx"), "--no-baseline"]) == 2
    assert "model not found" in capsys.readouterr().err


def test_baseline_runs_its_own_default_model(tmp_path):
    """Without --baseline-model an earlier version runs the model its own default pipeline names
    (0.2.0: superretina_bf16.xml, the published head), not this version's first --model."""
    from benchmarks.bench import ROOT, BenchError, baseline_default_model

    assert baseline_default_model(ROOT / "pipeline" / "superretina_bf16.pipeline") == ROOT / "model" / "superretina_bf16.xml"
    missing = pipeline_with_model(tmp_path / "gone.xml", tmp_path / "p.pipeline")
    with pytest.raises(BenchError, match="give --baseline-model"):
        baseline_default_model(missing)
