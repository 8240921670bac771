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


class PipelineError(RuntimeError):
    pass


@dataclass(frozen=True)
class PipelineLayout:
    """What the driver needs to know of a .pipeline file."""

    infer_stream: bytes
    infer_src: bytes            # appsrc element name (the key SendProtobuf uses)
    infer_key: bytes            # mxpi_tensorinfer element name (the key GetProtobuf asks for)
    model_path: str

    def model_file(self, pipeline: Path) -> Path:
        """``modelPath`` as a file: relative paths resolve against the pipeline file's folder (as the SDK does)."""
        model = Path(self.model_path).expanduser()
        return model if model.is_absolute() else (Path(pipeline).parent / model).resolve()

    @property
    def fixed_batch(self) -> int | None:
        # An ATC .om model has the static (2, 1, 768, 768) input; ONNX exports here are dynamic.
        return 2 if self.model_path.lower().endswith(".om") else None


def read_layout(path: Path) -> PipelineLayout:
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PipelineError(f"{path}: cannot read pipeline JSON ({exc})") from exc
    infer = None
    for stream, elements in cfg.items():
        if not isinstance(elements, dict):
            continue
        for name, el in elements.items():
            if not isinstance(el, dict):
                continue
            if el.get("factory") == "mxpi_tensorinfer" and infer is None:
                src = el.get("props", {}).get("dataSource", "appsrc0").split(",")[0]
                infer = (stream, src, name, el.get("props", {}).get("modelPath", ""))
    if infer is None:
        raise PipelineError(f"{path}: no stream with an mxpi_tensorinfer element")
    return PipelineLayout(infer[0].encode(), infer[1].encode(), infer[2].encode(), infer[3])


class SuperRetinaStream:
    """Create the streams of a pipeline file and run SuperRetina batches through them."""

    def __init__(self, pipeline: Path, sdk: Sdk):
        self.pipeline = Path(pipeline)
        self.sdk = sdk
        self.layout = read_layout(self.pipeline)
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
            try:
                out = self.api.GetProtobuf(self.layout.infer_stream, 0, keys)
                fut.set_result(self._unpack(out, n, shape))
            except Exception as exc:  # handed to the caller, who reports it
                fut.set_exception(exc)

    def _unpack(self, out, n: int, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        if out.size() == 0:
            raise PipelineError(f"inference returned no {self.layout.infer_key.decode()} result "
                                "(the element failed; see the runtime's log)")
        if out[0].errorCode != 0:
            raise PipelineError(f"inference failed with MindX error {out[0].errorCode}: "
                                f"{out[0].messageBuf[:200]!r}")
        result = self.sdk.pb.MxpiTensorPackageList()
        result.ParseFromString(out[0].messageBuf)
        tensors = result.tensorPackageVec[0].tensorVec
        if len(tensors) < 2:
            raise PipelineError(f"model gave {len(tensors)} outputs, expected detector and descriptor")
        b, _, h, w = shape
        # tensorShape reports a leading 1 (SDK convention): reshape by the known geometry.
        det = np.frombuffer(tensors[0].dataStr, np.float32)
        desc = np.frombuffer(tensors[1].dataStr, np.float32)
        if det.size != b * h * w:
            raise PipelineError(f"detector output has {det.size} values, expected {b}x1x{h}x{w}")
        cells = desc.size // (b * DESCRIPTOR_DIM)
        dh, dw = h // 8 - 2, w // 8 - 2
        if cells != dh * dw:
            raise PipelineError(f"descriptor output has {desc.size} values, expected {b}x256x{dh}x{dw}")
        return det.reshape(b, h, w)[:n], desc.reshape(b, DESCRIPTOR_DIM, dh, dw)[:n]

    def close(self) -> None:
        with self._send_lock:
            if self._closed:
                return
            self._closed = True
            self._pending.put(None)
        self._receiver.join(timeout=60)
        self.api.DestroyAllStreams()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

