"""The one adapter between the registration code and the MindX stream (protobuf in, arrays out).

The pipeline file holds the inference stream (appsrc → mxpi_tensorinfer → appsink); the driver
reads and enhances the photographs itself (16-bit PNG, TIFF and EXIF orientation, which the SDK's
JPEG decoder does not take), so the stream receives tensors.  Tensors go in with
``SendProtobuf`` and come back with ``GetProtobuf``; several batches can be in flight: a sender
queues them, one receiver thread collects results in order (a stream keeps its order), so
callers from several threads get their own results.
"""
from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from queue import Queue

import numpy as np

from .sdk import Sdk

DESCRIPTOR_DIM = 256
FLOAT32 = 0          # MxpiTensor.tensorDataType code of float32
APP_ERR_COMM_TIMEOUT = 1011  # a GetProtobuf that gave up waiting (local runtime's bounded wait)


class PipelineError(RuntimeError):
    pass


@dataclass(frozen=True)
class PipelineLayout:
    """What the driver needs to know of a .pipeline file."""

    infer_stream: bytes
    infer_src: bytes            # appsrc element name (the key SendProtobuf uses)
    infer_key: bytes            # mxpi_tensorinfer element name (the key GetProtobuf asks for)
    model_path: str

    @property
    def fixed_batch(self) -> int | None:
        # An ATC .om model has the static (2, 1, 768, 768) input; ONNX exports here are dynamic.
        return 2 if self.model_path.lower().endswith(".om") else None


MAX_PIPELINE_BYTES = 16 << 20   # a pipeline is a few KB of JSON


def _load_json(path: Path):
    """The pipeline file's JSON; one-line :class:`PipelineError` for unreadable, non-UTF-8 or invalid files."""
    from .files import InputFileError, read_regular

    try:  # a regular file of bounded size (a FIFO would block, /dev/zero would fill the memory)
        raw, _ = read_regular(path, MAX_PIPELINE_BYTES, "pipeline file")
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read the pipeline file ({exc.strerror or exc})") from None
    except InputFileError as exc:
        raise PipelineError(f"{path}: {exc} (a pipeline is a small JSON file)") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start});"
                            " a pipeline is a JSON file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: not valid pipeline JSON: {exc.msg}"
                            f" at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise PipelineError(f"{path}: not a pipeline (JSON nested too deeply)") from None


def read_layout(path: Path) -> PipelineLayout:
    """Find the inference stream of a pipeline file; one-line errors for what does not fit."""
    cfg = _load_json(path)
    if not isinstance(cfg, dict):
        raise PipelineError(f"{path}: the top level must be a JSON object of streams"
                            f" ({{\"stream name\": {{elements}}}}), got a JSON {_json_kind(cfg)}")
    infer = None
    for stream, elements in cfg.items():
        if not isinstance(elements, dict):
            continue
        for name, el in elements.items():
            if not isinstance(el, dict) or el.get("factory") != "mxpi_tensorinfer":
                continue
            where = f"{path}: stream '{stream}' element '{name}'"
            props = el.get("props", {})
            if not isinstance(props, dict):
                raise PipelineError(f"{where}: \"props\" must be a JSON object, got a JSON {_json_kind(props)}")
            if el["factory"] == "mxpi_tensorinfer" and infer is None:
                source = props.get("dataSource", "appsrc0")
                model = props.get("modelPath")
                if not isinstance(source, str) or not source:
                    raise PipelineError(f"{where}: dataSource must be an element name string such as \"appsrc0\","
                                        f" got {json.dumps(source)[:60]}")
                if not isinstance(model, str) or not model.strip():
                    raise PipelineError(f"{where}: modelPath must be the model file's path as a string,"
                                        f" got {json.dumps(model)[:60]}")
                infer = (stream, source.split(",")[0], name, model)
    if infer is None:
        raise PipelineError(f"{path}: no stream with an mxpi_tensorinfer element")
    return PipelineLayout(infer[0].encode(), infer[1].encode(), infer[2].encode(), infer[3])


