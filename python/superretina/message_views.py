"""Read the stream's serialized tensor and vision lists without copying their data.

protobuf's Python ``ParseFromString`` copies every bytes field out of the message, and reading
``dataStr`` copies it once more: for a pair's detector and descriptor maps (23 MB) and a FIRE
photograph (25 MB) that was about a tenth of a second per pair, spent after the inference, on
the critical path. Here the wire format (https://protobuf.dev/programming-guides/encoding/) is
walked down to each tensor (``MxpiTensorPackageList.tensorPackageVec[i].tensorVec[j]``) or
vision (``MxpiVisionList.visionVec[i].visionData``), its ``dataStr`` taken as a read-only numpy
view of the message bytes, and everything else parsed by protobuf itself from the message with
the data cut out — so every other field means exactly what protobuf says it means. Where the
layout is not the plain one (a singular ``visionData`` written twice, which protobuf would merge),
the message is parsed the ordinary way instead.

Works on whatever ``GetProtobuf`` returns as ``messageBuf`` (bytes from the SDK and from the local
runtime); the views keep the message alive.
"""
from __future__ import annotations

import numpy as np
from google.protobuf.message import DecodeError

TENSORS = ((1, 2), 7)   # tensorPackageVec → tensorVec → dataStr
VISIONS = ((1, 3), 6)   # visionVec → visionData → dataStr
_LEN = 2


def tensor_list(message_cls, message: bytes):
    """``(msg, data)``: the parsed ``MxpiTensorPackageList`` (``dataStr`` left empty) and, per package,
    a list of flat uint8 views of its tensors' ``dataStr``.

    Raises
    ------
    google.protobuf.message.DecodeError
        Bytes that are not a message of this type.
    """
    msg, views = _parse(message_cls, message, *TENSORS)
    if views is None or len(views) != len(msg.tensorPackageVec) or any(
            len(v) != len(p.tensorVec) for v, p in zip(views, msg.tensorPackageVec)):
        msg = message_cls()
        msg.ParseFromString(message)
        return msg, [[_array(t.dataStr) for t in p.tensorVec] for p in msg.tensorPackageVec]
    return msg, [[_view(message, span) for span in package] for package in views]


def vision_list(message_cls, message: bytes):
    """``(msg, data)``: the parsed ``MxpiVisionList`` (``dataStr`` left empty) and a flat uint8 view
    of each vision's ``visionData.dataStr``.

    Raises
    ------
    google.protobuf.message.DecodeError
        Bytes that are not a message of this type.
    """
    msg, views = _parse(message_cls, message, *VISIONS)
    if views is None or len(views) != len(msg.visionVec) or any(len(v) > 1 for v in views):
        msg = message_cls()
        msg.ParseFromString(message)
        return msg, [_array(v.visionData.dataStr) for v in msg.visionVec]
    return msg, [_view(message, v[0] if v else None) for v in views]


def _parse(message_cls, message: bytes, path: tuple, data_field: int):
    buf = memoryview(message).cast("B")
    stripped, views = _strip(buf, 0, len(buf), path, data_field)
    msg = message_cls()
    msg.ParseFromString(bytes(stripped))
    return msg, views


def _strip(buf: memoryview, start: int, end: int, path: tuple, data_field: int):
    """The message in ``buf[start:end]`` without the data fields, and where they were.

    ``path``: the field numbers to descend through; at its end, ``data_field`` is the bytes field
    taken out (its last occurrence counts, as for any proto3 scalar: ``(offset, length)``, or None).
    Above that, the views come as a list per occurrence of the descended field.
    """
    out = bytearray()
    views: list = []
    span = None
    i = start
    while i < end:
        key_start = i
        key, i = _read_varint(buf, i, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _read_varint(buf, i, end)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == _LEN:
            length, body = _read_varint(buf, i, end)
            i = body + length
            if i > end:
                raise DecodeError("truncated length-delimited field")
            if path and number == path[0]:
                inner, inner_views = _strip(buf, body, i, path[1:], data_field)
                out += _varint(number << 3 | _LEN) + _varint(len(inner)) + inner
                views.append(inner_views)
                continue
            if not path and number == data_field:
                span = (body, length)
                continue
        else:
            raise DecodeError(f"wire type {wire} is not used by these messages")
        if i > end:
            raise DecodeError("truncated field")
        out += buf[key_start:i]
    return out, (views if path else span)


def _read_varint(buf: memoryview, i: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= end or shift > 63:
            raise DecodeError("truncated or overlong varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _view(message: bytes, span) -> np.ndarray:
    if span is None:
        return np.empty(0, np.uint8)
    return np.frombuffer(message, np.uint8, count=span[1], offset=span[0])


def _array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.uint8)
