"""superretina.message_views: the stream's tensor and vision lists read without copying their data.

Every case compares against protobuf's own parse of the same bytes: the views must hold exactly
the ``dataStr`` bytes and the parsed message every other field; the data must not be copied.
"""
import numpy as np
import pytest
from google.protobuf.message import DecodeError

from mxlocal import MxpiDataType_pb2 as pb
from mxlocal import protobuf_bridge as bridge
from mxlocal.buffer import Buffer
from superretina import message_views


def _tensor_list() -> pb.MxpiTensorPackageList:
    msg = pb.MxpiTensorPackageList()
    for p in range(2):
        package = msg.tensorPackageVec.add()
        header = package.headerVec.add()
        header.dataSource, header.memberId = "mxpi_tensorinfer0", p
        for k, shape in enumerate(((1, 1, 8, 8), (1, 256, 3, 3))):
            tensor = package.tensorVec.add()
            data = (np.arange(np.prod(shape), dtype=np.float32) * (p + 1) - k).reshape(shape)
            tensor.dataStr = data.tobytes()
            tensor.tensorShape.extend(shape)
            tensor.tensorDataSize = data.nbytes
            tensor.memType = pb.MXPI_MEMORY_HOST_MALLOC
            tensor.tensorDataType = k  # 0 (float32) is not written on the wire, 1 is: both orders
    package.tensorVec.add()  # a tensor without data
    return msg


def _stripped(msg):
    out = type(msg)()
    out.CopyFrom(msg)
    for package in getattr(out, "tensorPackageVec", []):
        for tensor in package.tensorVec:
            tensor.ClearField("dataStr")
    for vision in getattr(out, "visionVec", []):
        vision.visionData.ClearField("dataStr")
    return out


def test_tensor_list_views_are_the_data_and_the_rest_is_protobufs_parse():
    msg = _tensor_list()
    raw = msg.SerializeToString()
    parsed, data = message_views.tensor_list(pb.MxpiTensorPackageList, raw)
    assert parsed == _stripped(msg)
    assert [[d.tobytes() for d in package] for package in data] == \
        [[t.dataStr for t in package.tensorVec] for package in msg.tensorPackageVec]
    # views of the message itself, not copies
    assert all(np.shares_memory(d, np.frombuffer(raw, np.uint8)) for d in data[0])
    assert not data[0][0].flags.writeable


def test_vision_list_views_with_alignment_and_several_visions():
    msg = pb.MxpiVisionList()
    for k in range(3):
        vision = msg.visionVec.add()
        vision.headerVec.add().dataSource = "mxpi_imagedecoder0"
        info = vision.visionInfo
        info.format, info.width, info.height, info.widthAligned, info.heightAligned = 13, 5, 3, 16, 4
        info.keepAspectRatioScaling = 0.25
        info.preprocessInfo.add().widthSrc = 7
        vision.visionData.dataStr = bytes(range(k, k + 16 * 4 * 3))
        vision.visionData.dataType = pb.MXPI_DATA_TYPE_UINT8
        vision.visionData.matPtr = 12345
    raw = msg.SerializeToString()
    parsed, data = message_views.vision_list(pb.MxpiVisionList, raw)
    assert parsed == _stripped(msg)
    assert [d.tobytes() for d in data] == [v.visionData.dataStr for v in msg.visionVec]


def test_what_the_local_runtime_sends_reads_back_unchanged():
    """GetProtobuf's encoder (the memory spliced in) and this reader (spliced out) agree with protobuf."""
    buffer, msg = Buffer(), pb.MxpiVisionList()
    vision = msg.visionVec.add()
    image = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
    vision.visionInfo.format, vision.visionInfo.width, vision.visionInfo.height = 13, 7, 6
    vision.visionData.dataPtr, vision.visionData.dataSize = buffer.attach_array(image)
    raw = bridge.serialize_output(msg, buffer)
    assert raw == bridge.with_data(msg, buffer).SerializeToString()
    parsed, data = message_views.vision_list(pb.MxpiVisionList, raw)
    assert np.array_equal(data[0].reshape(6, 7, 3), image)
    assert parsed.visionVec[0].visionData.dataSize == image.nbytes


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (payloads here are under 128 bytes)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_odd_layouts_follow_protobuf():
    # dataStr written twice in one tensor: the last one counts (proto3 scalars), as protobuf says
    tensor = pb.MxpiTensor(dataStr=b"first", tensorDataType=1).SerializeToString() + \
        pb.MxpiTensor(dataStr=b"second").SerializeToString()
    raw = _field(1, _field(2, tensor))
    expected = pb.MxpiTensorPackageList.FromString(raw)
    assert expected.tensorPackageVec[0].tensorVec[0].dataStr == b"second"
    parsed, data = message_views.tensor_list(pb.MxpiTensorPackageList, raw)
    assert data[0][0].tobytes() == b"second" and parsed == _stripped(expected)

    # a singular visionData written twice: protobuf merges the two; the reader falls back to it
    a = pb.MxpiVision()
    a.visionData.dataStr, a.visionData.dataSize = b"abc", 3
    b = pb.MxpiVision()
    b.visionData.memType = pb.MXPI_MEMORY_HOST_MALLOC
    raw = _field(1, a.SerializeToString() + b.SerializeToString())
    expected = pb.MxpiVisionList.FromString(raw)
    parsed, data = message_views.vision_list(pb.MxpiVisionList, raw)
    assert parsed == expected and data[0].tobytes() == b"abc"

    # fields this reader does not know are protobuf's business (kept as unknown fields)
    raw = _tensor_list().SerializeToString() + b"\x98\x06\x05"   # field 99, varint 5
    parsed, _ = message_views.tensor_list(pb.MxpiTensorPackageList, raw)
    assert parsed.SerializeToString().endswith(b"\x98\x06\x05")


@pytest.mark.parametrize("raw", [b"\x0a\x05\x12", b"\x0a", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
                                 b"\x0b\x00"])
def test_bytes_that_are_not_a_message_raise_protobufs_error(raw):
    with pytest.raises(DecodeError):
        message_views.tensor_list(pb.MxpiTensorPackageList, raw)
