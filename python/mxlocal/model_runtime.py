"""The engines behind ``mxpi_tensorinfer``: a model file in, ``run(feeds) -> outputs`` out.

The suffix of ``modelPath`` picks the engine, the way the SDK's element takes an ``.om``:

* ``.onnx`` — ONNX Runtime, CUDAExecutionProvider first when the installed build offers it,
  else the CPU provider; computes in the model's own precision (fp32, or int8 for a QDQ model).
* ``.pt`` — a TorchScript module on PyTorch: the first CUDA GPU when PyTorch sees one
  (``$MXLOCAL_TORCH_DEVICE`` picks, e.g. ``cpu``), else the CPU; float32 (TF32 off). Its inputs
  and outputs come from the extra file ``mxlocal.json`` the exporter writes
  (``superretina.model.export ... OUT.pt``), since TorchScript does not record them.
* ``.xml`` (with its ``.bin``) — OpenVINO IR on the CPU. The inference precision is the one the
  model carries in its rt_info under ``runtime_options/INFERENCE_PRECISION_HINT`` (written by
  ``superretina.model.to_openvino``), else ``f32``: the CPU plugin would otherwise pick bf16
  by itself on CPUs that have it, and a model file should compute what it says. ``bf16`` runs
  on AMX / AVX-512 BF16 hardware; where the CPU has neither it falls back to f32 with a warning.

``$MXLOCAL_DEVICE`` (``cpu``, ``gpu`` or ``auto``, the default; the application's ``--device``)
picks the device: ``cpu`` keeps every engine on the CPU, ``gpu`` asks for ONNX Runtime's CUDA
provider, OpenVINO's GPU plugin or PyTorch's CUDA device and fails with one line naming what is
missing, ``auto`` is what is described above (OpenVINO stays on the CPU: the shipped bf16 model
is made for CPU instructions). :func:`gpu_missing` says, before anything is loaded, why a GPU
cannot be had; once loaded, each engine's ``report()`` says where it runs, asked of the engine
itself (ONNX Runtime's session providers, OpenVINO's compiled ``EXECUTION_DEVICES``, the device of
the TorchScript module's weights), so that results record what ran rather than what was asked.

The CPU engines use one compute thread per physical core (``$MXLOCAL_INFER_THREADS`` overrides)
and hand back arrays the caller owns. OpenVINO runs one request at a time on all of them (its
LATENCY hint) unless ``$MXLOCAL_INFER_STREAMS`` asks for N > 1 streams (its THROUGHPUT hint, the
threads split between the streams): then N requests run at once, one per stream, and callers
from several threads (the elements of two streams, the samples of a split batch) no longer
queue behind each other. Each request's outputs are the same either way
(``tests/test_inflight.py``), so ``report()`` leaves the mode out, as it does the thread count.

Every engine keeps one guarantee: a failed ``run`` affects only itself. After an exception the
engine is put back in the state it had before (OpenVINO: the compiled model is rebuilt, since a
failed shape leaves the CPU plugin unable to run the previous good shape again), and the
exception is re-raised for the caller to report.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import queue
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mxlocal.cpu import physical_cores

log = logging.getLogger("mxlocal")

ENV_THREADS = "MXLOCAL_INFER_THREADS"
ENV_STREAMS = "MXLOCAL_INFER_STREAMS"
ENV_SPIN = "MXLOCAL_ORT_SPIN"
ENV_TORCH_DEVICE = "MXLOCAL_TORCH_DEVICE"
ENV_DEVICE = "MXLOCAL_DEVICE"
DEVICES = ("auto", "cpu", "gpu")
ENV_SHARE = "MXLOCAL_SHARE_MODELS"
ENV_STATIC = "MXLOCAL_STATIC_SHAPES"
MAX_SHAPES_TRIED = 8   # input shapes an OpenVINO engine tries to compile static (failures included)
PRECISION_KEY = ["runtime_options", "INFERENCE_PRECISION_HINT"]

# numpy dtype -> MxBase::TensorDataType code
DTYPE_CODES = {
    np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int8): 2, np.dtype(np.int32): 3,
    np.dtype(np.uint8): 4, np.dtype(np.int16): 6, np.dtype(np.uint16): 7, np.dtype(np.uint32): 8,
    np.dtype(np.int64): 9, np.dtype(np.uint64): 10, np.dtype(np.float64): 11, np.dtype(np.bool_): 12,
}
TYPE_NAMES = {-1: "UNDEFINED", 0: "FLOAT32", 1: "FLOAT16", 2: "INT8", 3: "INT32", 4: "UINT8", 6: "INT16",
              7: "UINT16", 8: "UINT32", 9: "INT64", 10: "UINT64", 11: "DOUBLE64", 12: "BOOL"}
# ONNX Runtime's type strings
_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8, "tensor(int16)": np.int16, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32,
    "tensor(int64)": np.int64, "tensor(uint64)": np.uint64, "tensor(double)": np.float64, "tensor(bool)": np.bool_,
}


class ModelLoadError(Exception):
    """The model file cannot be opened or described; the message names the file."""


@dataclass
class ModelTensor:
    """One model input/output: name, numpy dtype, type code, dims (-1 = dynamic)."""

    name: str
    dtype: type
    code: int
    dims: list
    batch_symbol: str | None = None  # name of a dynamic leading dim (samples independent along it)

    def describe(self) -> str:
        return f"{self.name}{self.dims} {TYPE_NAMES[self.code]}"


def _tensor(name: str, dtype, dims: list, path: Path, batch_symbol: str | None = None) -> ModelTensor:
    dtype = np.dtype(dtype)
    if dtype not in DTYPE_CODES:
        raise ModelLoadError(f"{path}: model tensor '{name}' has type {dtype}, which MxpiTensor cannot carry")
    return ModelTensor(name, dtype.type, DTYPE_CODES[dtype], dims, batch_symbol)


def env_int(name: str, default: int) -> int:
    """An integer environment setting; ``default`` when unset or not an integer (with a warning)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        log.warning("$%s=%r is not an integer; using %d", name, text, default)
        return default


