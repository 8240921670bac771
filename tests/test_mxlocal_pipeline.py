"""Pipeline JSON (reference §3.1): parsing, validation codes and one-line error messages."""
from __future__ import annotations

import json
import logging
import textwrap

import numpy as np
import pytest

from mxlocal import plugin_loader
from mxlocal.pipeline_config import parse_pipeline
from mxlocal_support import data_input, get_tensors, pipeline, protobuf_in, tensor_package_list, two_output_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return two_output_model(tmp_path_factory.mktemp("models") / "tiny.onnx")


def _create(api, caplog, config) -> tuple[int, list[str]]:
    """Create streams; return the code and the mxlocal ERROR lines logged."""
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="mxlocal"):
        code = api.CreateMultipleStreams(config if isinstance(config, bytes) else json.dumps(config).encode())
    lines = [r.getMessage() for r in caplog.records if r.name == "mxlocal" and r.levelno >= logging.ERROR]
    return code, lines


def _stream(**elements):
    return {"s": elements}


SRC = {"factory": "appsrc", "next": "appsink0"}
SINK = {"factory": "appsink"}


def _assert_one_line(lines, *parts):
    assert len(lines) == 1, lines
    assert "\n" not in lines[0]
    for part in parts:
        assert part in lines[0], (part, lines[0])


def test_json_syntax_error(api, caplog):
    code, lines = _create(api, caplog, b'{"s": {"appsrc0": {"factory": "appsrc",}}}')
    assert code == 6005
    _assert_one_line(lines, "not valid JSON", "line 1")


@pytest.mark.parametrize("config", [b"[]", b"{}", b'{"s": {}}', b'{"s": 3}', b'{"s": {"appsrc0": 1}}'])
def test_structure_errors_6005(api, caplog, config):
    assert _create(api, caplog, config)[0] == 6005


def test_unknown_factory(api, caplog):
    code, lines = _create(api, caplog, _stream(appsrc0={"factory": "appsrc", "next": "my_elem0"},
                                                my_elem0={"factory": "mxpi_nosuchplugin", "next": "appsink0"},
                                                appsink0=SINK))
    assert code == 6014
    _assert_one_line(lines, "stream 's'", "element 'my_elem0'", "unknown factory 'mxpi_nosuchplugin'")


def test_sdk_factory_not_implemented_locally_is_6014_not_pass_through(api, caplog):
    code, lines = _create(api, caplog, _stream(
        appsrc0={"factory": "appsrc", "next": "mxpi_objectpostprocessor0"},
        mxpi_objectpostprocessor0={"factory": "mxpi_objectpostprocessor", "next": "appsink0"}, appsink0=SINK))
    assert code == 6014
    _assert_one_line(lines, "mxpi_objectpostprocessor0", "MindX SDK plugin the local runtime does not implement")


def test_missing_factory(api, caplog):
    code, lines = _create(api, caplog, _stream(appsrc0={"next": "appsink0"}, appsink0=SINK))
    assert code == 6014
    _assert_one_line(lines, "element 'appsrc0'", "factory")


def test_dangling_next(api, caplog):
    code, lines = _create(api, caplog, _stream(appsrc0={"factory": "appsrc", "next": "appsink9"}, appsink0=SINK))
    assert code == 6013  # SDK LinkElements: APP_ERR_STREAM_ELEMENT_NOT_EXIST
    _assert_one_line(lines, "stream 's'", "element 'appsrc0'", "'appsink9'", "not an element")


@pytest.mark.parametrize("next_value", ["appsink0:x", ":0", "appsink0:", 5, ["appsink0", 3]])
def test_malformed_next_6006(api, caplog, next_value):
    code, lines = _create(api, caplog, _stream(appsrc0={"factory": "appsrc", "next": next_value}, appsink0=SINK))
    assert code == 6006
    _assert_one_line(lines, "element 'appsrc0'", "next")


def test_pad_numbers_must_be_consecutive_6006(api, caplog):
    config = _stream(appsrc0={"factory": "appsrc", "next": "queue0:1"}, queue0={"factory": "queue", "next": "appsink0"},
                     appsink0=SINK)
    code, lines = _create(api, caplog, config)
    assert code == 6006
    _assert_one_line(lines, "sink pad 1", "'queue0'")


