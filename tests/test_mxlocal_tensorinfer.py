"""mxpi_tensorinfer (reference §3.3) with real ONNX models, against ONNX Runtime directly."""
from __future__ import annotations

import json
import threading

import numpy as np
import onnxruntime as ort
import pytest

from mxlocal import MxpiDataType_pb2 as pb
from mxlocal_support import (call_with_timeout, conv_model, get_tensors, keys, pipeline, protobuf_in,
                             tensor_array, tensor_package_list, two_output_model, uint8_model)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {
        "dynamic": two_output_model(folder / "dynamic.onnx"),
        "conv2": conv_model(folder / "conv2.onnx", batch=2, size=16),
        "uint8": uint8_model(folder / "uint8.onnx"),
    }


def _infer_stream(api, name: str, model, serialize: bool = False, **props) -> None:
    props = {"dataSource": "appsrc0", "modelPath": str(model), **{k: str(v) for k, v in props.items()}}
    middle = {"mxpi_tensorinfer0": ("mxpi_tensorinfer", props)}
    if serialize:
        middle["mxpi_dataserialize0"] = ("mxpi_dataserialize", {"outputDataKeys": "mxpi_tensorinfer0"})
    assert api.CreateMultipleStreams(pipeline(name, middle, deviceId="0")) == 0