def inference_threads() -> int:
    """Compute threads of a CPU engine: ``$MXLOCAL_INFER_THREADS`` if positive, else one per physical core."""
    threads = env_int(ENV_THREADS, 0)
    return threads if threads > 0 else physical_cores()


def inference_streams() -> int:
    """OpenVINO CPU streams (requests run at once): ``$MXLOCAL_INFER_STREAMS`` if positive, else 1,
    never more than the compute threads (a stream needs one)."""
    return max(1, min(env_int(ENV_STREAMS, 1), inference_threads()))


def first_line(exc: Exception) -> str:
    """The message of an engine exception, without OpenVINO's "Exception from file:line" lines."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Exception from ")] or lines
    return lines[0] if lines else type(exc).__name__


def requested_device() -> str:
    """``$MXLOCAL_DEVICE`` (auto, cpu or gpu); auto when unset, a :class:`ModelLoadError` when invalid."""
    device = os.environ.get(ENV_DEVICE, "").strip().lower() or "auto"
    if device not in DEVICES:
        raise ModelLoadError(f"${ENV_DEVICE}={device!r}: expected one of {', '.join(DEVICES)}")
    return device


def gpu_missing(suffix: str) -> str | None:
    """Why the engine of a ``suffix`` model (.onnx, .xml, .pt) has no GPU here, or None when it has one."""
    suffix = suffix.lower()
    try:
        if suffix == ".onnx":
            import onnxruntime as ort

            providers = ort.get_available_providers()
            if "CUDAExecutionProvider" not in providers:
                return (f"ONNX Runtime {ort.__version__} here has no CUDA provider (it offers {', '.join(providers)});"
                        " install onnxruntime-gpu on a machine with an NVIDIA GPU and CUDA")
        elif suffix == ".xml":
            import openvino as ov

            devices = ov.Core().available_devices
            if not any(d.startswith("GPU") for d in devices):
                return (f"OpenVINO sees no GPU here (devices: {', '.join(devices)}); its GPU plugin needs an Intel"
                        " GPU and its driver")
        elif suffix == ".pt":
            import torch

            if not torch.cuda.is_available():
                return f"PyTorch {torch.__version__} sees no CUDA GPU here"
        else:
            return f"the local runtime runs {suffix or 'such'} models on no GPU"
    except ImportError as exc:
        return f"the engine for {suffix} models is not installed ({exc})"
    return None


def _engine_module(name: str, path: Path, needs: str):
    """Import an optional engine (only streams with such a model need it), or say what is missing."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ModelLoadError(f"{path}: {needs}, or point modelPath at the .onnx model") from None


