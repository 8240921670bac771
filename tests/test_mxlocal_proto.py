"""MxpiDataType protobuf: field numbers/types of reference §2, wire compatibility, generation."""
from __future__ import annotations

import filecmp
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mxlocal import MxpiDataType_pb2 as pb
from mxlocal import MxpiDumpData_pb2 as dump_pb
from mxlocal import protobuf_bridge as bridge
from mxlocal.buffer import Buffer

ROOT = Path(__file__).resolve().parents[1]
MXLOCAL = ROOT / "python" / "mxlocal"
REFERENCE = ROOT.parent / "shared" / "docs" / "mindx-sdk-reference.md"

# Transcribed from reference §2 (the messages applications exchange most).
EXPECTED = {
    "MxpiTensor": {"tensorDataPtr": (1, "uint64"), "tensorDataSize": (2, "int32"), "deviceId": (3, "uint32"),
                   "memType": (4, "enum"), "freeFunc": (5, "uint64"), "tensorShape": (6, "int32"),
                   "dataStr": (7, "bytes"), "tensorDataType": (8, "int32")},
    "MxpiTensorPackage": {"headerVec": (1, "message"), "tensorVec": (2, "message")},
    "MxpiTensorPackageList": {"tensorPackageVec": (1, "message")},
    "MxpiMetaHeader": {"parentName": (1, "string"), "memberId": (2, "int32"), "dataSource": (3, "string")},
    "MxpiVisionData": {"dataPtr": (1, "uint64"), "dataSize": (2, "int32"), "deviceId": (3, "uint32"),
                       "memType": (4, "enum"), "freeFunc": (5, "uint64"), "dataStr": (6, "bytes"),
                       "dataType": (7, "enum"), "matPtr": (8, "uint64")},
    "MxpiVisionInfo": {"format": (1, "uint32"), "width": (2, "uint32"), "height": (3, "uint32"),
                       "widthAligned": (4, "uint32"), "heightAligned": (5, "uint32"), "resizeType": (6, "uint32"),
                       "keepAspectRatioScaling": (7, "float"), "preprocessInfo": (8, "message")},
    "MxpiObject": {"headerVec": (1, "message"), "x0": (2, "float"), "y0": (3, "float"), "x1": (4, "float"),
                   "y1": (5, "float"), "classVec": (6, "message"), "imageMask": (7, "message")},
    "MxpiClass": {"headerVec": (1, "message"), "classId": (2, "int32"), "className": (3, "string"),
                  "confidence": (4, "float")},
}
TYPE_NAMES = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 8: "bool", 9: "string",
              11: "message", 12: "bytes", 13: "uint32", 14: "enum"}


def test_package_and_selected_fields_match_reference_table():
    assert pb.DESCRIPTOR.package == "MxTools"
    assert b'syntax = "proto3"' in (MXLOCAL / "proto" / "MxpiDataType.proto").read_bytes()
    for message, fields in EXPECTED.items():
        desc = pb.DESCRIPTOR.message_types_by_name[message]
        assert {f.name for f in desc.fields} == set(fields), message
        for name, (number, kind) in fields.items():
            field = desc.fields_by_name[name]
            assert (field.number, TYPE_NAMES[field.type]) == (number, kind), f"{message}.{name}"
    repeated = pb.MxpiTensor.DESCRIPTOR.fields_by_name["tensorShape"]
    assert repeated.label == repeated.LABEL_REPEATED


def test_enums_match_reference():
    assert dict(pb.MxpiMemoryType.items()) == {"MXPI_MEMORY_HOST": 0, "MXPI_MEMORY_DEVICE": 1, "MXPI_MEMORY_DVPP": 2,
                                               "MXPI_MEMORY_HOST_MALLOC": 3, "MXPI_MEMORY_HOST_NEW": 4}
    assert dict(pb.MxpiDataType.items()) == {"MXPI_DATA_TYPE_UINT8": 0, "MXPI_DATA_TYPE_FLOAT32": 1}


def _reference_listing() -> dict:
    """``{message: {field: number}}`` from the compact listing of reference §2."""
    text = REFERENCE.read_text(encoding="utf-8")
    section = text.split("## 2.", 1)[1].split("## 3.", 1)[0]
    listing = section.split("```", 2)[1]
    blocks = {}
    for match in re.finditer(r"(?m)^(?:enum\s+)?(\w+)\s*\{(.*?)\}", listing, re.S):
        blocks[match.group(1)] = {name: int(num) for name, num in re.findall(r"(\w+)\s*=\s*(\d+)", match.group(2))}
    return blocks


@pytest.mark.skipif(not REFERENCE.is_file(), reason="../shared/docs/mindx-sdk-reference.md not present (fresh clone)")
def test_every_message_and_field_number_of_reference_listing():
    listing = _reference_listing()
    ours = set(pb.DESCRIPTOR.message_types_by_name) | set(pb.DESCRIPTOR.enum_types_by_name)
    assert set(listing) == ours  # every message and both enums of §2, nothing more
    for name, fields in listing.items():
        if name in pb.DESCRIPTOR.enum_types_by_name:
            enum = pb.DESCRIPTOR.enum_types_by_name[name]
            assert {v.name: v.number for v in enum.values} == fields, name
            continue
        desc = pb.DESCRIPTOR.message_types_by_name[name]
        actual = {f.name: f.number for f in desc.fields}
        assert actual == fields, name


