"""``--device`` on batch, fire and compare, and results that say which device made them (issue 20, item 12).

The device recorded is the one the engine reports (ONNX Runtime's session providers, OpenVINO's
compiled ``EXECUTION_DEVICES``), not the flag: ``auto`` and ``cpu`` agree on a machine without
a GPU, and a resumable run refuses rows its store says were made on another device.
"""
import csv
import json
from pathlib import Path

import cv2
import onnxruntime
import openvino
import pytest

from mxlocal.model_runtime import engine_report, gpu_missing
from superretina.app import open_app
from superretina.batch.fingerprint import setup_sha
from superretina.demo import make_pair
from superretina.fire.synth import make_synthetic_set
from tests.model_fixtures import assert_one_line_error, run_cli

NO_GPU = pytest.mark.skipif(gpu_missing(".xml") is None or gpu_missing(".onnx") is None,
                            reason="this machine has a GPU: the 'absent' line cannot be seen")
FAST = "model:\n  image_width: 384\n  image_height: 384\nkeypoints:\n  max_keypoints: 300\n"


@pytest.fixture(scope="module")
def batch_inputs(tmp_path_factory, retina_bgr):
    """One 384 px demo pair, its PAIRS.csv and a fast config."""
    folder = tmp_path_factory.mktemp("device_batch")
    refer = cv2.resize(retina_bgr, (384, 384), interpolation=cv2.INTER_AREA)
    query, _, _ = make_pair(refer)
    cv2.imwrite(str(folder / "q.png"), query)
    cv2.imwrite(str(folder / "r.png"), refer)
    (folder / "pairs.csv").write_text("id,query,refer\np1,q.png,r.png\n")
    (folder / "fast.yaml").write_text(FAST)
    return folder


@pytest.fixture(scope="module")
def fire_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("device_fire") / "set"
    make_synthetic_set(out, ["skimage:retina"], pairs_per_image=1, size=384, seed=3, categories=("S",),
                       progress=False, geometry="homography")
    (out.parent / "fast.yaml").write_text(FAST)
    return out


@pytest.mark.parametrize("model, name, version, providers", [
    ("bf16", "openvino", openvino.__version__.split("-")[0], ["CPU"]),
    ("fp32", "onnxruntime", onnxruntime.__version__, ["CPUExecutionProvider"]),
])
@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_provenance_names_the_device_the_engine_reports(model, name, version, providers, device):
    if device == "auto" and gpu_missing(".onnx" if model == "fp32" else ".xml") is None:
        pytest.skip("auto runs on this machine's GPU")
    with open_app(model=model, device=device, runtime="local") as app:
        prov = app.provenance
    assert prov["device"] == "cpu"
    assert prov["engine"]["name"] == name and prov["engine"]["version"] == version
    assert prov["engine"]["providers"] == providers
    if model == "bf16":   # the precision the compiled model computes in, as OpenVINO says
        assert prov["engine"]["precision"] in ("bf16", "f32")


def test_local_runtime_answers_which_engine_runs_an_element():
    with open_app(model="fp32", device="cpu", runtime="local") as app:
        api, layout = app.stream.api, app.stream.layout
        report = api.GetModelEngine(layout.infer_stream, layout.infer_key)
        assert report == {"device": app.provenance["device"], **app.provenance["engine"]}
        assert api.GetModelEngine(layout.infer_stream, b"no_such_element") is None
        assert api.GetModelEngine(b"no_such_stream", layout.infer_key) is None


def test_device_follows_the_engines_first_provider():
    assert engine_report("onnxruntime", "1", ["CUDAExecutionProvider", "CPUExecutionProvider"])["device"] == "gpu"
    assert engine_report("onnxruntime", "1", ["CPUExecutionProvider"])["device"] == "cpu"
    assert engine_report("openvino", "1", ["GPU.0"])["device"] == "gpu"
    assert engine_report("openvino", "1", ["CPU"])["device"] == "cpu"
    assert engine_report("torch", "1", ["cuda:0"])["device"] == "gpu"
    assert engine_report("torch", "1", ["cpu"])["device"] == "cpu"