class OnnxRuntimeModel:
    """An ``.onnx`` file in an ONNX Runtime session (tuning: see :func:`ort_session_options`)."""

    def __init__(self, path: Path):
        import onnxruntime as ort  # imported here: only streams with a model need it

        device = requested_device()
        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        elif device == "gpu":
            raise ModelLoadError(f"{path}: no GPU: {gpu_missing('.onnx')}")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=ort_session_options(ort), providers=providers)
        except Exception as exc:
            raise ModelLoadError(f"cannot load ONNX model {path}: {first_line(exc)}") from None
        self.inputs = [self._tensor(a, path) for a in self.session.get_inputs()]
        self.outputs = [self._tensor(a, path) for a in self.session.get_outputs()]
        self.on_cpu = self.session.get_providers()[0] == "CPUExecutionProvider"
        self.engine = f"onnxruntime {ort.__version__} {','.join(self.session.get_providers())}"
        self._version = ort.__version__

    def report(self) -> dict:
        """Where the session runs: its providers as ONNX Runtime lists them (the first one preferred)."""
        providers = list(self.session.get_providers())
        return engine_report("onnxruntime", self._version, providers)

    @staticmethod
    def _tensor(arg, path: Path) -> ModelTensor:
        if arg.type not in _ORT_DTYPES:
            raise ModelLoadError(f"{path}: model tensor '{arg.name}' has type {arg.type}, which MxpiTensor cannot carry")
        shape = arg.shape or []
        dims = [d if isinstance(d, int) and d >= 0 else -1 for d in shape]
        symbol = shape[0] if shape and isinstance(shape[0], str) else None
        return _tensor(arg.name, _ORT_DTYPES[arg.type], dims, path, symbol)

    def run(self, feeds: list) -> list:
        return self.session.run(None, {m.name: a for m, a in zip(self.inputs, feeds)})


