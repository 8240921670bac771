"""Helpers shared by the tests of the local MindX runtime (tests/test_mxlocal_*.py).

Tiny real ONNX models built with ``onnx.helper``, pipeline builders, protobuf message
builders, and a guard that turns a blocking call that hangs into a test failure.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from mxlocal import MxpiDataType_pb2 as pb
from mxlocal import StreamManagerApi as sm

OPSET = 13


def _save(nodes, inputs, outputs, path: Path, initializers=()) -> Path:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # loadable by the pinned onnxruntime
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def two_output_model(path: Path, batch="N", height="H", width="W") -> Path:
    """``y = sigmoid(x + 1)`` float32 and ``z = float16(2 x)``; x is float32 (batch, 1, H, W).

    Any of ``batch``/``height``/``width`` may be an int (static) or a name (dynamic).
    """
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, height, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 1, height, width])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT16, [batch, 1, height, width])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    nodes = [helper.make_node("Add", ["x", "one"], ["a"]), helper.make_node("Sigmoid", ["a"], ["y"]),
             helper.make_node("Mul", ["x", "two"], ["m"]),
             helper.make_node("Cast", ["m"], ["z"], to=TensorProto.FLOAT16)]
    return _save(nodes, [x], [y, z], path, [one, two])


def conv_model(path: Path, batch=2, size=16) -> Path:
    """A static-shape conv net: x (batch,1,size,size) -> conv 3x3 (4 ch) -> relu, plus a 2x2 pool.

    Outputs ``feat`` (batch, 4, size, size) and ``pool`` (batch, 4, size/2, size/2), float32.
    """
    rng = np.random.default_rng(0)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 1, 3, 3], rng.standard_normal(36).astype(np.float32))
    bias = helper.make_tensor("b", TensorProto.FLOAT, [4], rng.standard_normal(4).astype(np.float32))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, size, size])
    feat = helper.make_tensor_value_info("feat", TensorProto.FLOAT, [batch, 4, size, size])
    pool = helper.make_tensor_value_info("pool", TensorProto.FLOAT, [batch, 4, size // 2, size // 2])
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["feat"]),
             helper.make_node("MaxPool", ["feat"], ["pool"], kernel_shape=[2, 2], strides=[2, 2])]
    return _save(nodes, [x], [feat, pool], path, [weight, bias])


def uint8_model(path: Path, shape=(1, 4)) -> Path:
    """uint8 input -> int32 ``x + 1`` (checks input/output dtypes other than float32)."""
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.INT32, list(shape))
    one = helper.make_tensor("one", TensorProto.INT32, [], [1])
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.INT32), helper.make_node("Add", ["c", "one"], ["y"])]
    return _save(nodes, [x], [y], path, [one])


def pipeline(name: str, middle: dict | None = None, **stream_config) -> bytes:
    """``appsrc0 -> <middle elements in order> -> appsink0`` as pipeline JSON bytes.

    ``middle`` maps element name -> ``(factory, props)``.
    """
    middle = middle or {}
    names = ["appsrc0", *middle, "appsink0"]
    stream = {}
    if stream_config:
        stream["stream_config"] = stream_config
    for i, elem in enumerate(names):
        if elem == "appsrc0":
            body = {"factory": "appsrc", "props": {"blocksize": "409600"}}
        elif elem == "appsink0":
            body = {"factory": "appsink", "props": {"blocksize": "4096000"}}
        else:
            factory, props = middle[elem]
            body = {"factory": factory, "props": props}
        if i + 1 < len(names):
            body["next"] = names[i + 1]
        stream[elem] = body
    return json.dumps({name: stream}).encode()


def tensor_package_list(*arrays, shapes=None, dtype_code: int = 0) -> pb.MxpiTensorPackageList:
    """One package holding one tensor per array (``tensorShape`` = array shape unless given)."""
    msg = pb.MxpiTensorPackageList()
    package = msg.tensorPackageVec.add()
    for i, array in enumerate(arrays):
        tensor = package.tensorVec.add()
        tensor.deviceId = 0
        tensor.memType = 0
        tensor.tensorShape.extend(shapes[i] if shapes else array.shape)
        tensor.dataStr = np.ascontiguousarray(array).tobytes()
        tensor.tensorDataSize = len(tensor.dataStr)
        tensor.tensorDataType = dtype_code
    return msg


def protobuf_in(msg, key: bytes = b"appsrc0", type_name: bytes | None = None) -> sm.InProtobufVector:
    item = sm.MxProtobufIn()
    item.key = key
    item.type = type_name if type_name is not None else b"MxTools." + msg.DESCRIPTOR.name.encode()
    item.protobuf = msg.SerializeToString()
    vec = sm.InProtobufVector()
    vec.push_back(item)
    return vec


def keys(*names: bytes) -> sm.StringVector:
    vec = sm.StringVector()
    for name in names:
        vec.push_back(name)
    return vec


def data_input(data: bytes) -> sm.MxDataInput:
    item = sm.MxDataInput()
    item.data = data
    return item


def call_with_timeout(fn, *args, timeout: float = 20.0):
    """Run ``fn(*args)`` on a helper thread; fail the test instead of hanging forever."""
    box = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # re-raised in the test thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"{getattr(fn, '__name__', fn)} still blocked after {timeout} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def get_tensors(api, stream: bytes, key: bytes = b"mxpi_tensorinfer0", index: int = 0):
    """``GetProtobuf`` one result and parse the tensor list under ``key`` (``None`` if absent)."""
    out = call_with_timeout(api.GetProtobuf, stream, index, keys(key))
    if out.size() == 0:
        return None
    assert out[0].messageName == key
    result = pb.MxpiTensorPackageList()
    result.ParseFromString(out[0].messageBuf)
    return result


def tensor_array(tensor, dtype, shape) -> np.ndarray:
    return np.frombuffer(tensor.dataStr, dtype=dtype).reshape(shape)


def add_model(path: Path) -> Path:
    """Two inputs: ``s = a + b`` for float32 (N, 3) tensors."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 3])
    return _save([helper.make_node("Add", ["a", "b"], ["s"])], [a, b], [s], path)