def test_link_the_element_cannot_make_6007(api, caplog):
    code, lines = _create(api, caplog, _stream(appsrc0=SRC, appsink0={"factory": "appsink", "next": "appsrc0"}))
    assert code == 6007
    _assert_one_line(lines, "element 'appsink0'", "no output pad")
    code, _ = _create(api, caplog, _stream(appsrc0={"factory": "appsrc", "next": "appsink0"},
                                           appsrc1={"factory": "appsrc", "next": "appsink0:1"}, appsink0=SINK))
    assert code == 6007  # appsink has one sink pad


def test_unlinked_element_6016(api, caplog):
    code, lines = _create(api, caplog, _stream(appsrc0=SRC, appsink0=SINK, queue0={"factory": "queue", "next": "appsink1"},
                                               appsink1=SINK))
    assert code == 6016
    _assert_one_line(lines, "element 'queue0'", "not linked")


@pytest.mark.parametrize("name,factory", [("src0", "appsrc"), ("appsrc_a", "appsrc"), ("sink", "appsink"),
                                          ("appsink0x", "appsink"), ("bad name", "queue")])
def test_element_names_6011(api, caplog, name, factory):
    config = _stream(appsrc0={"factory": "appsrc", "next": name}, appsink0=SINK)
    config["s"][name] = {"factory": factory, "next": "appsink0"} if factory != "appsink" else {"factory": factory}
    if factory == "appsrc":
        config["s"] = {name: {"factory": "appsrc", "next": "appsink0"}, "appsink0": SINK}
    code, lines = _create(api, caplog, config)
    assert code == 6011
    _assert_one_line(lines, name)


@pytest.mark.parametrize("device_id,code", [("0", 0), ("3", 0), ("", 0), (0, 1004), ("-1", 1004), ("01", 1004), ("a", 1004)])
def test_stream_config_device_id_is_a_string_int(api, caplog, device_id, code):
    config = _stream(stream_config={"deviceId": device_id}, appsrc0=SRC, appsink0=SINK)
    assert _create(api, caplog, config)[0] == code


def test_property_errors_6015(api, caplog, model):
    def infer(props):
        return _stream(appsrc0={"factory": "appsrc", "next": "mxpi_tensorinfer0"},
                       mxpi_tensorinfer0={"factory": "mxpi_tensorinfer", "props": props, "next": "appsink0"},
                       appsink0=SINK)

    code, lines = _create(api, caplog, infer({}))
    assert code == 6015
    _assert_one_line(lines, "stream 's'", "element 'mxpi_tensorinfer0'", "'modelPath' is missing")
    code, lines = _create(api, caplog, infer({"modelPath": str(model), "singleBatchInfer": "2"}))
    assert code == 6015
    _assert_one_line(lines, "singleBatchInfer='2'", "[0, 1]")
    code, lines = _create(api, caplog, infer({"modelPath": str(model), "waitingTim": "10"}))
    assert code == 6015
    _assert_one_line(lines, "unknown property 'waitingTim'")
    code, lines = _create(api, caplog, infer({"modelPath": str(model), "outputDeviceId": "x"}))
    assert code == 6015 and "integer" in lines[0]
    code, lines = _create(api, caplog, _stream(appsrc0={"factory": "appsrc", "props": [], "next": "appsink0"}, appsink0=SINK))
    assert code == 6015
    code, lines = _create(api, caplog, _stream(appsrc0={"factory": "appsrc", "props": {"blocksize": {"a": 1}},
                                                        "next": "appsink0"}, appsink0=SINK))
    assert code == 6015


def test_om_model_and_missing_model_6015(api, caplog, tmp_path):
    props = {"modelPath": "model/SuperRetina.om"}
    config = _stream(appsrc0={"factory": "appsrc", "next": "mxpi_tensorinfer0"},
                     mxpi_tensorinfer0={"factory": "mxpi_tensorinfer", "props": props, "next": "appsink0"}, appsink0=SINK)
    code, lines = _create(api, caplog, config)
    assert code == 6015
    _assert_one_line(lines, "element 'mxpi_tensorinfer0'", "is an Ascend .om model",
                     "point modelPath at the .onnx export")
    props["modelPath"] = str(tmp_path / "absent.onnx")
    code, lines = _create(api, caplog, config)
    assert code == 6015
    _assert_one_line(lines, "model file not found", str(tmp_path / "absent.onnx"))
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    props["modelPath"] = str(tmp_path / "broken.onnx")
    code, lines = _create(api, caplog, config)
    assert code == 6015
    _assert_one_line(lines, "cannot load ONNX model")