class OpenVinoModel:
    """An OpenVINO IR (``.xml`` + ``.bin``) compiled for the CPU, in the precision it carries."""

    def __init__(self, path: Path):
        ov = _engine_module("openvino", path, "OpenVINO IR models need the 'openvino' package (pip install openvino)")
        core = ov.Core()
        self.device = "GPU" if requested_device() == "gpu" else "CPU"
        if self.device == "GPU" and gpu_missing(".xml"):
            raise ModelLoadError(f"{path}: no GPU: {gpu_missing('.xml')}")
        try:
            model = core.read_model(str(path))
        except Exception as exc:
            raise ModelLoadError(f"cannot load OpenVINO model {path}: {first_line(exc)}") from None
        self.precision = model_precision(model)
        # A quantized IR (FakeQuantize nodes, e.g. superretina.training.qat's): the CPU runs those
        # layers in int8 and the rest in the precision above; the report says both.
        self.int8 = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
        if self.device == "GPU" and self.precision == "bf16":
            self.precision = "f32"   # the GPU plugin computes f16 or f32; f32 keeps the model's accuracy
        elif self.precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            log.warning("%s: this CPU has no bf16 instructions; running the model in f32", path.name)
            self.precision = "f32"
        self._core, self._model, self._path = core, model, path
        # LATENCY: one request at a time on every core; THROUGHPUT: N streams of threads/N cores,
        # N requests at once (for several images in flight; the device's own choice on a GPU).
        self.streams = inference_streams() if self.device == "CPU" else 1
        hint = "THROUGHPUT" if self.streams > 1 else "LATENCY"
        self._config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": hint,
                        "NUM_STREAMS": self.streams}
        if self.device == "CPU":
            self._config["INFERENCE_NUM_THREADS"] = inference_threads()
        self.concurrency = self.streams   # runs that may be in flight at once (SharedModel reads it)
        self._idle: queue.SimpleQueue = queue.SimpleQueue()   # infer requests not running
        self._recompile_lock = threading.Lock()
        self._compile()
        # input shapes -> idle requests of the model compiled for exactly them (None: that failed)
        dynamic = any(not p.get_partial_shape().is_static for p in self.compiled.inputs)
        self._static_budget = max(0, env_int(ENV_STATIC, 1)) if dynamic and self.device == "CPU" else 0
        self._static: dict = {}
        self._static_lock = threading.Lock()
        self.inputs = [self._tensor(p, path) for p in self.compiled.inputs]
        self.outputs = [self._tensor(p, path) for p in self.compiled.outputs]
        self.on_cpu = self.device == "CPU"
        self.engine = f"openvino {ov.__version__.split('-')[0]} {self.device} {'int8+' if self.int8 else ''}{self.precision}"
        self._version = ov.__version__.split('-')[0]

    def report(self) -> dict:
        """Where the compiled model runs (its ``EXECUTION_DEVICES``) and the precision it computes in."""
        devices = [str(d) for d in self.compiled.get_property("EXECUTION_DEVICES")]
        precision = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        precision = precision.get_type_name() if hasattr(precision, "get_type_name") else str(precision)
        # Not the streams: outputs are bit-identical in either mode, so rows made either way
        # share their setup key (like the thread count, a matter of speed only).
        return {**engine_report("openvino", self._version, devices), "precision": precision,
                **({"quantized": "int8"} if self.int8 else {})}

    @staticmethod
    def _tensor(port, path: Path) -> ModelTensor:
        shape = port.get_partial_shape()
        dims = [d.get_length() if d.is_static else -1 for d in shape] if shape.rank.is_static else []
        # IR dynamic dims carry no names: a dynamic leading dim is taken as the shared batch dim.
        symbol = "?" if dims and dims[0] == -1 else None
        return _tensor(port.any_name, port.get_element_type().to_dtype(), dims, path, symbol)

    def _compile(self) -> None:
        try:
            self.compiled = self._core.compile_model(self._model, self.device, self._config)
        except Exception as exc:
            raise ModelLoadError(f"cannot compile OpenVINO model {self._path}: {first_line(exc)}") from None
        for _ in range(self.streams):
            self._idle.put(self.compiled.create_infer_request())

    def _static_requests(self, feeds: list) -> queue.SimpleQueue | None:
        """The idle requests of the model compiled for these feeds' shapes, compiled on first use
        while the budget lasts; None: run them on the dynamic model."""
        key = tuple(tuple(np.shape(a)) for a in feeds)
        with self._static_lock:
            if key in self._static or len(self._static) >= MAX_SHAPES_TRIED or \
                    sum(v is not None for v in self._static.values()) >= self._static_budget:
                return self._static.get(key)
            idle = None
            try:
                model = self._model.clone()
                model.reshape({model.input(i): list(shape) for i, shape in enumerate(key)})
                compiled = self._core.compile_model(model, self.device, self._config)
                idle = queue.SimpleQueue()
                for _ in range(self.streams):
                    idle.put(compiled.create_infer_request())
            except Exception as exc:   # e.g. a shape the network cannot take: the dynamic model says why
                log.debug("%s: no static model for input shapes %s (%s)", self._path.name, key, first_line(exc))
            self._static[key] = idle
            return idle

    def _infer(self, request, feeds: list) -> list:
        request.infer({i: np.ascontiguousarray(a) for i, a in enumerate(feeds)})
        # The request reuses its output memory on the next call: hand back copies.
        return [request.get_output_tensor(i).data.copy() for i in range(len(self.outputs))]

    def run(self, feeds: list) -> list:
        if self._static_budget:
            idle = self._static_requests(feeds)
            if idle is not None:
                request = idle.get()   # waits while every stream is busy
                try:
                    return self._infer(request, feeds)
                finally:
                    idle.put(request)
        request = self._idle.get()   # waits while every stream is busy
        try:
            outputs = self._infer(request, feeds)
        except Exception:
            self._idle.put(request)
            # A shape the network cannot take (e.g. 100x100) leaves the CPU plugin's compiled graph
            # unable to run the last good shape again until another shape succeeds (OpenVINO
            # 2026.4; a new infer request does not help). Recompile (~0.3 s, failures only) so
            # that the failure affects this request alone.
            log.warning("%s: inference failed; recompiling the model so later requests are unaffected",
                        self._path.name)
            with self._recompile_lock:   # every request back first (the others' runs finish)
                old = [self._idle.get() for _ in range(self.streams)]
                try:
                    self._compile()
                except ModelLoadError:   # no new requests: keep the old ones rather than none
                    for req in old:
                        self._idle.put(req)
                    raise
            raise
        self._idle.put(request)
        return outputs


