"""The one adapter between the registration code and the MindX stream (protobuf in, arrays out).

A pipeline file holds up to two streams running the same model:

* the tensor stream (appsrc → mxpi_tensorinfer → appsink): model-input tensors go in with
  ``SendProtobuf`` — the matching trick's warped query, and photographs the stream's decoder
  does not take (16-bit PNG, TIFF, arrays), which the driver reads and enhances itself;
* the decode stream, optional (appsrc → mxpi_imagedecoder → superretina_enhance →
  mxpi_tensorinfer → appsink): a JPEG file's bytes go in with ``SendData``; the stream decodes,
  enhances and infers, and hands back the detector/descriptor maps with the full-size equalised
  image (``superretina_enhance``'s second output), the field-of-view mask at half the model
  frame (its third) and, when asked, the decoded photograph.

Results come back with ``GetProtobuf``. Several requests can be in flight on each stream (each
element works on a different one): a sender queues them, one receiver thread per stream collects
results in order (a stream keeps its order), so callers from several threads get their own.
"""
from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from queue import Queue

import numpy as np

from . import message_views
from .enhance import PROPS, REFERENCE, EnhanceSettings
from .sdk import Sdk

DESCRIPTOR_DIM = 256
FLOAT32 = 0          # MxpiTensor.tensorDataType code of float32
APP_ERR_COMM_TIMEOUT = 1011  # a GetProtobuf that gave up waiting (local runtime's bounded wait)


class PipelineError(RuntimeError):
    pass


ENHANCE_FACTORY = "superretina_enhance"
EQUALISED_SUFFIX = "_equalised"   # superretina_enhance's second output key (plugins/superretina_enhance.py)
FOV_SUFFIX = "_fov"               # its field-of-view mask at half the model frame (outputFov)


@dataclass(frozen=True)
class DecodeLayout:
    """The decode stream: file bytes in, maps + equalised image (+ decoded photograph) out."""

    stream: bytes
    src: bytes                  # its appsrc (SendData's element name)
    infer_key: bytes            # its mxpi_tensorinfer
    input_key: bytes            # superretina_enhance's model input (1, 1, H, W) float32
    equalised_key: bytes        # superretina_enhance's full-size equalised image
    decoder_key: bytes          # mxpi_imagedecoder's photograph
    image_format: str           # the decoder's imageFormat ("jpg", "png" or "bmp")
    model_hw: tuple             # superretina_enhance's (resizeHeight, resizeWidth)
    fov_key: bytes | None = None  # superretina_enhance's field-of-view mask (None: outputFov 0)
    enhance: EnhanceSettings = REFERENCE  # its enhancement properties (claheClip, gamma, ...)


@dataclass(frozen=True)
class PipelineLayout:
    """What the driver needs to know of a .pipeline file."""

    infer_stream: bytes
    infer_src: bytes            # appsrc element name (the key SendProtobuf uses)
    infer_key: bytes            # mxpi_tensorinfer element name (the key GetProtobuf asks for)
    model_path: str
    decode: DecodeLayout | None = None   # absent: the driver decodes and enhances every photograph

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
    """Find the tensor stream (and the decode stream, if any) of a pipeline file; one-line errors
    for what does not fit."""
    cfg = _load_json(path)
    if not isinstance(cfg, dict):
        raise PipelineError(f"{path}: the top level must be a JSON object of streams"
                            f" ({{\"stream name\": {{elements}}}}), got a JSON {_json_kind(cfg)}")
    infer = decode = None
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
            source = props.get("dataSource", "appsrc0")
            model = props.get("modelPath")
            if not isinstance(source, str) or not source:
                raise PipelineError(f"{where}: dataSource must be an element name string such as \"appsrc0\","
                                    f" got {json.dumps(source)[:60]}")
            if not isinstance(model, str) or not model.strip():
                raise PipelineError(f"{where}: modelPath must be the model file's path as a string,"
                                    f" got {json.dumps(model)[:60]}")
            feeder = elements.get(source.split(",")[0])
            if isinstance(feeder, dict) and feeder.get("factory") == ENHANCE_FACTORY:
                if decode is None:
                    decode = (stream, name, model, _decode_layout(path, stream, elements, source.split(",")[0], name))
            elif infer is None:
                infer = (stream, source.split(",")[0], name, model)
    if infer is None:
        raise PipelineError(f"{path}: no stream with an mxpi_tensorinfer element fed by an appsrc (the tensor stream)")
    if decode is not None and decode[2] != infer[3]:
        raise PipelineError(f"{path}: the decode stream '{decode[0]}' runs modelPath {decode[2]} and the tensor stream"
                            f" '{infer[0]}' {infer[3]}; both streams must run the same model")
    return PipelineLayout(infer[0].encode(), infer[1].encode(), infer[2].encode(), infer[3],
                          decode[3] if decode else None)