def test_failed_create_leaves_no_stream_behind(api, caplog):
    config = {"good": {"appsrc0": SRC, "appsink0": SINK},
              "bad": {"appsrc0": {"factory": "appsrc", "next": "x0"}, "x0": {"factory": "nope", "next": "appsink0"},
                      "appsink0": SINK}}
    assert _create(api, caplog, config)[0] == 6014
    assert api.SendData(b"good", 0, data_input(b"x")) == 6002
    del config["bad"]
    assert _create(api, caplog, config)[0] == 0


def test_parse_orders_elements_and_default_data_source():
    text = json.dumps({"s": {
        "appsrc1": {"factory": "appsrc", "next": "mxpi_tensorinfer0:1"},
        "appsrc0": {"factory": "appsrc", "next": "mxpi_tensorinfer0:0"},
        "appsrc10": {"factory": "appsrc", "next": "appsink10"},
        "mxpi_tensorinfer0": {"factory": "mxpi_tensorinfer", "next": ["appsink2", "appsink0"]},
        "appsink2": {"factory": "appsink"}, "appsink0": {"factory": "appsink"}, "appsink10": {"factory": "appsink"},
        "stream_config": {"deviceId": "1"}}})
    (config,) = parse_pipeline(text.encode())
    assert config.device_id == 1
    assert config.appsrc_names() == ["appsrc0", "appsrc1", "appsrc10"]
    assert config.appsink_names() == ["appsink0", "appsink2", "appsink10"]
    assert config.elements["mxpi_tensorinfer0"].upstream == ["appsrc0", "appsrc1"]
    assert [link.target for link in config.elements["mxpi_tensorinfer0"].next] == ["appsink2", "appsink0"]


def test_relative_model_path_resolves_against_pipeline_file(api, caplog, model, tmp_path, monkeypatch):
    folder = tmp_path / "project"
    (folder / "pipeline").mkdir(parents=True)
    (folder / "model").mkdir()
    (folder / "model" / "tiny.onnx").write_bytes(model.read_bytes())
    text = pipeline("rel", {"mxpi_tensorinfer0": ("mxpi_tensorinfer",
                                                  {"modelPath": "../model/tiny.onnx", "singleBatchInfer": "1"})})
    (folder / "pipeline" / "rel.pipeline").write_bytes(text)
    monkeypatch.chdir(tmp_path)  # the CWD does not hold ../model
    assert api.CreateMultipleStreamsFromFile(b"project/pipeline/rel.pipeline") == 0
    x = np.ones((1, 1, 2, 2), np.float32)
    assert api.SendProtobuf(b"rel", 0, protobuf_in(tensor_package_list(x))) == 0
    assert get_tensors(api, b"rel") is not None
    # CreateMultipleStreams (bytes): relative to the CWD
    assert api.StopStream(b"rel") == 0
    code, lines = _create(api, caplog, text)
    assert code == 6015 and str(tmp_path.parent) in lines[0]
    monkeypatch.chdir(folder / "pipeline")
    assert _create(api, caplog, text)[0] == 0


def test_missing_pipeline_file(api, caplog, tmp_path):
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="mxlocal"):
        assert api.CreateMultipleStreamsFromFile(str(tmp_path / "none.pipeline").encode()) == 1029
    assert "none.pipeline" in caplog.text


def test_user_plugin_from_env_path(api, caplog, tmp_path, monkeypatch):
    (tmp_path / "my_upper.py").write_text(textwrap.dedent('''
        from mxlocal.plugin_base import PluginBase, Prop

        class Upper(PluginBase):
            factory = "my_upper"
            properties = {"suffix": Prop("string", "")}

            def process(self, buffers):
                buffers[0].data = bytes(buffers[0].data).upper() + self.props["suffix"].encode()
                return [buffers[0]]
    '''))
    monkeypatch.setenv(plugin_loader.ENV_PLUGIN_PATH, str(tmp_path))
    text = pipeline("user", {"my_upper0": ("my_upper", {"suffix": "!"})})
    assert _create(api, caplog, text)[0] == 0
    assert api.SendData(b"user", 0, data_input(b"abc")) == 0
    assert api.GetResult(b"user", 0, 3000).data == b"ABC!"