class TorchScriptModel:
    """A TorchScript module (``.pt``) on PyTorch, on the GPU when there is one."""

    def __init__(self, path: Path):
        torch = _engine_module("torch", path, "TorchScript models need PyTorch (pip install torch)")
        wanted = requested_device()
        if wanted == "gpu" and not torch.cuda.is_available():
            raise ModelLoadError(f"{path}: no GPU: {gpu_missing('.pt')}")
        device = {"cpu": "cpu", "gpu": "cuda"}.get(wanted) or os.environ.get(ENV_TORCH_DEVICE, "").strip() \
            or ("cuda" if torch.cuda.is_available() else "cpu")
        extra = {"mxlocal.json": ""}
        try:
            self.device = torch.device(device)
            with warnings.catch_warnings():  # PyTorch marks TorchScript deprecated; it still loads
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(str(path), map_location=self.device, _extra_files=extra).eval()
            io = json.loads(extra["mxlocal.json"])
            self.inputs = [_tensor(t["name"], t["dtype"], list(t["dims"]), path, _lead(t)) for t in io["inputs"]]
            self.outputs = [_tensor(t["name"], t["dtype"], list(t["dims"]), path, _lead(t)) for t in io["outputs"]]
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"cannot load TorchScript model {path} on {device}: {first_line(exc)}"
                                 " (a .pt from 'superretina.model.export CKPT OUT.pt' carries its inputs and"
                                 " outputs in mxlocal.json)") from None
        # Float32 as exported: no TF32 rounding in cuDNN convolutions.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        if self.device.type == "cpu":
            torch.set_num_threads(inference_threads())
        self.torch = torch
        self.on_cpu = self.device.type == "cpu"
        card = f" ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda" else ""
        self.engine = f"torch {torch.__version__} {self.device}{card}"

    def report(self) -> dict:
        """The device the module's weights are on (that of ``map_location`` for a module without any)."""
        weights = next(iter(self.module.parameters()), None)
        if weights is None:
            weights = next(iter(self.module.buffers()), None)
        device = weights.device if weights is not None else self.device
        return engine_report("torch", self.torch.__version__, [str(device)])

    def run(self, feeds: list) -> list:
        torch = self.torch
        with torch.inference_mode():
            # The feeds are read-only views of the buffer's memory: torch wants its own copy.
            inputs = [torch.from_numpy(np.array(a, copy=True)).to(self.device) for a in feeds]
            outputs = self.module(*inputs)
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return [o.detach().cpu().numpy() for o in outputs]


def engine_report(name: str, version: str, providers: list) -> dict:
    """An engine's ``report()``: ``device`` ("gpu" when the first provider is a CUDA/GPU one, else
    "cpu"), the engine's ``name``, ``version`` and ``providers`` (its own names, preferred first)."""
    first = str(providers[0]).lower() if providers else "cpu"
    # ONNX Runtime: CUDA/TensorRT/ROCm/DirectML providers; OpenVINO: GPU, GPU.0; PyTorch: cuda:0.
    gpu = first.startswith(("cuda", "tensorrt", "rocm", "dml", "gpu"))
    return {"device": "gpu" if gpu else "cpu", "name": name, "version": version, "providers": list(providers)}