def _decode_layout(path: Path, stream: str, elements: dict, enhance: str, infer: str) -> DecodeLayout:
    """The decode stream's keys: appsrc → mxpi_imagedecoder → superretina_enhance → ``infer``."""
    where = f"{path}: stream '{stream}'"
    props = elements[enhance].get("props", {})
    props = props if isinstance(props, dict) else {}
    decoder = props.get("dataSource", "auto")
    if decoder in ("", "auto") or not isinstance(decoder, str):
        decoder = next((n for n, e in elements.items() if isinstance(e, dict) and e.get("next") == enhance), "")
    dec = elements.get(decoder)
    if not isinstance(dec, dict) or dec.get("factory") != "mxpi_imagedecoder":
        raise PipelineError(f"{where}: {enhance} must take its image from an mxpi_imagedecoder element, got {decoder!r}")
    src = next((n for n, e in elements.items() if isinstance(e, dict) and e.get("factory") == "appsrc"
                and e.get("next") == decoder), None)
    if src is None:
        raise PipelineError(f"{where}: no appsrc links into {decoder}")
    dec_props = dec.get("props", {}) if isinstance(dec.get("props", {}), dict) else {}
    fmt = str(dec_props.get("imageFormat", "jpg")).replace("jpeg", "jpg")
    try:
        hw = (int(props.get("resizeHeight", 768)), int(props.get("resizeWidth", 768)))
    except (TypeError, ValueError):
        raise PipelineError(f"{where}: {enhance}'s resizeHeight/resizeWidth must be integers") from None
    fov = str(props.get("outputFov", "1")).strip() != "0"
    try:
        settings = EnhanceSettings.from_props(props)
    except (TypeError, ValueError):
        raise PipelineError(f"{where}: {enhance}'s {', '.join(PROPS)} must be numbers"
                            " (channel: green or luminance)") from None
    return DecodeLayout(stream.encode(), src.encode(), infer.encode(), enhance.encode(),
                        (enhance + EQUALISED_SUFFIX).encode(), decoder.encode(), fmt, hw,
                        (enhance + FOV_SUFFIX).encode() if fov else None, settings)