def test_dump_data_proto():
    desc = dump_pb.MxpiDumpData.DESCRIPTOR
    assert desc.full_name == "MxTools.MxpiDumpData"
    assert [(f.name, f.number) for f in desc.fields] == [("buffer", 1), ("metaData", 2)]
    assert [(f.name, f.number) for f in dump_pb.MetaData.DESCRIPTOR.fields] == [
        ("key", 1), ("content", 2), ("protoDataType", 3)]


def test_wire_format_hand_encoded():
    tensor = pb.MxpiTensor()
    tensor.tensorDataSize = 3          # field 2 varint   -> 0x10 0x03
    tensor.tensorShape.extend([1, 2])  # field 6 packed   -> 0x32 0x02 0x01 0x02
    tensor.dataStr = b"abc"            # field 7 bytes    -> 0x3a 0x03 'abc'
    tensor.tensorDataType = 1          # field 8 varint   -> 0x40 0x01
    assert tensor.SerializeToString() == b"\x10\x03\x32\x02\x01\x02\x3a\x03abc\x40\x01"

    header = pb.MxpiMetaHeader()
    header.memberId = 5                # field 2 varint   -> 0x10 0x05
    header.dataSource = "appsrc0"      # field 3 string   -> 0x1a 0x07 ...
    assert header.SerializeToString() == b"\x10\x05\x1a\x07appsrc0"

    info = pb.MxpiVisionInfo()
    info.format = 1                    # field 1 -> 0x08 0x01
    info.widthAligned = 784            # field 4 -> 0x20 varint(784) = 0x90 0x06
    assert info.SerializeToString() == b"\x08\x01\x20\x90\x06"


def test_round_trip_with_sdk_sample_code():
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    pkg_list = pb.MxpiTensorPackageList()
    t = pkg_list.tensorPackageVec.add().tensorVec.add()
    t.deviceId, t.memType = 0, 0
    for dim in x.shape:
        t.tensorShape.append(dim)
    t.dataStr = x.tobytes()
    t.tensorDataSize = len(t.dataStr)
    back = pb.MxpiTensorPackageList()
    back.ParseFromString(pkg_list.SerializeToString())
    out = back.tensorPackageVec[0].tensorVec[0]
    assert list(out.tensorShape) == [1, 2, 3, 4]
    np.testing.assert_array_equal(np.frombuffer(out.dataStr, np.float32).reshape(x.shape), x)


def test_serialize_output_is_canonical_protobuf():
    """The copy-saving encoder of GetProtobuf gives protobuf's own bytes."""
    buffer = Buffer()
    msg = pb.MxpiTensorPackageList()
    for p in range(2):
        package = msg.tensorPackageVec.add()
        header = package.headerVec.add()
        header.dataSource, header.memberId = "appsrc0", p
        for dtype, code in ((np.float32, 0), (np.float16, 1), (np.int8, -1)):
            array = (np.arange(30) - 7).astype(dtype).reshape(2, 3, 5)
            tensor = package.tensorVec.add()
            tensor.tensorDataPtr, tensor.tensorDataSize = buffer.attach_array(array)
            tensor.tensorShape.extend([1, 3, 5])
            tensor.memType = pb.MXPI_MEMORY_HOST_MALLOC
            tensor.tensorDataType = code
    package.tensorVec.add()  # an empty tensor: no dataStr written
    expected = bridge.with_data(msg, buffer).SerializeToString()
    assert bridge.serialize_output(msg, buffer) == expected


def test_rebuild_input_moves_data_to_memory():
    msg = pb.MxpiTensorPackageList()
    tensor = msg.tensorPackageVec.add().tensorVec.add()
    tensor.dataStr = b"\x01\x02\x03\x04"
    tensor.tensorDataSize = 999  # the SDK overwrites it
    tensor.memType = pb.MXPI_MEMORY_DEVICE
    buffer = Buffer()
    rebuilt = bridge.rebuild_input(b"MxTools.MxpiTensorPackageList", msg.SerializeToString(), buffer)
    out = rebuilt.tensorPackageVec[0].tensorVec[0]
    assert out.dataStr == b""
    assert out.tensorDataSize == 4
    assert out.memType == pb.MXPI_MEMORY_HOST_MALLOC
    assert out.tensorDataPtr != 0
    assert buffer.read_memory(out.tensorDataPtr, 4).tobytes() == b"\x01\x02\x03\x04"


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools not installed")
def test_generate_sh_reproduces_committed_pb2(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("bash not available")
    import sys

    env = {"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    run = subprocess.run(["bash", str(MXLOCAL / "proto" / "generate.sh"), str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=60)
    if run.returncode and "grpcio-tools" in run.stderr and "required" in run.stderr:
        pytest.skip(run.stderr.strip())
    assert run.returncode == 0, run.stderr
    for name in ("MxpiDataType_pb2.py", "MxpiDumpData_pb2.py"):
        assert filecmp.cmp(tmp_path / name, MXLOCAL / name, shallow=False), f"{name} differs from generate.sh output"