def _json_kind(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def model_file(pipeline: Path, model_path: str) -> Path:
    """The model file a pipeline's ``modelPath`` names (relative paths resolve against the pipeline's folder)."""
    model = Path(model_path).expanduser()
    return model if model.is_absolute() else (Path(pipeline).resolve().parent / model).resolve()


class SuperRetinaStream:
    """Create the streams of a pipeline file and run SuperRetina batches through them."""

    def __init__(self, pipeline: Path, sdk: Sdk):
        self.pipeline = Path(pipeline)
        self.sdk = sdk
        self.layout = read_layout(self.pipeline)
        self.model = model_file(self.pipeline, self.layout.model_path)  # named in output-shape errors
        self.api = sdk.api.StreamManagerApi()
        if self.api.InitManager() != 0:
            raise PipelineError("StreamManagerApi.InitManager failed")
        ret = self.api.CreateMultipleStreamsFromFile(str(self.pipeline).encode())
        if ret != 0:
            raise PipelineError(f"{self.pipeline}: creating the streams failed with MindX error {ret} "
                                "(the runtime's log above names the stream, element and problem)")
        self._send_lock = threading.Lock()
        self._pending: Queue = Queue()
        self._receiver = threading.Thread(target=self._receive, name="superretina-receiver", daemon=True)
        self._receiver.start()
        self._closed = False
        self._broken: str | None = None  # set when results can no longer be paired with requests

    # -- inference -----------------------------------------------------------------------
    def infer_async(self, batch: np.ndarray) -> Future:
        """Queue a (N, 1, H, W) float32 batch; the future gives (detector (N,H,W), descriptor (N,256,h,w))."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        n = batch.shape[0]
        fixed = self.layout.fixed_batch
        if fixed and n != fixed:  # static-batch .om: pad by repeating the last image
            if n > fixed:
                raise PipelineError(f"model takes batches of {fixed}, got {n}")
            batch = np.concatenate([batch, np.repeat(batch[-1:], fixed - n, axis=0)])
        pb = self.sdk.pb
        pkg_list = pb.MxpiTensorPackageList()
        tensor = pkg_list.tensorPackageVec.add().tensorVec.add()
        tensor.deviceId = 0
        tensor.memType = 0
        tensor.tensorShape.extend(batch.shape)
        tensor.tensorDataType = FLOAT32
        tensor.dataStr = batch.tobytes()
        tensor.tensorDataSize = len(tensor.dataStr)
        item = self.sdk.api.MxProtobufIn()
        item.key = self.layout.infer_src
        item.type = b"MxTools.MxpiTensorPackageList"
        item.protobuf = pkg_list.SerializeToString()
        vec = self.sdk.api.InProtobufVector()
        vec.push_back(item)
        fut: Future = Future()
        with self._send_lock:
            if self._closed:
                raise PipelineError("stream is closed")
            if self._broken:
                raise PipelineError(self._broken)
            ret = self.api.SendProtobuf(self.layout.infer_stream, self.layout.infer_src, vec)
            if ret != 0:
                raise PipelineError(f"SendProtobuf to {self.layout.infer_stream.decode()} failed with MindX error {ret}")
            self._pending.put((fut, n, batch.shape))
        return fut

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.infer_async(batch).result()

    def _receive(self) -> None:
        keys = self.sdk.api.StringVector()
        keys.push_back(self.layout.infer_key)
        while True:
            job = self._pending.get()
            if job is None:
                return
            fut, n, shape = job
            if self._broken:
                fut.set_exception(PipelineError(self._broken))
                continue
            try:
                out = self.api.GetProtobuf(self.layout.infer_stream, 0, keys)
                if out.size() and out[0].errorCode == APP_ERR_COMM_TIMEOUT:
                    # A late result would be taken by the next request: never pair results again.
                    with self._send_lock:
                        self._broken = (f"inference stream {self.layout.infer_stream.decode()} stalled (no result"
                                        " in time); later results cannot be matched to requests, reopen the stream")
                    raise PipelineError(self._broken)
                fut.set_result(self._unpack(out, n, shape))
            except Exception as exc:  # handed to the caller, who reports it
                fut.set_exception(exc)

    def _unpack(self, out, n: int, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        if out.size() == 0:
            raise PipelineError(f"inference returned no {self.layout.infer_key.decode()} result "
                                f"(the element failed on model {self.model}; see the runtime's log)")
        if out[0].errorCode != 0:
            raise PipelineError(f"inference failed with MindX error {out[0].errorCode}: "
                                f"{out[0].messageBuf[:200]!r}")
        result = self.sdk.pb.MxpiTensorPackageList()
        result.ParseFromString(out[0].messageBuf)
        tensors = result.tensorPackageVec[0].tensorVec if len(result.tensorPackageVec) else []
        if len(tensors) < 2:
            raise PipelineError(f"{self.model}: the model gave {len(tensors)} output(s); a SuperRetina model has"
                                " two, detector (N,1,H,W) and descriptor (N,256,H/8-2,W/8-2)")
        b, _, h, w = shape
        # tensorShape reports a leading 1 (SDK convention): reshape by the known geometry.
        det = np.frombuffer(tensors[0].dataStr, np.float32)
        desc = np.frombuffer(tensors[1].dataStr, np.float32)
        if det.size != b * h * w:
            raise PipelineError(f"{self.model}: detector output has {det.size} values, expected {b}x1x{h}x{w}"
                                " for this input; is it a SuperRetina model?")
        dh, dw = h // 8 - 2, w // 8 - 2
        if desc.size != b * DESCRIPTOR_DIM * dh * dw:
            raise PipelineError(f"{self.model}: descriptor output has {desc.size} values, expected"
                                f" {b}x{DESCRIPTOR_DIM}x{dh}x{dw} for this input; is it a SuperRetina model?")
        return det.reshape(b, h, w)[:n], desc.reshape(b, DESCRIPTOR_DIM, dh, dw)[:n]

    def engine_report(self) -> dict:
        """Where the model runs, as the runtime's engine reports it: ``device`` (cpu, gpu; ascend for
        the MindX SDK), the engine's ``name``, ``version`` and ``providers`` (e.g. ONNX Runtime's
        ``CPUExecutionProvider``, OpenVINO's ``CPU``); see ``mxlocal.model_runtime.engine_report``."""
        ask = getattr(self.api, "GetModelEngine", None)   # the local runtime's call (stand-in SDKs too)
        report = ask(self.layout.infer_stream, self.layout.infer_key) if ask is not None else None
        if report is not None:
            return report
        if self.sdk.name == "local":
            raise PipelineError(f"{self.pipeline}: the local runtime reports no model engine for element "
                                f"{self.layout.infer_key.decode()} of stream {self.layout.infer_stream.decode()}")
        # The MindX SDK runs .om models on an Ascend NPU only and has no call that says more.
        return {"device": "ascend", "name": "mindx-sdk", "version": None, "providers": []}

    def close(self) -> None:
        with self._send_lock:
            if self._closed:
                return
            self._closed = True
            self._pending.put(None)
        # Destroy first: it wakes a receiver blocked in GetProtobuf (Ctrl-C used to wait here
        # for the join's full minute when the stream had stalled).
        self.api.DestroyAllStreams()
        self._receiver.join(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