@NO_GPU
@pytest.mark.parametrize("command", ["batch", "batch-ray", "fire", "compare"])
def test_device_gpu_without_one_is_one_line_before_any_work(command, batch_inputs, fire_set, tmp_path):
    out = tmp_path / "o"
    if command.startswith("batch"):
        args = ["batch", batch_inputs / "pairs.csv", "--out", out, "--model", "fp32", "--device", "gpu"]
        args += ["--engine", "ray"] if command == "batch-ray" else []
        engine = "ONNX Runtime"
    else:
        args = [command, fire_set, "--out", out, "--device", "gpu"]
        engine = "OpenVINO"
    assert_one_line_error(run_cli(*args), "--device gpu", "no GPU", engine, "use cpu")
    assert not out.exists()


def _pretend_made_on_gpu(out: Path, rows_csv: str) -> None:
    """Rewrite the store as a GPU run would have left it: run.json's setup says gpu (as OpenVINO's GPU
    plugin or ONNX Runtime's CUDA provider would report it) and every row carries that setup's key."""
    record = json.loads((out / "run.json").read_text())
    engine = dict(record["setup"]["engine"])
    if engine["name"] == "openvino":   # the GPU plugin computes the bf16 model in f32 (model_runtime)
        engine.update(providers=["GPU.0"], precision="f32")
    else:
        engine.update(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    setup = {**record["setup"], "device": "gpu", "engine": engine}
    (out / "run.json").write_text(json.dumps({"setup": setup, "setup_sha": setup_sha(setup)}))
    with open(out / rows_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["setup_sha"] == record["setup_sha"] for r in rows)
    with open(out / rows_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "setup_sha": setup_sha(setup)} for r in rows)


def test_batch_rerun_auto_cpu_accepted_rows_made_on_gpu_refused(batch_inputs, tmp_path):
    out = tmp_path / "batch"
    common = ["batch", batch_inputs / "pairs.csv", "--out", out, "--config", batch_inputs / "fast.yaml",
              "--no-progress", "--no-pictures"]
    first = run_cli(*common, "--device", "auto")
    assert first.returncode == 0, first.stderr
    info = json.loads((out / "pairs" / "p1" / "result.json").read_text())
    assert info["device"] == "cpu" and info["engine"]["providers"] == ["CPU"]
    assert json.loads((out / "run.json").read_text())["setup"]["device"] == "cpu"
    # auto and cpu run on the same device here: the finished row is reused, not refused.
    second = run_cli(*common, "--device", "cpu")
    assert second.returncode == 0, second.stderr
    assert "0 processed now, 1 reused" in second.stdout
    _pretend_made_on_gpu(out, "summary.csv")
    assert_one_line_error(run_cli(*common, "--device", "cpu"), str(out), "1 finished row(s)",
                          "device 'gpu' → 'cpu'", "'providers': ['GPU.0']", "--restart")


def test_fire_rerun_auto_cpu_accepted_rows_made_on_gpu_refused(fire_set, tmp_path):
    out = tmp_path / "fire"
    common = ["fire", fire_set, "--out", out, "--config", fire_set.parent / "fast.yaml", "--no-progress"]
    first = run_cli(*common, "--device", "auto")
    assert first.returncode == 0, first.stderr
    rows = (out / "pairs.csv").read_text()
    assert json.loads((out / "run.json").read_text())["setup"]["device"] == "cpu"
    second = run_cli(*common, "--device", "cpu")
    assert second.returncode == 0, second.stderr
    assert (out / "pairs.csv").read_text() == rows     # the row was reused (a rerun would have new seconds)
    _pretend_made_on_gpu(out, "pairs.csv")
    assert_one_line_error(run_cli(*common, "--device", "auto"), str(out), "device 'gpu' → 'cpu'", "--restart")


@NO_GPU
def test_ray_workers_open_the_model_on_the_device_asked(tmp_path):
    """The driver's early check aside, every Ray actor opens its model with --device: asked for a GPU
    that is absent, the actor fails with the same line (cpu works: the test above and test_batch_ray)."""
    pytest.importorskip("ray", reason="the Ray engine needs the cluster extra: pip install -e '.[cluster]'")
    from superretina.batch.ray_engine import RayEngine

    engine = RayEngine(None, None, "local", workers=1, num_cpus=1, device="gpu")
    try:
        with pytest.raises(Exception, match="--device gpu: no GPU for superretina_lowrank2_int8.xml"):
            engine.setup("none")
    finally:
        engine.close()


def test_sift_with_device_gpu_is_refused_in_one_line(fire_set, tmp_path):
    out = tmp_path / "sift"
    assert_one_line_error(run_cli("fire", fire_set, "--method", "sift", "--device", "gpu", "--out", out),
                          "--device gpu", "SIFT", "--method superretina")
    assert not out.exists()
