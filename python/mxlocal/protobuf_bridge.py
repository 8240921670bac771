"""Move metadata across the Python API boundary the way the SDK binding does.

In (``SendProtobuf``, 4-argument ``SendData``; SDK ``GetProtobufPtr`` + ``ReBuildMxpiList``):
the type name must be a fully qualified ``MxTools.<Msg>``; tensor/image bytes move from
``dataStr`` into host memory, ``tensorDataSize``/``dataSize`` is overwritten with the real
length, ``memType`` becomes ``MXPI_MEMORY_HOST_MALLOC`` and ``dataStr`` is cleared.

Out (``GetProtobuf``, 4-argument ``GetResult``; SDK ``ParseTensorPackageList`` /
``ParseVisionList``): the memory behind each pointer is copied back into ``dataStr``.
"""
from __future__ import annotations

import numpy as np
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from mxlocal import MxpiDataType_pb2 as pb
from mxlocal import MxpiDumpData_pb2  # noqa: F401  (registers MxTools.MxpiDumpData & co.)
from mxlocal import errors as E
from mxlocal.buffer import Buffer

TENSOR_LIST = "MxTools.MxpiTensorPackageList"
VISION_LIST = "MxTools.MxpiVisionList"
HOST_MALLOC = pb.MXPI_MEMORY_HOST_MALLOC


def message_class(type_name: str):
    """Generated class for a fully qualified name such as ``MxTools.MxpiVisionList``.

    Raises
    ------
    mxlocal.errors.MxError
        1001 when the name is unknown (e.g. missing the ``MxTools.`` prefix).
    """
    try:
        desc = descriptor_pool.Default().FindMessageTypeByName(type_name)
    except KeyError:
        raise E.MxError(E.APP_ERR_COMM_FAILURE,
                        f"unknown protobuf type {type_name!r}; use the full name, e.g. 'MxTools.MxpiTensorPackageList'") from None
    return message_factory.GetMessageClass(desc)


def rebuild_input(type_name: bytes, payload: bytes, buffer: Buffer) -> Message:
    """Parse one user message and move its data bytes into ``buffer.memory``.

    Parameters
    ----------
    type_name : bytes
        ``MxProtobufIn.type`` / ``MxMetadataInput.dataType``.
    payload : bytes
        Serialized message.
    buffer : Buffer
        Receives the host memory.

    Raises
    ------
    mxlocal.errors.MxError
        1001 for an unknown type, a parse failure, or a tensor/vision list with no members.
    """
    name = type_name.decode("utf-8", "replace")
    cls = message_class(name)
    msg = cls()
    try:
        msg.ParseFromString(payload)
    except DecodeError as exc:
        raise E.MxError(E.APP_ERR_COMM_FAILURE, f"cannot parse the bytes as {name}: {exc}") from None
    if name == TENSOR_LIST:
        found = False
        for package in msg.tensorPackageVec:
            for tensor in package.tensorVec:
                data = tensor.dataStr
                tensor.tensorDataPtr, tensor.tensorDataSize = buffer.attach_array(np.frombuffer(data, np.uint8))
                tensor.memType = HOST_MALLOC
                tensor.ClearField("dataStr")
                found = True
        if not found:
            raise E.MxError(E.APP_ERR_COMM_FAILURE, "MxpiTensorPackageList holds no tensor")
    elif name == VISION_LIST:
        if not msg.visionVec:
            raise E.MxError(E.APP_ERR_COMM_FAILURE, "MxpiVisionList holds no vision")
        for vision in msg.visionVec:
            data = vision.visionData.dataStr
            vision.visionData.dataPtr, vision.visionData.dataSize = buffer.attach_array(np.frombuffer(data, np.uint8))
            vision.visionData.memType = HOST_MALLOC
            vision.visionData.ClearField("dataStr")
    return msg


