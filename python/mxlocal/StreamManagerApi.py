"""Local stand-in for the MindX SDK module ``StreamManagerApi`` (reference §1).

Same public surface and conventions as the SWIG binding shipped in ``${MX_SDK_HOME}/python``:
positional arguments only, every string is ``bytes``, overloads chosen by argument types
(``int`` plugin id vs ``bytes`` element name), SDK return codes, ``-1`` before ``InitManager``.
Use it either way::

    from mxlocal import StreamManagerApi as sm          # python/ on sys.path
    from StreamManagerApi import StreamManagerApi       # python/mxlocal on sys.path (SDK layout)
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

if not __package__:  # imported as the top-level module of the SDK layout: make `mxlocal` importable
    _python_dir = str(Path(__file__).resolve().parents[1])
    if _python_dir not in sys.path:
        sys.path.insert(0, _python_dir)

from mxlocal import errors as E  # noqa: E402
from mxlocal import protobuf_bridge as bridge  # noqa: E402
from mxlocal.api_types import (  # noqa: E402,F401  (re-exported: the SDK module's names)
    InProtobufVector, MetadataInputVector, MetadataOutputVector, MxBufferAndMetadataOutput,
    MxBufferInput, MxBufferOutput, MxDataInput, MxDataInputExt, MxDataOutput, MxMetadataInput,
    MxMetadataOutput, MxProtobufIn, MxProtobufOut, OutProtobufVector, RoiBox, RoiBoxVector,
    StringVector, as_items)
from mxlocal.buffer import Buffer  # noqa: E402
from mxlocal.manager import StreamManager  # noqa: E402
from mxlocal.model_runtime import env_int  # noqa: E402
from mxlocal.stream import MODE_DEFAULT, MODE_NORMAL, MODE_UNIQUE_ID  # noqa: E402

__all__ = [
    "StreamManagerApi", "MxDataInput", "MxDataInputExt", "MxBufferInput", "MxMetadataInput",
    "MxProtobufIn", "MxProtobufOut", "MxDataOutput", "MxBufferOutput", "MxMetadataOutput",
    "MxBufferAndMetadataOutput", "RoiBox", "StringVector", "InProtobufVector", "OutProtobufVector",
    "MetadataInputVector", "MetadataOutputVector", "RoiBoxVector",
]

log = logging.getLogger("mxlocal")

DEFAULT_TIMEOUT_MS = 3000
# The SDK's GetProtobuf blocks without a timeout; here a wait is bounded (no caller hangs forever
# on a stalled stream). Far above any one inference; $MXLOCAL_GET_PROTOBUF_TIMEOUT_MS overrides.
ENV_GET_PROTOBUF_TIMEOUT = "MXLOCAL_GET_PROTOBUF_TIMEOUT_MS"
DEFAULT_GET_PROTOBUF_TIMEOUT_MS = 300_000
MAX_GET_PROTOBUF_TIMEOUT_MS = 86_400_000   # a day; a larger wait overflows the platform's timed wait


def get_protobuf_timeout_ms() -> int:
    """``$MXLOCAL_GET_PROTOBUF_TIMEOUT_MS``: 1 to a day; 0, negative or not an integer gives the
    default (a zero wait would fail every request), larger gives a day (both with a warning)."""
    value = env_int(ENV_GET_PROTOBUF_TIMEOUT, DEFAULT_GET_PROTOBUF_TIMEOUT_MS)
    if value <= 0:
        log.warning("$%s=%d must be a positive number of milliseconds; using %d",
                    ENV_GET_PROTOBUF_TIMEOUT, value, DEFAULT_GET_PROTOBUF_TIMEOUT_MS)
        return DEFAULT_GET_PROTOBUF_TIMEOUT_MS
    if value > MAX_GET_PROTOBUF_TIMEOUT_MS:
        log.warning("$%s=%d is more than a day; using %d", ENV_GET_PROTOBUF_TIMEOUT, value,
                    MAX_GET_PROTOBUF_TIMEOUT_MS)
        return MAX_GET_PROTOBUF_TIMEOUT_MS
    return value
NOT_INITIALIZED = b"The initialization is not performed, Call the InitManager method first."
_BYTES_HINT = "; every string of this API is bytes, e.g. b'appsrc0'"


# ---- SWIG-style argument checking ----------------------------------------------------------------
def _no_keywords(method: str, kwargs: dict) -> None:
    if kwargs:
        raise TypeError(f"StreamManagerApi.{method}() takes positional arguments only (SWIG overloads"
                        f" are *args); got keyword argument(s) {', '.join(sorted(kwargs))}")


def _check_bytes(value, method: str, argno: int) -> bytes:
    if not isinstance(value, bytes):
        hint = _BYTES_HINT if isinstance(value, str) else ""
        raise TypeError(f"in method 'StreamManagerApi_{method}', argument {argno} of type "
                        f"'std::string const &' (got {type(value).__name__}{hint})")
    return value


def _check_int(value, method: str, argno: int, unsigned: bool = False) -> int:
    if not isinstance(value, int):
        kind = "unsigned int" if unsigned else "int"
        raise TypeError(f"in method 'StreamManagerApi_{method}', argument {argno} of type "
                        f"'{kind}' (got {type(value).__name__})")
    if unsigned and value < 0:
        raise OverflowError(f"in method 'StreamManagerApi_{method}', argument {argno} of type 'unsigned int'")
    return value


def _check_struct(value, cls, method: str, argno: int):
    if not isinstance(value, cls):
        raise TypeError(f"in method 'StreamManagerApi_{method}', argument {argno} of type "
                        f"'{cls.__name__} const &' (got {type(value).__name__})")
    return value


def _overload_error(method: str, prototypes: tuple, args: tuple) -> TypeError:
    got = ", ".join(type(a).__name__ for a in args)
    hint = _BYTES_HINT if any(isinstance(a, str) for a in args) else ""
    return TypeError(f"Wrong number or type of arguments for overloaded function 'StreamManagerApi_{method}'"
                     f" (got {got}{hint}). Possible prototypes: {'; '.join(prototypes)}")


def _is_target(value) -> bool:
    """An ``inPluginId``/``outPluginId`` (int) or an element name (bytes)."""
    return isinstance(value, (int, bytes))


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


class StreamManagerApi:
    """Creates streams from pipeline JSON and exchanges data with them (reference §1.3)."""

    def __init__(self, *args, **kwargs):
        _no_keywords("__init__", kwargs)
        if args:
            raise TypeError("StreamManagerApi() takes no arguments")
        self._manager: StreamManager | None = None

    # ---- management ----------------------------------------------------------------------------
    def InitManager(self, *args, **kwargs) -> int:
        """``InitManager(argStrings=StringVector())`` -> 0. Repeated calls are harmless."""
        _no_keywords("InitManager", kwargs)
        if len(args) > 1:
            raise _overload_error("InitManager", ("InitManager(StringVector argStrings = [])",), args)
        if args:
            as_items(args[0], StringVector, "StreamManagerApi_InitManager", 2)
        if self._manager is None:
            self._manager = StreamManager()
        return E.APP_ERR_OK

    def CreateMultipleStreams(self, *args, **kwargs) -> int:
        """``CreateMultipleStreams(streamsConfig: bytes)`` -> 0 or an SDK code (problem logged)."""
        _no_keywords("CreateMultipleStreams", kwargs)
        if len(args) != 1:
            raise _overload_error("CreateMultipleStreams", ("CreateMultipleStreams(bytes streamsConfig)",), args)
        config = _check_bytes(args[0], "CreateMultipleStreams", 2)
        if self._manager is None:
            return self._not_initialized()
        return self._manager.create(config)

    def CreateMultipleStreamsFromFile(self, *args, **kwargs) -> int:
        """``CreateMultipleStreamsFromFile(path: bytes)``; relative ``modelPath`` resolves against the file's folder."""
        _no_keywords("CreateMultipleStreamsFromFile", kwargs)
        if len(args) != 1:
            raise _overload_error("CreateMultipleStreamsFromFile",
                                  ("CreateMultipleStreamsFromFile(bytes streamsFilePath)",), args)
        path = _check_bytes(args[0], "CreateMultipleStreamsFromFile", 2)
        if self._manager is None:
            return self._not_initialized()
        return self._manager.create_from_file(os.fsdecode(path))

    def StopStream(self, *args, **kwargs) -> int:
        """``StopStream(streamName: bytes)``: stop and remove one stream (6002 if absent)."""
        _no_keywords("StopStream", kwargs)
        if len(args) != 1:
            raise _overload_error("StopStream", ("StopStream(bytes streamName)",), args)
        name = _check_bytes(args[0], "StopStream", 2)
        if self._manager is None:
            return self._not_initialized()
        return self._manager.stop(_text(name))

    def DestroyAllStreams(self, *args, **kwargs) -> int:
        """Stop every stream and join their threads."""
        _no_keywords("DestroyAllStreams", kwargs)
        if args:
            raise _overload_error("DestroyAllStreams", ("DestroyAllStreams()",), args)
        if self._manager is None:
            return self._not_initialized()
        return self._manager.destroy_all()

    def GetModelEngine(self, streamName: bytes, elementName: bytes) -> dict | None:
        """Local runtime only (the SDK has no such call): where the model of a stream's
        ``mxpi_tensorinfer`` element runs, as its engine reports it
        (``mxlocal.model_runtime.engine_report``: device, name, version, providers); None when
        there is no such element or model."""
        if self._manager is None:
            return None
        return self._manager.model_engine(_text(streamName), _text(elementName))

    # ---- sending -------------------------------------------------------------------------------
    def SendData(self, *args, **kwargs) -> int:
        """Push bytes into an appsrc; returns 0 or an error code (never an id).

        Overloads: ``SendData(streamName, inPluginId: int, MxDataInput)``,
        ``SendData(streamName, elementName: bytes, MxDataInput)`` and
        ``SendData(streamName, elementName: bytes, MetadataInputVector, MxBufferInput)``.
        """
        _no_keywords("SendData", kwargs)
        protos = ("SendData(bytes streamName, int inPluginId, MxDataInput dataInput)",
                  "SendData(bytes streamName, bytes elementName, MxDataInput dataInput)",
                  "SendData(bytes streamName, bytes elementName, MetadataInputVector metadataVec, MxBufferInput databuffer)")
        if len(args) == 3 and isinstance(args[0], bytes) and _is_target(args[1]) and isinstance(args[2], MxDataInput):
            name, target, data_input = args
            if self._manager is None:
                return self._not_initialized()
            return self._send(_text(name), target, self._data_buffer(data_input), MODE_NORMAL)
        if (len(args) == 4 and isinstance(args[0], bytes) and isinstance(args[1], bytes)
                and isinstance(args[3], MxBufferInput)):
            name, element, metadata_vec, buffer_input = args
            metadata = as_items(metadata_vec, MetadataInputVector, "StreamManagerApi_SendData", 4)
            if self._manager is None:
                return self._not_initialized()
            buffer = Buffer(data=buffer_input.data)
            self._attach_infos(buffer, buffer_input)
            for item in metadata:
                try:
                    buffer.metadata[_text(item.dataSource)] = bridge.rebuild_input(
                        item.dataType, item.serializedMetadata, buffer)
                except E.MxError as exc:
                    return self._fail(exc)
            return self._send(_text(name), element, buffer, MODE_NORMAL)
        raise _overload_error("SendData", protos, args)

    def SendDataWithUniqueId(self, *args, **kwargs) -> int:
        """``SendDataWithUniqueId(streamName, inPluginId | elementName, MxDataInput)`` -> id >= 0, or -1."""
        _no_keywords("SendDataWithUniqueId", kwargs)
        if not (len(args) == 3 and isinstance(args[0], bytes) and _is_target(args[1])
                and isinstance(args[2], MxDataInput)):
            raise _overload_error("SendDataWithUniqueId", (
                "SendDataWithUniqueId(bytes streamName, int inPluginId, MxDataInput dataInput)",
                "SendDataWithUniqueId(bytes streamName, bytes elementName, MxDataInput dataInput)"), args)
        if self._manager is None:
            return self._not_initialized()
        name, target, data_input = args
        buffer = self._data_buffer(data_input)
        code = self._send(_text(name), target, buffer, MODE_UNIQUE_ID)
        return buffer.extra["unique_id"] if code == E.APP_ERR_OK else E.APP_PYTHON_INIT_ERROR

    def SendProtobuf(self, *args, **kwargs) -> int:
        """``SendProtobuf(streamName, inPluginId | elementName, InProtobufVector)`` -> 0 or a code.

        Builds an empty-data buffer; each ``MxProtobufIn`` is parsed as its ``type`` (a full
        ``MxTools.<Msg>`` name) and attached under its ``key``.
        """
        _no_keywords("SendProtobuf", kwargs)
        if not (len(args) == 3 and isinstance(args[0], bytes) and _is_target(args[1])):
            raise _overload_error("SendProtobuf", (
                "SendProtobuf(bytes streamName, int inPluginId, InProtobufVector protobufVec)",
                "SendProtobuf(bytes streamName, bytes elementName, InProtobufVector protobufVec)"), args)
        name, target, vec = args
        items = as_items(vec, InProtobufVector, "StreamManagerApi_SendProtobuf", 4)
        if self._manager is None:
            return self._not_initialized()
        buffer = Buffer()
        for item in items:
            try:
                buffer.metadata[_text(item.key)] = bridge.rebuild_input(item.type, item.protobuf, buffer)
            except E.MxError as exc:
                return self._fail(exc)
        return self._send(_text(name), target, buffer, MODE_NORMAL)

    # ---- receiving -----------------------------------------------------------------------------
    def GetResult(self, *args, **kwargs):
        """Pop the next result of an appsink.

        ``GetResult(streamName, outPluginId: int, msTimeOut=3000)`` -> :class:`MxDataOutput`;
        ``GetResult(streamName, elementName: bytes, dataSourceVec, msTimeOut=3000)`` ->
        :class:`MxBufferAndMetadataOutput`.
        """
        _no_keywords("GetResult", kwargs)
        protos = ("GetResult(bytes streamName, int outPluginId, unsigned int msTimeOut = 3000)",
                  "GetResult(bytes streamName, bytes elementName, StringVector dataSourceVec, unsigned int msTimeOut = 3000)")
        if len(args) in (2, 3) and isinstance(args[0], bytes) and isinstance(args[1], int):
            timeout = _check_int(args[2], "GetResult", 4, unsigned=True) if len(args) == 3 else DEFAULT_TIMEOUT_MS
            return self._get_result(_text(args[0]), args[1], timeout)
        if len(args) in (3, 4) and isinstance(args[0], bytes) and isinstance(args[1], bytes):
            keys = as_items(args[2], StringVector, "StreamManagerApi_GetResult", 4)
            timeout = _check_int(args[3], "GetResult", 5, unsigned=True) if len(args) == 4 else DEFAULT_TIMEOUT_MS
            return self._get_result_with_metadata(_text(args[0]), _text(args[1]), keys, timeout)
        raise _overload_error("GetResult", protos, args)

    def GetResultWithUniqueId(self, *args, **kwargs) -> MxDataOutput:
        """``GetResultWithUniqueId(streamName, uniqueId, timeOutInMs)`` -> :class:`MxDataOutput`."""
        _no_keywords("GetResultWithUniqueId", kwargs)
        if len(args) != 3 or not isinstance(args[0], bytes):
            raise _overload_error("GetResultWithUniqueId", (
                "GetResultWithUniqueId(bytes streamName, unsigned long uniqueId, unsigned int timeOutInMs)",), args)
        uid = _check_int(args[1], "GetResultWithUniqueId", 3, unsigned=True)
        timeout = _check_int(args[2], "GetResultWithUniqueId", 4, unsigned=True)
        out = MxDataOutput()
        if self._manager is None:
            log.error("%s", NOT_INITIALIZED.decode())
            out.errorCode = E.APP_PYTHON_INIT_ERROR
            return out
        stream = self._manager.get(_text(args[0]))
        if stream is None:
            return self._data_output(E.APP_ERR_STREAM_NOT_EXIST, f"stream '{_text(args[0])}' does not exist")
        if stream.mode != MODE_UNIQUE_ID:
            return self._data_output(E.APP_ERR_COMM_INNER, f"stream '{stream.name}': GetResultWithUniqueId needs"
                                     " data sent with SendDataWithUniqueId")
        result = stream.unique_results.pop(uid, timeout / 1000.0)
        if result is None:
            return self._data_output(E.APP_ERR_COMM_INNER, f"stream '{stream.name}': no result for unique id"
                                     f" {uid} within {timeout} ms")
        out.errorCode, out.data = result.error_code, result.data
        return out

    def GetProtobuf(self, *args, **kwargs) -> OutProtobufVector:
        """``GetProtobuf(streamName, outPluginId, keyVec)``: pop one result.

        Returns one :class:`MxProtobufOut` per key present on the buffer (missing keys are
        skipped, so the vector may be shorter than ``keyVec`` or empty). Any failure (unknown
        stream, bad id, nothing sent yet, wrong transmission mode) gives an empty vector.

        Local difference: the SDK waits without limit; here the wait ends after
        ``$MXLOCAL_GET_PROTOBUF_TIMEOUT_MS`` (default 300000) with one entry whose
        ``errorCode`` is 1011 (APP_ERR_COMM_TIMEOUT) and whose ``messageBuf`` says so.
        """
        _no_keywords("GetProtobuf", kwargs)
        if not (len(args) == 3 and isinstance(args[0], bytes) and isinstance(args[1], int)):
            raise _overload_error("GetProtobuf", (
                "GetProtobuf(bytes streamName, int outPluginId, StringVector keyVec)",), args)
        name, index = _text(args[0]), args[1]
        keys = [_text(k) for k in as_items(args[2], StringVector, "StreamManagerApi_GetProtobuf", 4)]
        out = OutProtobufVector()
        if self._manager is None:
            log.error("%s", NOT_INITIALIZED.decode())
            item = MxProtobufOut()
            item.errorCode, item.messageName = E.APP_PYTHON_INIT_ERROR, NOT_INITIALIZED
            out.push_back(item)
            return out
        stream = self._manager.get(name)
        problem = None
        if stream is None:
            problem = f"stream '{name}' does not exist"
        elif index < 0 or index >= len(stream.results):
            problem = f"stream '{name}': outPluginId {index} is out of range (the stream has {len(stream.results)} appsink(s))"
        elif not keys:
            problem = "keyVec is empty"
        elif stream.mode == MODE_DEFAULT:
            problem = f"stream '{name}': please send data before getting results"
        elif stream.mode != MODE_NORMAL:
            problem = f"stream '{name}': GetProtobuf needs data sent with SendData/SendProtobuf"
        if problem:
            log.warning("GetProtobuf: %s; returning an empty vector", problem)
            return out
        timeout_ms = get_protobuf_timeout_ms()
        result = stream.results[index].pop(timeout_ms / 1000.0)
        if result is None:
            if stream.stopped:  # the stream was stopped while waiting
                return out
            message = (f"stream '{name}': no result within {timeout_ms} ms"
                       f" (${ENV_GET_PROTOBUF_TIMEOUT}); the stream may be stalled")
            log.error("GetProtobuf: [%d] %s", E.APP_ERR_COMM_TIMEOUT, message)
            item = MxProtobufOut()
            item.errorCode, item.messageName = E.APP_ERR_COMM_TIMEOUT, keys[0].encode()
            item.messageBuf = (E.error_info(E.APP_ERR_COMM_TIMEOUT) + message).encode()
            out.push_back(item)
            return out
        metadata = result.buffer.metadata
        for key in keys:
            msg = metadata.get(key)
            if msg is None:
                log.debug("GetProtobuf: key %r not on the buffer", key)
                continue
            item = MxProtobufOut()
            item.errorCode = result.error_code
            item.messageName = key.encode()
            item.messageBuf = bridge.serialize_output(msg, result.buffer)
            out.push_back(item)
        return out

    # ---- internals -----------------------------------------------------------------------------
    def _not_initialized(self) -> int:
        log.error("%s", NOT_INITIALIZED.decode())
        return E.APP_PYTHON_INIT_ERROR

    @staticmethod
    def _fail(exc: E.MxError) -> int:
        log.error("%s", exc)
        return exc.code

    @staticmethod
    def _data_buffer(data_input: MxDataInput) -> Buffer:
        return Buffer(data=data_input.data, extra={
            "fragment_id": data_input.fragmentId,
            "custom_param": data_input.customParam,
            "roi_boxes": [(r.x0, r.y0, r.x1, r.y1) for r in data_input.roiBoxs],
        })

    @staticmethod
    def _attach_infos(buffer: Buffer, buffer_input: MxBufferInput) -> None:
        from mxlocal import MxpiDataType_pb2 as pb

        for key, cls, payload in (("frame_info", pb.MxpiFrameInfo, buffer_input.mxpiFrameInfo),
                                  ("vision_info", pb.MxpiVisionInfo, buffer_input.mxpiVisionInfo)):
            msg = cls()
            try:
                msg.ParseFromString(payload)
            except Exception:  # the SDK ignores the parse result too
                log.warning("SendData: MxBufferInput.%s does not parse as %s; ignored", key, cls.__name__)
            buffer.extra[key] = msg

    def _send(self, name: str, target, buffer: Buffer, mode: int) -> int:
        stream = self._manager.get(name)
        if isinstance(target, int) and target < 0:
            return self._fail(E.MxError(E.APP_ERR_COMM_INVALID_PARAM, f"inPluginId {target} is negative"))
        if stream is None:
            return self._fail(E.MxError(E.APP_ERR_STREAM_NOT_EXIST, f"stream '{name}' does not exist"))
        appsrc = stream.appsrc_by_index(target) if isinstance(target, int) else stream.appsrc_by_name(_text(target))
        if appsrc is None:
            what = f"inPluginId {target} is out of range" if isinstance(target, int) else f"{_text(target)!r} is not an appsrc"
            return self._fail(E.MxError(E.APP_ERR_STREAM_INVALID_LINK,
                                        f"stream '{name}': {what} (appsrc elements: {', '.join(stream.appsrc_names) or 'none'})"))
        return stream.send(appsrc, buffer, mode)

    @staticmethod
    def _data_output(code: int, problem: str) -> MxDataOutput:
        log.warning("GetResult: [%d] %s", code, problem)
        out = MxDataOutput()
        out.errorCode, out.data = code, E.error_info(code).encode()
        return out

    def _get_result(self, name: str, index: int, timeout_ms: int) -> MxDataOutput:
        if self._manager is None:
            log.error("%s", NOT_INITIALIZED.decode())
            out = MxDataOutput()
            out.errorCode = E.APP_PYTHON_INIT_ERROR
            return out
        stream = self._manager.get(name)
        if stream is None:
            return self._data_output(E.APP_ERR_STREAM_NOT_EXIST, f"stream '{name}' does not exist")
        if index < 0:
            return self._data_output(E.APP_ERR_COMM_INVALID_PARAM, f"outPluginId {index} is negative")
        if stream.mode != MODE_NORMAL:
            return self._data_output(E.APP_ERR_COMM_INNER, f"stream '{name}': GetResult needs data sent with"
                                     " SendData/SendProtobuf first")
        if index >= len(stream.results):
            return self._data_output(E.APP_ERR_COMM_INNER, f"stream '{name}': outPluginId {index} is out of range")
        result = stream.results[index].pop(timeout_ms / 1000.0)
        if result is None:
            return self._data_output(E.APP_ERR_COMM_INNER, f"stream '{name}': exceeded the time limit ({timeout_ms} ms)")
        out = MxDataOutput()
        out.errorCode, out.data = result.error_code, result.data
        return out

    def _get_result_with_metadata(self, name: str, element: str, keys: list, timeout_ms: int):
        out = MxBufferAndMetadataOutput()
        if self._manager is None:
            log.error("%s", NOT_INITIALIZED.decode())
            out.SetErrorInfo(E.APP_ERR_STREAM_NOT_EXIST, NOT_INITIALIZED)
            return out
        stream = self._manager.get(name)
        if stream is None:
            out.SetErrorInfo(E.APP_ERR_STREAM_NOT_EXIST, f"Stream({name}) not exist.".encode())
            return out
        if stream.mode != MODE_NORMAL:
            out.SetErrorInfo(E.APP_ERR_STREAM_TRANS_MODE_NOT_MATCHED,
                             b'Cannot get data with "GetResult()", use the other matched with send data function.')
            return out
        if element not in stream.appsink_names:
            out.SetErrorInfo(E.APP_ERR_STREAM_ELEMENT_INVALID, f"ElementName({element}) is not a name of output element.".encode())
            return out
        result = stream.results[stream.appsink_names.index(element)].pop(timeout_ms / 1000.0)
        if result is None:
            out.SetErrorInfo(E.APP_ERR_COMM_FAILURE, (E.error_info(E.APP_ERR_COMM_FAILURE)
                             + f"Get empty result, or exceed the time limit({timeout_ms}).").encode())
            return out
        if result.error_code != E.APP_ERR_OK:
            out.SetErrorInfo(result.error_code, result.data)
            return out
        out.bufferOutput.data = result.data
        for key in keys:
            msg = result.buffer.metadata.get(_text(key))
            if msg is None:  # the C++ side reports 7011 for it; the Python wrapper drops the entry
                continue
            item = MxMetadataOutput()
            item.dataType = bridge.short_type_name(msg).encode()
            item.serializedMetadata = bridge.serialize_output(msg, result.buffer)
            out.metadataVec.push_back(item)
        return out