def _json_kind(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _floats(data: np.ndarray) -> np.ndarray:
    """A tensor's bytes as float32 (a view where they are aligned, as the stream's are; else a copy)."""
    if data.nbytes % 4:
        raise PipelineError(f"a float32 tensor of {data.nbytes} bytes (not a multiple of 4)")
    return data.view(np.float32) if data.ctypes.data % 4 == 0 else data.copy().view(np.float32)


def model_file(pipeline: Path, model_path: str) -> Path:
    """The model file a pipeline's ``modelPath`` names (relative paths resolve against the pipeline's folder)."""
    model = Path(model_path).expanduser()
    return model if model.is_absolute() else (Path(pipeline).resolve().parent / model).resolve()


@dataclass
class Decoded:
    """What the decode stream gives for one photograph.

    Attributes
    ----------
    equalised : ndarray (H, W) uint8
        ``enhance.equalise`` of the photograph (superretina_enhance's second output).
    detector : ndarray (1, h, w) float32
    descriptor : ndarray (1, 256, h/8-2, w/8-2) float32
    model_input : ndarray (h, w) float32
        The network input it was computed from (the matching trick warps it).
    image : ndarray (H, W, 3) uint8 BGR or None
        The decoded photograph, when asked for (the pictures draw it).
    fov : ndarray (h, w) uint8 or None
        ``fov.half_fov`` of the photograph (superretina_enhance's ``outputFov``), None where the
        element does not send it.
    """

    equalised: np.ndarray
    detector: np.ndarray
    descriptor: np.ndarray
    model_input: np.ndarray
    image: np.ndarray | None = None
    fov: np.ndarray | None = None


class SuperRetinaStream:
    """Create the streams of a pipeline file and run SuperRetina batches (or JPEG files) through them."""

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
        self._closed = False
        self._broken: str | None = None  # set when results can no longer be paired with requests
        self._pending: dict[bytes, Queue] = {}
        self._receivers = []
        for stream in [self.layout.infer_stream] + ([self.layout.decode.stream] if self.layout.decode else []):
            self._pending[stream] = Queue()
            thread = threading.Thread(target=self._receive, args=(stream,), daemon=True,
                                      name=f"superretina-receiver-{stream.decode()}")
            thread.start()
            self._receivers.append(thread)

    @property
    def any_input_size(self) -> bool:
        """Whether the tensor stream takes inputs of other sizes than the model frame (multiples of
        16: the matching trick's crop); an Ascend .om model has one static input shape."""
        return self.layout.fixed_batch is None

    @property
    def can_decode(self) -> str | None:
        """The image format the decode stream takes ("jpg", ...), or None without one."""
        return self.layout.decode.image_format if self.layout.decode else None

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
        stream = self.layout.infer_stream
        keys = [self.layout.infer_key]
        return self._send(stream, lambda: self.api.SendProtobuf(stream, self.layout.infer_src, vec),
                          keys, lambda out: self._unpack(out, n, batch.shape))

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.infer_async(batch).result()

    def infer_encoded_async(self, data: bytes, image: bool = False) -> Future:
        """Queue one encoded photograph (the decode stream's ``imageFormat``) through the decode stream.

        The future gives a :class:`Decoded` (``image`` only when ``image`` is true), or raises
        :class:`PipelineError` when the stream could not decode or enhance it (the caller may
        then read the file itself, for its one-line reason).
        """
        d = self.layout.decode
        if d is None:
            raise PipelineError(f"{self.pipeline}: no decode stream (appsrc → mxpi_imagedecoder →"
                                f" {ENHANCE_FACTORY} → mxpi_tensorinfer)")
        item = self.sdk.api.MxDataInput()
        item.data = bytes(data)
        keys = ([d.infer_key, d.input_key, d.equalised_key] + ([d.decoder_key] if image else [])
                + ([d.fov_key] if d.fov_key else []))
        return self._send(d.stream, lambda: self.api.SendData(d.stream, d.src, item), keys,
                          lambda out: self._unpack_decoded(out, image))

    def _send(self, stream: bytes, send, keys: list, unpack) -> Future:
        fut: Future = Future()
        with self._send_lock:
            if self._closed:
                raise PipelineError("stream is closed")
            if self._broken:
                raise PipelineError(self._broken)
            ret = send()
            if ret != 0:
                raise PipelineError(f"sending to stream {stream.decode()} failed with MindX error {ret}")
            self._pending[stream].put((fut, keys, unpack))
        return fut

    def _receive(self, stream: bytes) -> None:
        pending = self._pending[stream]
        while True:
            job = pending.get()
            if job is None:
                return
            fut, key_list, unpack = job
            if self._broken:
                fut.set_exception(PipelineError(self._broken))
                continue
            try:
                keys = self.sdk.api.StringVector()
                for key in key_list:
                    keys.push_back(key)
                out = self.api.GetProtobuf(stream, 0, keys)
                if out.size() and out[0].errorCode == APP_ERR_COMM_TIMEOUT:
                    # A late result would be taken by the next request: never pair results again.
                    with self._send_lock:
                        self._broken = (f"stream {stream.decode()} stalled (no result in time); later results"
                                        " cannot be matched to requests, reopen the stream")
                    raise PipelineError(self._broken)
                fut.set_result(unpack(out))
            except Exception as exc:  # handed to the caller, who reports it
                fut.set_exception(exc)
            out = None  # the serialized messages (a decoded photograph: tens of MB) go now, not after the next Get

    def _maps(self, message: bytes, b: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        _, data = message_views.tensor_list(self.sdk.pb.MxpiTensorPackageList, message)
        tensors = data[0] if data else []
        if len(tensors) < 2:
            raise PipelineError(f"{self.model}: the model gave {len(tensors)} output(s); a SuperRetina model has"
                                " two, detector (N,1,H,W) and descriptor (N,256,H/8-2,W/8-2)")
        # tensorShape reports a leading 1 (SDK convention): reshape by the known geometry.
        det, desc = (_floats(t) for t in tensors[:2])
        if det.size != b * h * w:
            raise PipelineError(f"{self.model}: detector output has {det.size} values, expected {b}x1x{h}x{w}"
                                " for this input; is it a SuperRetina model?")
        dh, dw = h // 8 - 2, w // 8 - 2
        if desc.size != b * DESCRIPTOR_DIM * dh * dw:
            raise PipelineError(f"{self.model}: descriptor output has {desc.size} values, expected"
                                f" {b}x{DESCRIPTOR_DIM}x{dh}x{dw} for this input; is it a SuperRetina model?")
        return det.reshape(b, h, w), desc.reshape(b, DESCRIPTOR_DIM, dh, dw)

    def _unpack(self, out, n: int, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        if out.size() == 0:
            raise PipelineError(f"inference returned no {self.layout.infer_key.decode()} result "
                                f"(the element failed on model {self.model}; see the runtime's log)")
        if out[0].errorCode != 0:
            raise PipelineError(f"inference failed with MindX error {out[0].errorCode}: "
                                f"{out[0].messageBuf[:200]!r}")
        b, _, h, w = shape
        det, desc = self._maps(out[0].messageBuf, b, h, w)
        return det[:n], desc[:n]

    def _unpack_decoded(self, out, image: bool) -> Decoded:
        d = self.layout.decode
        got = {out[i].messageName: out[i] for i in range(out.size())}
        if any(key not in got for key in (d.infer_key, d.input_key, d.equalised_key, d.fov_key) if key):
            raise PipelineError(f"the decode stream gave no {d.infer_key.decode()} result (the photograph was not"
                                " decoded or enhanced; see the runtime's log)")
        if any(item.errorCode != 0 for item in got.values()):
            code = next(item.errorCode for item in got.values() if item.errorCode)
            raise PipelineError(f"the decode stream failed with MindX error {code}")
        det, desc = self._maps(got[d.infer_key].messageBuf, 1, *d.model_hw)
        equalised = self._vision(got[d.equalised_key].messageBuf, 1)
        photo = self._vision(got[d.decoder_key].messageBuf, 3) if image else None
        fov = self._vision(got[d.fov_key].messageBuf, 1) if d.fov_key else None
        _, data = message_views.tensor_list(self.sdk.pb.MxpiTensorPackageList, got[d.input_key].messageBuf)
        model_input = _floats(data[0][0]).reshape(d.model_hw)
        return Decoded(equalised, det, desc, model_input, photo, fov)

    def _vision(self, message: bytes, channels: int) -> np.ndarray:
        """The first vision of a serialized MxpiVisionList as (H, W) or (H, W, 3) uint8 (alignment cut off)."""
        vl, data = message_views.vision_list(self.sdk.pb.MxpiVisionList, message)
        if not len(vl.visionVec):
            raise PipelineError("the decode stream gave an empty MxpiVisionList")
        info = vl.visionVec[0].visionInfo
        wa, ha = info.widthAligned or info.width, info.heightAligned or info.height
        if channels == 3 and info.format not in (12, 13):
            raise PipelineError(f"the decoder gave pixel format {info.format}; the pictures need packed BGR/RGB"
                                " (mxpi_imagedecoder cvProcessor opencv)")
        pixels = data[0]
        if pixels.size != wa * ha * channels:
            raise PipelineError(f"vision data holds {pixels.size} bytes, expected {wa}x{ha}x{channels}")
        pixels = pixels.reshape((ha, wa, channels) if channels == 3 else (ha, wa))[:info.height, :info.width]
        if channels == 3 and info.format == 12:
            pixels = pixels[:, :, ::-1]
        return np.ascontiguousarray(pixels)

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
            for pending in self._pending.values():
                pending.put(None)
        # Destroy first: it wakes a receiver blocked in GetProtobuf (Ctrl-C used to wait here
        # for the join's full minute when the stream had stalled).
        self.api.DestroyAllStreams()
        for thread in self._receivers:
            thread.join(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
