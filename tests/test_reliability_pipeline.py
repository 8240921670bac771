"""Issue 14.6 / 14.7: pipelines that loop back, bounded GetProtobuf waits, one-line pipeline errors, pipeline fuzz."""
from __future__ import annotations

import collections
import copy
import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest

from mxlocal import StreamManagerApi as sm
from mxlocal import errors as E
from mxlocal_support import add_model, call_with_timeout, keys, protobuf_in, tensor_package_list, two_output_model
from superretina.app import open_app
from superretina.sdk import load_sdk
from superretina.stream_client import PipelineError, SuperRetinaStream, read_layout
from tests.model_fixtures import assert_one_line_error, run_cli, write_pipeline

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "pipeline").glob("*.pipeline"))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {"two": two_output_model(folder / "two.onnx"), "add": add_model(folder / "add.onnx")}


def _loop_pipeline(model: Path) -> bytes:
    """appsrc0 -> tensorinfer (pads 0 and 1) -> queue0 -> [tensorinfer:1, appsink0]: fed from its own output."""
    return json.dumps({"loop": {
        "appsrc0": {"factory": "appsrc", "next": "mxpi_tensorinfer0"},
        "mxpi_tensorinfer0": {"factory": "mxpi_tensorinfer", "next": "queue0",
                              "props": {"dataSource": "appsrc0,queue0", "modelPath": str(model)}},
        "queue0": {"factory": "queue", "next": ["mxpi_tensorinfer0:1", "appsink0"]},
        "appsink0": {"factory": "appsink"},
    }}).encode()


def test_loop_back_is_refused_at_create_with_6005(api, tiny_models, caplog):
    with caplog.at_level(logging.ERROR, logger="mxlocal"):
        assert api.CreateMultipleStreams(_loop_pipeline(tiny_models["add"])) == E.APP_ERR_STREAM_INVALID_CONFIG
    lines = [r.getMessage() for r in caplog.records if "loops back" in r.getMessage()]
    assert lines == ["[6005] stream 'loop': the data flow loops back"
                     " (mxpi_tensorinfer0 -> queue0 -> mxpi_tensorinfer0); an element cannot be fed from its own output, the stream would wait forever"]
    # A longer loop through three elements, and no stream left behind.
    longer = json.loads(_loop_pipeline(tiny_models["add"]))
    longer["s"] = longer.pop("loop")
    longer["s"]["queue0"]["next"] = "queue1"
    longer["s"]["queue1"] = {"factory": "queue", "next": ["mxpi_tensorinfer0:1", "appsink0"]}
    with caplog.at_level(logging.ERROR, logger="mxlocal"):
        assert api.CreateMultipleStreams(json.dumps(longer).encode()) == E.APP_ERR_STREAM_INVALID_CONFIG
    assert "(mxpi_tensorinfer0 -> queue0 -> queue1 -> mxpi_tensorinfer0)" in caplog.records[-1].getMessage()
    assert api.GetProtobuf(b"s", 0, keys(b"x")).size() == 0


def test_get_protobuf_wait_is_bounded(api, tiny_models, monkeypatch):
    """An element waiting for an input that never comes: GetProtobuf ends with 1011 instead of hanging."""
    monkeypatch.setenv("MXLOCAL_GET_PROTOBUF_TIMEOUT_MS", "300")
    two_inputs = {"s": {"appsrc0": {"factory": "appsrc", "next": "mxpi_tensorinfer0"},
                        "appsrc1": {"factory": "appsrc", "next": "mxpi_tensorinfer0:1"},
                        "mxpi_tensorinfer0": {"factory": "mxpi_tensorinfer", "next": "appsink0",
                                              "props": {"dataSource": "appsrc0,appsrc1",
                                                        "modelPath": str(tiny_models["add"])}},
                        "appsink0": {"factory": "appsink"}}}
    assert api.CreateMultipleStreams(json.dumps(two_inputs).encode()) == 0
    x = np.ones((1, 3), np.float32)
    assert api.SendProtobuf(b"s", 0, protobuf_in(tensor_package_list(x))) == 0  # appsrc1 never sends
    out = call_with_timeout(api.GetProtobuf, b"s", 0, keys(b"mxpi_tensorinfer0"), timeout=30)
    assert out.size() == 1 and out[0].errorCode == E.APP_ERR_COMM_TIMEOUT
    assert b"no result within 300 ms" in out[0].messageBuf


