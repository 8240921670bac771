"""StreamManagerApi conventions of reference §1 on pass-through streams (appsrc -> appsink)."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from mxlocal import MxpiDataType_pb2 as pb
from mxlocal import StreamManagerApi as sm
from mxlocal_support import (call_with_timeout, data_input, keys, pipeline, protobuf_in,
                             tensor_package_list)

PASS = pipeline("test")  # reference §3.7


@pytest.fixture
def api():
    api = sm.StreamManagerApi()
    assert api.InitManager() == 0
    assert api.CreateMultipleStreams(PASS) == 0
    yield api
    api.DestroyAllStreams()


# ---- §1.1 binding conventions ---------------------------------------------------------------------
def test_str_instead_of_bytes_raises_type_error(api):
    with pytest.raises(TypeError, match="bytes"):
        api.SendData("test", 0, data_input(b"x"))
    with pytest.raises(TypeError):
        api.CreateMultipleStreams(PASS.decode())
    with pytest.raises(TypeError):
        api.GetProtobuf(b"test", 0, ["appsrc0"])
    with pytest.raises(TypeError):
        api.StopStream("test")
    item = sm.MxDataInput()
    with pytest.raises(TypeError):
        item.data = "text"
    with pytest.raises(TypeError):
        sm.StringVector().push_back("appsrc0")
    with pytest.raises(TypeError):
        item.fragmentId = 1.5


def test_keyword_arguments_raise_type_error(api):
    with pytest.raises(TypeError, match="positional"):
        api.SendData(streamName=b"test", inPluginId=0, dataInput=data_input(b"x"))
    with pytest.raises(TypeError, match="positional"):
        api.GetResult(b"test", 0, msTimeOut=10)
    with pytest.raises(TypeError, match="positional"):
        api.InitManager(argStrings=[])


def test_wrong_overload_raises_type_error(api):
    with pytest.raises(TypeError, match="Wrong number or type"):
        api.SendData(b"test", 0.0, data_input(b"x"))
    with pytest.raises(TypeError, match="Wrong number or type"):
        api.SendData(b"test", 0)
    with pytest.raises(TypeError):
        api.GetResult(b"test", 0, 10, 10)


def test_vector_types():
    vec = sm.StringVector()
    vec.push_back(b"a")
    vec.append(b"b")
    assert vec.size() == len(vec) == 2
    assert list(vec) == [b"a", b"b"] and vec[1] == b"b" and vec[-1] == b"b"
    assert vec.pop() == b"b" and vec.size() == 1
    for cls, item in ((sm.InProtobufVector, sm.MxProtobufIn), (sm.OutProtobufVector, sm.MxProtobufOut),
                      (sm.MetadataInputVector, sm.MxMetadataInput), (sm.MetadataOutputVector, sm.MxMetadataOutput),
                      (sm.RoiBoxVector, sm.RoiBox)):
        v = cls()
        v.push_back(item())
        assert v.size() == 1 and isinstance(v[0], item)
        with pytest.raises(TypeError):
            v.push_back(b"not an item")
    box_input = sm.MxDataInput()
    box_input.roiBoxs = [sm.RoiBox()]  # a plain list converts
    assert isinstance(box_input.roiBoxs, sm.RoiBoxVector)


def test_data_class_defaults():
    out = sm.MxDataOutput()
    assert (out.errorCode, out.data) == (0, b"")
    both = sm.MxBufferAndMetadataOutput()
    assert both.errorCode == 0 and both.metadataVec.size() == 0 and both.bufferOutput.data == b""
    both.SetErrorInfo(5, b"msg")
    assert (both.errorCode, both.errorMsg) == (5, b"msg")
    with pytest.raises(AttributeError):
        sm.MxProtobufIn().keyy = b"typo"


# ---- before InitManager -----------------------------------------------------------------------------
def test_every_call_before_init_manager_returns_minus_one():
    api = sm.StreamManagerApi()
    d = data_input(b"x")
    assert api.CreateMultipleStreams(PASS) == -1
    assert api.CreateMultipleStreamsFromFile(b"x.pipeline") == -1
    assert api.SendData(b"test", 0, d) == -1
    assert api.SendData(b"test", b"appsrc0", d) == -1
    assert api.SendData(b"test", b"appsrc0", sm.MetadataInputVector(), sm.MxBufferInput()) == -1
    assert api.SendDataWithUniqueId(b"test", 0, d) == -1
    assert api.SendProtobuf(b"test", 0, sm.InProtobufVector()) == -1
    assert api.StopStream(b"test") == -1
    assert api.DestroyAllStreams() == -1
    out = api.GetProtobuf(b"test", 0, keys(b"appsrc0"))
    assert out.size() == 1 and out[0].errorCode == -1 and b"InitManager" in out[0].messageName
    assert api.GetResult(b"test", 0).errorCode == -1  # int form: APP_PYTHON_INIT_ERROR in the SDK source
    assert api.GetResult(b"test", b"appsink0", keys(b"x")).errorCode == 6002  # element form
    assert api.GetResultWithUniqueId(b"test", 0, 10).errorCode == -1


# ---- §3.7 pass-through ----------------------------------------------------------------------------
def test_send_data_get_result_pass_through(api):
    ret = api.SendData(b"test", 0, data_input(b"hello \x00 bytes"))
    assert ret == 0  # an error code, not a unique id
    result = api.GetResult(b"test", ret)  # the contrib idiom: SendData's 0 doubles as outPluginId
    assert (result.errorCode, result.data) == (0, b"hello \x00 bytes")
    assert api.SendData(b"test", b"appsrc0", data_input(b"by name")) == 0
    assert api.GetResult(b"test", 0, 1000).data == b"by name"


def test_send_protobuf_get_protobuf_pass_through_rebuilds_data_str(api):
    vision_list = pb.MxpiVisionList()
    vision = vision_list.visionVec.add()
    vision.visionInfo.width, vision.visionInfo.height = 4, 2
    vision.visionData.dataStr = bytes(range(12))
    vision.visionData.dataSize = 1  # overwritten by the rebuild
    assert api.SendProtobuf(b"test", 0, protobuf_in(vision_list)) == 0
    out = call_with_timeout(api.GetProtobuf, b"test", 0, keys(b"appsrc0"))
    assert out.size() == 1 and out[0].errorCode == 0 and out[0].messageName == b"appsrc0"
    back = pb.MxpiVisionList()
    back.ParseFromString(out[0].messageBuf)
    data = back.visionVec[0].visionData
    assert data.dataStr == bytes(range(12)) and data.dataSize == 12
    assert data.memType == pb.MXPI_MEMORY_HOST_MALLOC and data.dataPtr != 0
    assert back.visionVec[0].visionInfo.width == 4


def test_send_protobuf_tensor_rebuild_overwrites_size(api):
    msg = tensor_package_list(np.arange(6, dtype=np.float32))
    msg.tensorPackageVec[0].tensorVec[0].tensorDataSize = 3
    assert api.SendProtobuf(b"test", b"appsrc0", [protobuf_in(msg)[0]]) == 0  # a plain list works too
    out = call_with_timeout(api.GetProtobuf, b"test", 0, [b"appsrc0"])
    back = pb.MxpiTensorPackageList()
    back.ParseFromString(out[0].messageBuf)
    tensor = back.tensorPackageVec[0].tensorVec[0]
    assert tensor.tensorDataSize == 24 and tensor.memType == pb.MXPI_MEMORY_HOST_MALLOC
    np.testing.assert_array_equal(np.frombuffer(tensor.dataStr, np.float32), np.arange(6, dtype=np.float32))


def test_send_protobuf_empty_buffer_gives_empty_json_to_get_result(api):
    assert api.SendProtobuf(b"test", 0, protobuf_in(tensor_package_list(np.zeros(2, np.uint8)))) == 0
    assert api.GetResult(b"test", 0).data == b"{}"  # SDK GenerateOutputData: empty buffer -> "{}"


def test_send_protobuf_type_errors_give_1001(api):
    msg = tensor_package_list(np.zeros(3, np.float32))
    assert api.SendProtobuf(b"test", 0, protobuf_in(msg, type_name=b"MxpiTensorPackageList")) == 1001
    assert api.SendProtobuf(b"test", 0, protobuf_in(msg, type_name=b"MxTools.NoSuchMessage")) == 1001
    bad = protobuf_in(msg)
    bad[0].protobuf = b"\xff\xff\xff"
    assert api.SendProtobuf(b"test", 0, bad) == 1001
    assert api.SendProtobuf(b"test", 0, protobuf_in(pb.MxpiTensorPackageList())) == 1001  # no tensor at all
    assert api.SendProtobuf(b"test", 0, protobuf_in(pb.MxpiVisionList())) == 1001


def test_get_protobuf_skips_missing_keys_and_keeps_order(api):
    msg = tensor_package_list(np.zeros(2, np.float32))
    assert api.SendProtobuf(b"test", 0, protobuf_in(msg)) == 0
    out = call_with_timeout(api.GetProtobuf, b"test", 0, keys(b"nope", b"appsrc0", b"mxpi_tensorinfer0"))
    assert [o.messageName for o in out] == [b"appsrc0"]


def test_stream_and_plugin_id_errors(api):
    d = data_input(b"x")
    assert api.SendData(b"nope", 0, d) == 6002
    assert api.SendData(b"test", 1, d) == 6006
    assert api.SendData(b"test", b"appsrc1", d) == 6006
    assert api.SendData(b"test", b"appsink0", d) == 6006
    assert api.SendData(b"test", -1, d) == 1004
    assert api.SendProtobuf(b"nope", 0, protobuf_in(tensor_package_list(np.zeros(1)))) == 6002
    assert api.GetResult(b"nope", 0).errorCode == 6002
    assert api.GetResult(b"nope", b"appsink0", keys(b"x")).errorCode == 6002
    assert api.GetProtobuf(b"nope", 0, keys(b"x")).size() == 0
    assert api.GetResultWithUniqueId(b"nope", 0, 10).errorCode == 6002


def test_transmission_mode_is_latched_by_first_send(api):
    d = data_input(b"x")
    assert api.SendData(b"test", 0, d) == 0
    assert api.SendDataWithUniqueId(b"test", 0, d) == -1  # 6008 inside, -1 from the Python API
    assert api.GetResultWithUniqueId(b"test", 0, 10).errorCode == 1002
    assert api.GetResult(b"test", 0).data == b"x"

    assert api.CreateMultipleStreams(pipeline("uid")) == 0
    uid = api.SendDataWithUniqueId(b"uid", 0, d)
    assert uid == 0
    assert api.SendData(b"uid", 0, d) == 6008
    assert api.SendProtobuf(b"uid", 0, protobuf_in(tensor_package_list(np.zeros(1)))) == 6008
    assert api.GetResult(b"uid", 0, 10).errorCode == 1002
    assert api.GetResult(b"uid", b"appsink0", keys(b"x"), 10).errorCode == 6008
    assert api.GetProtobuf(b"uid", 0, keys(b"x")).size() == 0
    assert api.GetResultWithUniqueId(b"uid", uid, 3000).data == b"x"


def test_unique_id_send_and_get(api):
    assert api.CreateMultipleStreams(pipeline("uid")) == 0
    ids = [api.SendDataWithUniqueId(b"uid", b"appsrc0" if i % 2 else 0, data_input(b"p%d" % i)) for i in range(5)]
    assert ids == [0, 1, 2, 3, 4]
    for uid in reversed(ids):  # any order, by id
        result = api.GetResultWithUniqueId(b"uid", uid, 3000)
        assert (result.errorCode, result.data) == (0, b"p%d" % uid)
    assert api.GetResultWithUniqueId(b"uid", 99, 50).errorCode == 1002  # never sent


def test_get_result_timeouts(api):
    assert api.GetResult(b"test", 0, 10).errorCode == 1002  # nothing sent yet
    assert api.SendData(b"test", 0, data_input(b"x")) == 0
    assert api.GetResult(b"test", 0, 2000).errorCode == 0
    start = time.monotonic()
    timed_out = api.GetResult(b"test", 0, 100)
    assert timed_out.errorCode == 1002 and b"1002" in timed_out.data
    assert 0.09 <= time.monotonic() - start < 2.0
    late = api.GetResult(b"test", b"appsink0", keys(b"appsrc0"), 50)
    assert late.errorCode == 1001 and b"time limit(50)" in late.errorMsg
    assert api.GetResult(b"test", 5, 10).errorCode == 1002  # no such appsink
    assert api.GetResult(b"test", b"appsrc0", keys(b"x"), 10).errorCode == 6011  # not an appsink


def test_four_argument_send_data_and_get_result(api):
    meta = sm.MxMetadataInput()
    meta.dataSource = b"my_key"
    meta.dataType = b"MxTools.MxpiClassList"
    classes = pb.MxpiClassList()
    cls = classes.classVec.add()
    cls.classId, cls.className, cls.confidence = 3, "vessel", 0.5
    meta.serializedMetadata = classes.SerializeToString()
    vec = sm.MetadataInputVector()
    vec.push_back(meta)
    buf = sm.MxBufferInput()
    buf.data = b"payload"
    frame = pb.MxpiFrameInfo()
    frame.frameId = 7
    buf.mxpiFrameInfo = frame.SerializeToString()
    assert api.SendData(b"test", b"appsrc0", vec, buf) == 0
    out = api.GetResult(b"test", b"appsink0", keys(b"my_key", b"missing"), 3000)
    assert out.errorCode == 0 and out.bufferOutput.data == b"payload"
    assert out.metadataVec.size() == 1  # missing keys dropped
    item = out.metadataVec[0]
    assert item.dataType == b"MxpiClassList" and item.errorCode == 0
    back = pb.MxpiClassList()
    back.ParseFromString(item.serializedMetadata)
    assert back == classes

    meta.dataType = b"MxpiClassList"  # not fully qualified
    assert api.SendData(b"test", b"appsrc0", [meta], buf) == 1001


def test_appsrc_lexicographic_and_appsink_numeric_order(api):
    stream = {"appsrc%d" % i: {"factory": "appsrc", "next": "appsink%d" % i} for i in (0, 1, 2, 10)}
    stream.update({"appsink%d" % i: {"factory": "appsink"} for i in (0, 1, 2, 10)})
    assert api.CreateMultipleStreams(json.dumps({"order": stream}).encode()) == 0
    # inPluginId: appsrc0, appsrc1, appsrc10, appsrc2 ; outPluginId: appsink0, appsink1, appsink2, appsink10
    for index in range(4):
        assert api.SendData(b"order", index, data_input(b"%d" % index)) == 0
    got = {api.GetResult(b"order", index, 3000).data: index for index in range(4)}
    assert got == {b"0": 0, b"1": 1, b"2": 3, b"3": 2}


def test_one_fifo_per_appsink_results_pile_up(api):
    for i in range(3):
        assert api.SendData(b"test", 0, data_input(b"%d" % i)) == 0
    assert [api.GetResult(b"test", 0, 3000).data for _ in range(3)] == [b"0", b"1", b"2"]


def test_get_protobuf_blocks_until_a_result_and_stop_stream_releases_it(api):
    assert api.SendData(b"test", 0, data_input(b"first")) == 0
    assert api.GetResult(b"test", 0, 3000).data == b"first"
    box = {}
    waiter = threading.Thread(target=lambda: box.setdefault("out", api.GetProtobuf(b"test", 0, keys(b"k"))),
                              daemon=True)
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive()  # blocks: no timeout
    assert api.StopStream(b"test") == 0
    waiter.join(5)
    assert not waiter.is_alive() and box["out"].size() == 0
    assert api.StopStream(b"test") == 6002
    assert api.SendData(b"test", 0, data_input(b"x")) == 6002
    assert api.CreateMultipleStreams(PASS) == 0  # can be created again


def test_get_protobuf_before_any_send_returns_empty_immediately(api):
    out = call_with_timeout(api.GetProtobuf, b"test", 0, keys(b"appsrc0"), timeout=5)
    assert out.size() == 0


def test_stream_exists_6001(api):
    assert api.CreateMultipleStreams(PASS) == 6001


def test_many_buffers_in_order(api):
    for i in range(200):
        assert api.SendData(b"test", 0, data_input(i.to_bytes(4, "little"))) == 0
    got = [int.from_bytes(api.GetResult(b"test", 0, 5000).data, "little") for _ in range(200)]
    assert got == list(range(200))


def test_unique_id_flow_with_json_output(api):
    """Reference §1.4 D: SendDataWithUniqueId -> ... -> mxpi_dataserialize -> GetResultWithUniqueId."""
    middle = {"mxpi_dataserialize0": ("mxpi_dataserialize", {"outputDataKeys": "appsrc0"})}
    assert api.CreateMultipleStreams(pipeline("json_uid", middle)) == 0
    uid = api.SendDataWithUniqueId(b"json_uid", 0, data_input(b"jpeg bytes"))
    result = api.GetResultWithUniqueId(b"json_uid", uid, 3000)
    assert result.errorCode == 0 and json.loads(result.data.decode()) == {}


def test_destroy_joins_every_element_thread():
    api = sm.StreamManagerApi()
    api.InitManager()
    assert api.CreateMultipleStreams(pipeline("t1", {"queue0": ("queue", {})})) == 0
    assert api.CreateMultipleStreams(pipeline("t2")) == 0
    for _ in range(50):  # left unread: dropped on destroy
        api.SendData(b"t1", 0, data_input(b"x"))
    assert api.DestroyAllStreams() == 0
    assert not [t.name for t in threading.enumerate() if t.name.startswith("mxlocal:t")]
    assert api.SendData(b"t1", 0, data_input(b"x")) == 6002


def test_list_next_fans_out_to_every_branch(api):
    stream = {"appsrc0": {"factory": "appsrc", "next": ["queue0", "appsink1"]},
              "queue0": {"factory": "queue", "next": "appsink0"},
              "appsink0": {"factory": "appsink"}, "appsink1": {"factory": "appsink"}}
    assert api.CreateMultipleStreams(json.dumps({"tee": stream}).encode()) == 0
    for i in range(20):
        assert api.SendData(b"tee", 0, data_input(b"%d" % i)) == 0
    for index in (0, 1):
        assert [api.GetResult(b"tee", index, 3000).data for _ in range(20)] == [b"%d" % i for i in range(20)]