def with_data(msg: Message, buffer: Buffer) -> Message:
    """Copy of a tensor/vision list with ``dataStr`` filled from memory; others unchanged."""
    name = msg.DESCRIPTOR.full_name
    if name not in (TENSOR_LIST, VISION_LIST):
        return msg
    out = type(msg)()
    out.CopyFrom(msg)
    if name == TENSOR_LIST:
        for package in out.tensorPackageVec:
            for tensor in package.tensorVec:
                tensor.dataStr = _memory_bytes(buffer, tensor.tensorDataPtr, tensor.tensorDataSize).tobytes()
    else:
        for vision in out.visionVec:
            data = vision.visionData
            data.dataStr = _memory_bytes(buffer, data.dataPtr, data.dataSize).tobytes()
    return out


def serialize_output(msg: Message, buffer: Buffer) -> bytes:
    """Serialized message as ``GetProtobuf`` returns it (``dataStr`` filled).

    Equal to ``with_data(msg, buffer).SerializeToString()``; for tensor and vision lists it is
    assembled field by field so that the data is copied once (into the result) instead of three
    times (a FIRE photograph is 25 MB).
    """
    if msg.DESCRIPTOR.full_name not in (TENSOR_LIST, VISION_LIST):
        return with_data(msg, buffer).SerializeToString()
    return b"".join(_chunks(msg, buffer))


# Messages that hold data in memory: the field numbers of their pointer, size and dataStr.
_DATA_FIELDS = {"MxTools.MxpiTensor": ("tensorDataPtr", "tensorDataSize", 7),
                "MxTools.MxpiVisionData": ("dataPtr", "dataSize", 6)}
# Messages on the way down to them (their message fields of these types are encoded here too).
_CONTAINERS = {TENSOR_LIST, "MxTools.MxpiTensorPackage", VISION_LIST, "MxTools.MxpiVision", *_DATA_FIELDS}


def _chunks(msg: Message, buffer: Buffer) -> list:
    """Wire chunks (bytes or memoryviews) of ``msg`` with every ``dataStr`` below it filled from
    ``buffer``'s memory, byte-identical to protobuf's canonical (field-number ordered) output:
    fields are written one by one in that order, the ones protobuf owns by protobuf itself."""
    data = _DATA_FIELDS.get(msg.DESCRIPTOR.full_name)
    pending = None
    if data is not None:
        memory = _memory_bytes(buffer, getattr(msg, data[0]), getattr(msg, data[1]))
        # proto3 does not write an empty bytes field
        pending = [_varint(data[2] << 3 | 2) + _varint(memory.nbytes), memory.data] if memory.nbytes else []
    out = []
    for fd, value in msg.ListFields():
        if data is not None and fd.number >= data[2]:
            if pending is not None:
                out += pending
                pending = None
            if fd.number == data[2]:
                continue  # a dataStr set beside the memory: the memory's bytes are the data
        if fd.message_type is not None and fd.message_type.full_name in _CONTAINERS:
            for item in (value if fd.label == fd.LABEL_REPEATED else [value]):
                inner = _chunks(item, buffer)
                out += [_varint(fd.number << 3 | 2) + _varint(sum(len(c) for c in inner)), *inner]
            continue
        single = type(msg)()  # this one field, encoded by protobuf
        if fd.label == fd.LABEL_REPEATED or fd.message_type is not None:
            getattr(single, fd.name).MergeFrom(value)
        else:
            setattr(single, fd.name, value)
        out.append(single.SerializeToString())
    if pending:
        out += pending
    return out


# ---- wire format helpers (https://protobuf.dev/programming-guides/encoding/) ------------------
def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32/int64 are written as 10-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _memory_bytes(buffer: Buffer, ptr: int, size: int) -> np.ndarray:
    if size <= 0:
        return np.empty(0, np.uint8)
    try:
        return buffer.read_memory(ptr, size)
    except KeyError:
        return np.empty(0, np.uint8)  # a pointer the runtime did not allocate: nothing to copy


def short_type_name(msg: Message) -> str:
    """``MxpiTensorPackageList`` for a ``MxTools.MxpiTensorPackageList`` message."""
    return msg.DESCRIPTOR.name