def _reference(model, **feeds):
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_round_trip_equals_onnx_runtime_bit_for_bit(api, models):
    _infer_stream(api, "sr", models["dynamic"], singleBatchInfer=1)
    x = np.random.default_rng(1).standard_normal((2, 1, 24, 40)).astype(np.float32)
    assert api.SendProtobuf(b"sr", 0, protobuf_in(tensor_package_list(x))) == 0
    result = get_tensors(api, b"sr")
    y_ref, z_ref = _reference(models["dynamic"], x=x)
    package = result.tensorPackageVec[0]
    y, z = package.tensorVec
    assert tensor_array(y, np.float32, x.shape).tobytes() == y_ref.tobytes()
    assert tensor_array(z, np.float16, x.shape).tobytes() == z_ref.tobytes()
    # SDK output conventions
    assert list(y.tensorShape) == [1, 1, 24, 40] and list(z.tensorShape) == [1, 1, 24, 40]  # leading dim 1
    assert (y.tensorDataType, z.tensorDataType) == (0, 1)
    assert (y.tensorDataSize, z.tensorDataSize) == (x.nbytes, x.nbytes // 2)
    assert y.memType == pb.MXPI_MEMORY_HOST_MALLOC and y.deviceId == 0 and y.freeFunc == 0 and y.tensorDataPtr
    assert [(h.dataSource, h.memberId) for h in package.headerVec] == [("appsrc0", 0)]


def test_static_batch_two_single_batch_infer_reports_leading_one(api, models):
    _infer_stream(api, "b2", models["conv2"], singleBatchInfer=1)
    x = np.random.default_rng(2).standard_normal((2, 1, 16, 16)).astype(np.float32)
    assert api.SendProtobuf(b"b2", 0, protobuf_in(tensor_package_list(x))) == 0
    feat, pool = get_tensors(api, b"b2").tensorPackageVec[0].tensorVec
    feat_ref, pool_ref = _reference(models["conv2"], x=x)
    assert list(feat.tensorShape) == [1, 4, 16, 16] and list(pool.tensorShape) == [1, 4, 8, 8]
    np.testing.assert_array_equal(tensor_array(feat, np.float32, (2, 4, 16, 16)), feat_ref)
    np.testing.assert_array_equal(tensor_array(pool, np.float32, (2, 4, 8, 8)), pool_ref)


def test_multi_batch_mode_one_sample_per_package(api, models):
    # singleBatchInfer 0 and a static batch-2 model: two (1,1,16,16) sends are inferred as one batch
    _infer_stream(api, "mb", models["conv2"], waitingTime=20000)
    rng = np.random.default_rng(3)
    samples = [rng.standard_normal((1, 1, 16, 16)).astype(np.float32) for _ in range(2)]
    for s in samples:
        assert api.SendProtobuf(b"mb", 0, protobuf_in(tensor_package_list(s))) == 0
    feat_ref, _ = _reference(models["conv2"], x=np.concatenate(samples))
    for i in range(2):
        feat, pool = get_tensors(api, b"mb").tensorPackageVec[0].tensorVec
        assert list(feat.tensorShape) == [1, 4, 16, 16] and feat.tensorDataSize == 4 * 16 * 16 * 4
        np.testing.assert_array_equal(tensor_array(feat, np.float32, (1, 4, 16, 16)), feat_ref[i:i + 1])


def test_multi_batch_waiting_time_flushes_a_partial_batch(api, models):
    _infer_stream(api, "wait", models["conv2"], waitingTime=50)
    x = np.ones((1, 1, 16, 16), np.float32)
    assert api.SendProtobuf(b"wait", 0, protobuf_in(tensor_package_list(x))) == 0
    result = api.GetResult(b"wait", b"appsink0", keys(b"mxpi_tensorinfer0"), 5000)
    assert result.errorCode == 0 and result.metadataVec.size() == 1
    back = pb.MxpiTensorPackageList()
    back.ParseFromString(result.metadataVec[0].serializedMetadata)
    padded = np.concatenate([x, np.zeros_like(x)])
    np.testing.assert_array_equal(tensor_array(back.tensorPackageVec[0].tensorVec[0], np.float32, (1, 4, 16, 16)),
                                  _reference(models["conv2"], x=padded)[0][:1])


def test_multi_batch_dynamic_batch_several_packages_in_one_list(api, models):
    _infer_stream(api, "dyn", models["dynamic"], waitingTime=30)
    msg = pb.MxpiTensorPackageList()
    xs = [np.full((1, 1, 3, 5), float(i), np.float32) for i in range(3)]
    for x in xs:
        t = msg.tensorPackageVec.add().tensorVec.add()
        t.tensorShape.extend(x.shape)
        t.dataStr = x.tobytes()
    assert api.SendProtobuf(b"dyn", 0, protobuf_in(msg)) == 0
    result = get_tensors(api, b"dyn")
    assert len(result.tensorPackageVec) == 3  # one output package per input package
    for j, package in enumerate(result.tensorPackageVec):
        assert [(h.dataSource, h.memberId) for h in package.headerVec] == [("appsrc0", j)]
        np.testing.assert_array_equal(tensor_array(package.tensorVec[0], np.float32, (1, 1, 3, 5)),
                                      _reference(models["dynamic"], x=xs[j])[0])


def test_datasize_mismatch_forwards_error_and_drops_key(api, models):
    _infer_stream(api, "bad", models["conv2"], singleBatchInfer=1)
    x = np.zeros((1, 1, 16, 16), np.float32)  # the model wants 2 samples
    assert api.SendProtobuf(b"bad", 0, protobuf_in(tensor_package_list(x))) == 0
    out = call_with_timeout(api.GetProtobuf, b"bad", 0, keys(b"mxpi_tensorinfer0", b"appsrc0"))
    assert [o.messageName for o in out] == [b"appsrc0"]  # the infer key is missing ...
    assert out[0].errorCode == 1001  # ... and the buffer carries the error
    assert api.SendProtobuf(b"bad", 0, protobuf_in(tensor_package_list(x))) == 0
    result = api.GetResult(b"bad", 0, 5000)
    assert result.errorCode == 1001
    assert result.data.startswith(b"The datasize of concated inputTensors[0](1024) does not match model"
                                  b" inputTensors[0](2048). Tensor Dtype: FLOAT32, model Dtype: FLOAT32.")
    assert api.SendProtobuf(b"bad", 0, protobuf_in(tensor_package_list(x, x))) == 0  # 2 tensors, 1 input
    assert b"does not match model inputTensors" in api.GetResult(b"bad", 0, 5000).data


def test_shape_mismatch_with_right_size_only_warns(api, models, caplog):
    _infer_stream(api, "shape", models["conv2"], singleBatchInfer=1)
    x = np.random.default_rng(4).standard_normal((2, 1, 16, 16)).astype(np.float32)
    msg = tensor_package_list(x, shapes=[[2, 16, 16]])  # wrong rank, right byte count
    assert api.SendProtobuf(b"shape", 0, protobuf_in(msg)) == 0
    feat = get_tensors(api, b"shape").tensorPackageVec[0].tensorVec[0]
    np.testing.assert_array_equal(tensor_array(feat, np.float32, (2, 4, 16, 16)), _reference(models["conv2"], x=x)[0])
    assert "does not match model inputTensors[0]" in caplog.text


def test_other_dtypes(api, models):
    _infer_stream(api, "u8", models["uint8"], singleBatchInfer=1)
    x = np.array([[0, 1, 254, 7]], np.uint8)
    assert api.SendProtobuf(b"u8", 0, protobuf_in(tensor_package_list(x, dtype_code=4))) == 0
    y = get_tensors(api, b"u8").tensorPackageVec[0].tensorVec[0]
    assert y.tensorDataType == 3  # INT32
    np.testing.assert_array_equal(tensor_array(y, np.int32, (1, 4)), [[1, 2, 255, 8]])


def test_missing_data_source_key_passes_buffer_without_inference(api, models):
    _infer_stream(api, "miss", models["dynamic"], singleBatchInfer=1)
    x = np.zeros((1, 1, 2, 2), np.float32)
    assert api.SendProtobuf(b"miss", 0, protobuf_in(tensor_package_list(x), key=b"other")) == 0
    out = call_with_timeout(api.GetProtobuf, b"miss", 0, keys(b"mxpi_tensorinfer0", b"other"))
    assert [(o.messageName, o.errorCode) for o in out] == [(b"other", 0)]


def test_several_sends_in_flight_then_gets_in_order(api, models):
    _infer_stream(api, "fifo", models["dynamic"], singleBatchInfer=1)
    xs = [np.full((1, 1, 4, 4), i, np.float32) for i in range(5)]
    for x in xs:
        assert api.SendProtobuf(b"fifo", 0, protobuf_in(tensor_package_list(x))) == 0
    for x in xs:
        y = get_tensors(api, b"fifo").tensorPackageVec[0].tensorVec[0]
        np.testing.assert_allclose(tensor_array(y, np.float32, x.shape), 1 / (1 + np.exp(-(x + 1))), rtol=1e-6)


def test_200_buffers_complete_and_in_order(api, models):
    _infer_stream(api, "many", models["dynamic"], singleBatchInfer=1)
    for i in range(200):
        x = np.full((1, 1, 1, 2), i, np.float32)
        assert api.SendProtobuf(b"many", 0, protobuf_in(tensor_package_list(x))) == 0
    for i in range(200):
        z = get_tensors(api, b"many").tensorPackageVec[0].tensorVec[1]
        np.testing.assert_array_equal(tensor_array(z, np.float16, (1, 1, 1, 2)), np.full((1, 1, 1, 2), 2 * i, np.float16))


def test_two_streams_from_two_threads(api, models):
    _infer_stream(api, "left", models["dynamic"], singleBatchInfer=1)
    _infer_stream(api, "right", models["conv2"], singleBatchInfer=1)
    errors = []

    def worker(name, model, shape):
        try:
            rng = np.random.default_rng(len(name))
            for _ in range(15):
                x = rng.standard_normal(shape).astype(np.float32)
                assert api.SendProtobuf(name, 0, protobuf_in(tensor_package_list(x))) == 0
                got = get_tensors(api, name).tensorPackageVec[0].tensorVec[0]
                expected = _reference(model, x=x)[0]
                np.testing.assert_array_equal(tensor_array(got, np.float32, expected.shape), expected)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(b"left", models["dynamic"], (1, 1, 8, 8))),
               threading.Thread(target=worker, args=(b"right", models["conv2"], (2, 1, 16, 16)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


def test_dataserialize_after_tensorinfer(api, models):
    _infer_stream(api, "json", models["dynamic"], serialize=True, singleBatchInfer=1)
    x = np.zeros((1, 1, 1, 1), np.float32)
    assert api.SendProtobuf(b"json", 0, protobuf_in(tensor_package_list(x))) == 0
    doc = json.loads(api.GetResult(b"json", 0, 5000).data)
    assert list(doc) == ["MxpiTensorPackage"]
    (package,) = doc["MxpiTensorPackage"]
    assert "headerVec" not in package  # eraseHeaderVecFlag defaults to 1
    y = package["tensorVec"][0]
    assert y["tensorShape"] == [1, 1, 1, 1] and y["tensorDataType"] == 0 and y["tensorDataSize"] == 4
    assert y["memType"] == "MXPI_MEMORY_HOST_MALLOC" and isinstance(y["tensorDataPtr"], str)
    assert y["dataStr"] == ""  # the SDK prints tensor bytes as pointers, not base64
    # the metadata is copied onto the JSON buffer, so GetProtobuf still finds the key
    assert api.SendProtobuf(b"json", 0, protobuf_in(tensor_package_list(x))) == 0
    y = get_tensors(api, b"json").tensorPackageVec[0].tensorVec[0]
    np.testing.assert_allclose(tensor_array(y, np.float32, (1,)), [1 / (1 + np.e ** -1)], rtol=1e-6)


def test_dataserialize_forwards_pipeline_error(api, models):
    _infer_stream(api, "jerr", models["conv2"], serialize=True, singleBatchInfer=1)
    x = np.zeros((3,), np.float32)
    assert api.SendProtobuf(b"jerr", 0, protobuf_in(tensor_package_list(x))) == 0
    result = api.GetResult(b"jerr", 0, 5000)
    assert result.errorCode == 1001 and b"The datasize of concated inputTensors[0](12)" in result.data


def test_two_appsrcs_into_pads_of_one_tensorinfer(api, tmp_path):
    from mxlocal_support import add_model

    model = add_model(tmp_path / "add.onnx")
    stream = {"appsrc0": {"factory": "appsrc", "next": "mxpi_tensorinfer0:0"},
              "appsrc1": {"factory": "appsrc", "next": "mxpi_tensorinfer0:1"},
              "mxpi_tensorinfer0": {"factory": "mxpi_tensorinfer", "next": "appsink0",
                                    "props": {"dataSource": "appsrc0,appsrc1", "modelPath": str(model),
                                              "singleBatchInfer": "1"}},
              "appsink0": {"factory": "appsink"}}
    assert api.CreateMultipleStreams(json.dumps({"pair": stream}).encode()) == 0
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert api.SendProtobuf(b"pair", 1, protobuf_in(tensor_package_list(a * 10), key=b"appsrc1")) == 0
    assert api.SendProtobuf(b"pair", b"appsrc0", protobuf_in(tensor_package_list(a))) == 0
    package = get_tensors(api, b"pair").tensorPackageVec[0]
    np.testing.assert_array_equal(tensor_array(package.tensorVec[0], np.float32, (2, 3)), a * 11)
    assert [h.dataSource for h in package.headerVec] == ["appsrc0", "appsrc1"]
    stream["mxpi_tensorinfer0"]["props"]["dataSource"] = "appsrc0"  # one key for two pads
    assert api.CreateMultipleStreams(json.dumps({"pair2": stream}).encode()) == 6015


def test_two_streams_naming_one_model_share_one_engine(api, models):
    from mxlocal import model_runtime

    _infer_stream(api, "share_a", models["dynamic"], singleBatchInfer=1)
    _infer_stream(api, "share_b", models["dynamic"], singleBatchInfer=1)
    shared = [m for m in model_runtime._SHARED.values() if m.key[0] == str(models["dynamic"].resolve())]
    assert len(shared) == 1 and shared[0].users == 2
    x = np.random.default_rng(5).standard_normal((1, 1, 8, 8)).astype(np.float32)
    y_ref, _ = _reference(models["dynamic"], x=x)
    for name in (b"share_a", b"share_b"):  # each stream still gets its own, exact results
        assert api.SendProtobuf(name, 0, protobuf_in(tensor_package_list(x))) == 0
        y = get_tensors(api, name).tensorPackageVec[0].tensorVec[0]
        assert tensor_array(y, np.float32, x.shape).tobytes() == y_ref.tobytes()
    assert api.StopStream(b"share_a") == 0
    assert shared[0].users == 1
    assert api.StopStream(b"share_b") == 0
    assert not [m for m in model_runtime._SHARED.values() if m.key[0] == str(models["dynamic"].resolve())]