def _waiting_pipeline(tmp_path: Path, waiting_ms: int) -> Path:
    """The fp32 pipeline in multi-batch mode: a lone sample waits ``waiting_ms`` for a full batch."""
    path = write_pipeline(tmp_path / "slow.pipeline", (ROOT / "model" / "superretina.onnx").resolve(),
                          ROOT / "pipeline" / "superretina_fp32.pipeline")
    cfg = json.loads(path.read_text())
    cfg["superretina"]["mxpi_tensorinfer0"]["props"].update(singleBatchInfer="0", waitingTime=str(waiting_ms))
    path.write_text(json.dumps(cfg))
    return path


def test_client_never_pairs_a_late_result_with_the_next_request(tmp_path, monkeypatch):
    """The first result comes after 1.5 s, the client gives up at 0.3 s: the next request must fail,
    not receive the first one's late result."""
    monkeypatch.setenv("MXLOCAL_GET_PROTOBUF_TIMEOUT_MS", "300")
    stream = SuperRetinaStream(_waiting_pipeline(tmp_path, 1500), load_sdk("local"))
    try:
        x = np.random.default_rng(0).random((1, 1, 64, 64), dtype=np.float32)
        with pytest.raises(PipelineError, match="stalled"):
            stream.infer(x)
        with pytest.raises(PipelineError, match="stalled"):
            stream.infer(x[..., :32, :32])
    finally:
        call_with_timeout(stream.close, timeout=30)


def test_close_does_not_wait_for_a_stalled_stream(tmp_path):
    """A request the stream will not answer for 1000 s (multi-batch waiting): close() returns at once."""
    stream = SuperRetinaStream(_waiting_pipeline(tmp_path, 1000000), load_sdk("local"))
    future = stream.infer_async(np.zeros((1, 1, 64, 64), np.float32))
    call_with_timeout(stream.close, timeout=20)  # the old close joined the receiver for 60 s first
    with pytest.raises(PipelineError):
        future.result(timeout=20)