def _lead(spec: dict) -> str | None:
    dims = spec.get("dims") or []
    return "batch" if dims and dims[0] == -1 else None


def model_precision(model) -> str:
    """The inference precision an OpenVINO model carries in its rt_info (``f32`` if none)."""
    if model.has_rt_info(PRECISION_KEY):
        return model.get_rt_info(PRECISION_KEY).astype(str).strip().lower()
    return "f32"


ENGINES = {".onnx": OnnxRuntimeModel, ".xml": OpenVinoModel, ".pt": TorchScriptModel}


def open_model(path: Path):
    """The engine for ``path`` by its suffix; :class:`ModelLoadError` if none fits or it fails."""
    engine = ENGINES.get(path.suffix.lower())
    if engine is None:
        raise ModelLoadError(f"{path}: unknown model format '{path.suffix}'; the local runtime runs .onnx"
                             " (ONNX Runtime), .xml (OpenVINO IR) and .pt (TorchScript) models")
    return engine(path)


class SharedModel:
    """One engine behind every ``mxpi_tensorinfer`` of a process that names the same model file.

    A pipeline with a decode stream and a tensor stream has two such elements; each would compile
    its own copy (an OpenVINO bf16 SuperRetina at 768x768 holds a few hundred MB of activations),
    and the two would run at once on the same cores. Shared, they load it once and take turns
    (one ``run`` at a time, or as many as the engine's ``concurrency``: OpenVINO's streams);
    outputs are the same as with a private engine. Attributes of the engine (``inputs``,
    ``outputs``, ``engine``, ``on_cpu``, ``concurrency``) are read through.
    """

    def __init__(self, key: tuple, model):
        self.key, self.model = key, model
        self.users = 0
        self._run_slots = threading.BoundedSemaphore(getattr(model, "concurrency", 1))

    def run(self, feeds: list) -> list:
        with self._run_slots:
            return self.model.run(feeds)

    def __getattr__(self, name):
        return getattr(self.model, name)


_SHARED: dict = {}
_SHARED_LOCK = threading.Lock()


def open_shared_model(path: Path):
    """:func:`open_model`, shared by file (resolved path, size, mtime) within the process;
    ``$MXLOCAL_SHARE_MODELS=0`` gives every caller its own engine. Pair with :func:`release_model`."""
    if not env_int(ENV_SHARE, 1):
        return open_model(path)
    st = path.stat()
    # streams in the key: an engine compiled for latency is not shared with one asked for throughput
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, inference_streams())
    with _SHARED_LOCK:  # held while loading: a second element waits for the first's engine
        shared = _SHARED.get(key)
        if shared is None:
            shared = _SHARED[key] = SharedModel(key, open_model(path))
        shared.users += 1
        return shared


def release_model(model) -> None:
    """Drop one user of a model from :func:`open_shared_model` (the last one frees the engine)."""
    if isinstance(model, SharedModel):
        with _SHARED_LOCK:
            model.users -= 1
            if model.users <= 0 and _SHARED.get(model.key) is model:
                del _SHARED[model.key]


def ort_session_options(ort):
    """ONNX Runtime session options for CPU inference next to the application's own work."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # All graph rewrites, including the NCHWc layout and QDQ → QLinearConv fusions (int8 variants).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One compute thread per physical core: hyper-thread siblings share the vector units.
    options.intra_op_num_threads = inference_threads()
    # Idle compute threads block instead of spinning, so that the caller's post-processing (and
    # other pairs in flight) get the cores between and after runs ($MXLOCAL_ORT_SPIN=1: spin).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if env_int(ENV_SPIN, 0) else "0")
    # No memory pattern: ONNX Runtime caches one pre-planned block per input shape, and the
    # driver feeds two shapes (pair batch, matching-trick single image): +0.6 GB peak for
    # SuperRetina at 768x768, no speed gain measured. The arena still reuses freed blocks.
    options.enable_mem_pattern = False
    return options