# -- 14.7: one-line errors for pipeline files ---------------------------------------------------
PIPELINE_ERRORS = {
    "top-level-list": (b'[{"superretina": {}}]', "the top level must be a JSON object of streams"),
    "non-utf8": ('{"s": {"appsrc0": {"factory": "appsrc", "next": "mxpi_tensorinfer0"}}} # \xe9'.encode("latin-1"),
                 "not UTF-8 text"),
    "model-path-number": (None, "modelPath must be the model file's path as a string, got 42"),
    "props-string": (None, "\"props\" must be a JSON object, got a JSON string"),
    "deep": (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
}


def _variant(case: str) -> bytes:
    text, _ = PIPELINE_ERRORS[case]
    if text is not None:
        return text
    cfg = json.loads((ROOT / "pipeline" / "superretina.pipeline").read_text())
    infer = cfg["superretina"]["mxpi_tensorinfer0"]
    if case == "model-path-number":
        infer["props"]["modelPath"] = 42
    else:
        infer["props"] = "modelPath=../model/superretina.onnx"
    return json.dumps(cfg).encode()


@pytest.mark.parametrize("case", sorted(PIPELINE_ERRORS))
def test_bad_pipeline_file_is_one_line(case, tmp_path):
    path = tmp_path / f"{case}.pipeline"
    path.write_bytes(_variant(case))
    with pytest.raises(PipelineError) as info:
        read_layout(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and PIPELINE_ERRORS[case][1] in message and "\n" not in message


def test_bad_pipeline_through_cli(tmp_path, retina_bgr):
    import cv2

    image = tmp_path / "a.png"
    cv2.imwrite(str(image), cv2.resize(retina_bgr, (200, 200)))
    for case in ("top-level-list", "props-string"):
        path = tmp_path / f"{case}.pipeline"
        path.write_bytes(_variant(case))
        proc = run_cli(image, image, "--out", tmp_path / "out", "--pipeline", path)
        assert_one_line_error(proc, f"{path}: ", PIPELINE_ERRORS[case][1])


def test_missing_model_message_names_the_folder_it_looked_in(tmp_path):
    copied = tmp_path / "elsewhere" / "superretina.pipeline"
    copied.parent.mkdir()
    # modelPath ../model/superretina_lowrank2_bf16.xml: a model made from a float ONNX (the default's recipe: test_cli)
    copied.write_text((ROOT / "pipeline" / "superretina_lowrank2.pipeline").read_text())
    with pytest.raises(Exception) as info:
        open_app(None, copied, "local")
    message = str(info.value)
    assert f"{tmp_path / 'model' / 'superretina_lowrank2_bf16.xml'} does not exist" in message
    assert f"resolved against the pipeline file's folder {copied.parent}" in message
    # The recipe makes the file where the pipeline looks, not in a folder relative to the working directory.
    model_dir = tmp_path / "model"
    assert f"to_openvino {model_dir / 'superretina_lowrank2.onnx'} {model_dir / 'superretina_lowrank2_bf16.xml'}" in message


def test_wrong_shape_model_error_names_the_model_file(tiny_models, tmp_path):
    path = write_pipeline(tmp_path / "two.pipeline", tiny_models["two"])
    with SuperRetinaStream(path, load_sdk("local")) as stream:
        with pytest.raises(PipelineError) as info:
            stream.infer(np.zeros((1, 1, 64, 64), np.float32))
    assert str(info.value).startswith(f"{tiny_models['two']}: descriptor output has")


# -- fuzz --------------------------------------------------------------------------------------
_VALUES = [None, 0, -1, 1.5, True, "", "x", "appsink0", "mxpi_tensorinfer0:1", "queue0", [], {}, ["appsink0"],
           {"factory": "queue"}, "a" * 300, "appsrc0:7", "../../etc/passwd", "0"]


def _mutate(rng: random.Random, cfg: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    for _ in range(rng.randint(1, 3)):
        stream = rng.choice(list(cfg))
        body = cfg[stream]
        if not isinstance(body, dict) or not body:
            cfg[stream] = rng.choice(_VALUES)
            continue
        name = rng.choice(list(body))
        el = body[name]
        op = rng.randrange(8)
        if op == 0:
            del body[name]
        elif op == 1:
            body[name] = rng.choice(_VALUES)
        elif op == 2 and isinstance(el, dict):
            el[rng.choice(["factory", "next", "props", "nextMeta", "extra"])] = rng.choice(_VALUES)
        elif op == 3 and isinstance(el, dict) and isinstance(el.get("props"), dict) and el["props"]:
            el["props"][rng.choice(list(el["props"]))] = rng.choice(_VALUES)
        elif op == 4 and isinstance(el, dict):  # re-link somewhere in the stream, loops included
            el["next"] = rng.sample(list(body), rng.randint(1, min(2, len(body))))
        elif op == 5:
            body[f"queue{rng.randrange(3)}"] = {"factory": "queue", "next": rng.choice(list(body))}
        elif op == 6:
            cfg[rng.choice(["", "a b", "s2", stream])] = copy.deepcopy(body)
        else:
            body["stream_config"] = rng.choice([{"deviceId": rng.choice(_VALUES)}, rng.choice(_VALUES)])
    return cfg


def test_fuzz_pipeline_parser(tiny_models, tmp_path, monkeypatch):
    """Random mutations of the shipped pipelines: a created stream or an SDK code, and a layout or one line."""
    monkeypatch.setenv("MXLOCAL_GET_PROTOBUF_TIMEOUT_MS", "2000")
    rng = random.Random(614)
    seeds = []
    for path in SHIPPED:
        seed = json.loads(write_pipeline(tmp_path / path.name, tiny_models["two"], path).read_text())
        seeds.append(seed)
    api = sm.StreamManagerApi()
    assert api.InitManager() == 0
    outcomes = collections.Counter()
    n = 400
    for i in range(n):
        cfg = _mutate(rng, seeds[i % len(seeds)])
        text = json.dumps(cfg).encode()
        if rng.random() < 0.15:  # byte damage on top
            data = bytearray(text)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            text = bytes(data)
        path = tmp_path / "fuzz.pipeline"
        path.write_bytes(text)
        try:
            read_layout(path)
            outcomes["layout ok"] += 1
        except PipelineError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(f"{path}: "), str(exc)
            outcomes["layout: one-line error"] += 1
        code = call_with_timeout(api.CreateMultipleStreams, text, timeout=30)
        assert isinstance(code, int)
        if code:
            outcomes[f"create: code {code}"] += 1
            continue
        outcomes["create: ok"] += 1
        # Created: feed every stream once; each Get returns (a result, an error or the bounded timeout).
        for stream in (k for k, v in cfg.items() if isinstance(v, dict)):
            tensor = protobuf_in(tensor_package_list(np.zeros((1, 1, 8, 8), np.float32)))
            if api.SendProtobuf(stream.encode(), 0, tensor):
                outcomes["send refused"] += 1
                continue
            out = call_with_timeout(api.GetProtobuf, stream.encode(), 0, keys(b"mxpi_tensorinfer0"), timeout=30)
            outcomes["get: result" if out.size() and out[0].errorCode == 0 else "get: error/empty"] += 1
        assert api.DestroyAllStreams() == 0
    print(f"\npipeline fuzz (seed 614): {n} mutated pipelines; {dict(sorted(outcomes.items()))}")
    assert outcomes["create: ok"] > 10
