"""``mxpi_tensorinfer``: model inference with ONNX Runtime, SDK semantics (reference §3.3).

Input: the ``MxpiTensorPackageList`` (or ``MxpiVisionList``) under each ``dataSource`` key,
one key per sink pad. Output: an ``MxpiTensorPackageList`` under the element's name, one
package per input package, one tensor per model output.

SDK behaviour kept:

* input checks: tensor count must equal the model's input count; rank and dims
  ``1..rank-2`` are compared (dynamic dims match anything) but, as in the SDK, a mismatch
  there is only a warning; the byte size must match exactly ("The datasize of concated
  inputTensors[j](X) does not match model inputTensors[j](Y)..."). A failure attaches error
  info, drops the output key and still forwards the buffer. A failed request affects only
  itself: the engines recover (``mxlocal.model_runtime``), and a failed multi-buffer batch is
  rerun buffer by buffer.
* batching: ``singleBatchInfer=1`` feeds each package as it is (batch may be > 1, e.g.
  (2,1,768,768)). With ``singleBatchInfer=0`` and a model whose batch is dynamic or static
  > 1, each package is one sample; samples are batched up to the largest batch, waiting up to
  ``waitingTime`` ms after the last arrival for a full batch (so the default 5000 ms delays a
  lone sample by 5 s, as on Ascend).
* output tensors: ``tensorShape = [1] + dims[outputHasBatchDim:]`` (the leading dim is always
  reported as 1, even when the data holds 2 samples; reshape by the known model shape),
  ``tensorDataType`` from the output dtype, ``memType`` HOST_MALLOC (``outputDeviceId`` -1,
  else DEVICE), ``deviceId`` 0 (or ``outputDeviceId``), headerVec ``{dataSource, memberId}``.
  Dynamic dims (e.g. H/W of an ONNX export) are reported with their real values, as the SDK
  does for dynamic-HW models.

Local differences: the model runs on ONNX Runtime (``.onnx``) or OpenVINO (``.xml`` IR), chosen
by the suffix of ``modelPath`` (``mxlocal.model_runtime``; an ``.om`` path is refused with a clear
message); a dynamic batch dim batches up to ``$MXLOCAL_MAX_BATCH`` (default 8) samples;
``dynamicStrategy``/``deviceId`` are accepted and ignored. On the CPU a package of N samples for
a model whose inputs and outputs share a dynamic batch dim is run one sample at a time, with
identical results and about half the activation memory (``$MXLOCAL_SPLIT_BATCH=0`` runs it whole);
when the engine runs several requests at once (OpenVINO streams, ``$MXLOCAL_INFER_STREAMS``)
the samples run side by side.
"""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mxlocal import MxpiDataType_pb2 as pb
from mxlocal import errors as E
from mxlocal.model_runtime import (TYPE_NAMES, ModelLoadError, ModelTensor, env_int, first_line, open_shared_model,
                                   release_model)
from mxlocal.plugin_base import PluginBase, Prop

log = logging.getLogger("mxlocal")

ENV_MAX_BATCH = "MXLOCAL_MAX_BATCH"
ENV_SPLIT = "MXLOCAL_SPLIT_BATCH"


@dataclass
class InputTensor:
    """A tensor taken from the input metadata: reported shape/type and its bytes."""

    shape: list
    code: int
    data: np.ndarray  # flat uint8 view of the host memory


@dataclass
class Pending:
    """A buffer inside the element, in arrival order (outputs leave in this order)."""

    buffer: object
    packages: int = 0
    results: list = field(default_factory=list)  # per package: list of output arrays or None
    ready: bool = False


class SkipBuffer(Exception):
    """Metadata missing: the SDK forwards the buffer untouched, without error info."""


class TensorInfer(PluginBase):
    factory = "mxpi_tensorinfer"
    properties = {
        "modelPath": Prop("string", "", required=True),
        "outputDeviceId": Prop("int", -1, minimum=-1, maximum=7),
        "waitingTime": Prop("int", 5000, minimum=1, maximum=1000000),
        "dynamicStrategy": Prop("string", "Nearest", choices=("Nearest", "Upper", "Lower")),
        "singleBatchInfer": Prop("uint", 0, maximum=1),
        "outputHasBatchDim": Prop("uint", 1, maximum=1),
        "skipModelCheck": Prop("int", 0, minimum=0, maximum=1),
    }
    sink_pads = None  # one pad per dataSource
    handles_errors = True  # failed buffers must keep their place in the output order

    # ---- setup ---------------------------------------------------------------------------------
    def init(self) -> None:
        self.sources = self.data_sources()
        if len(self.sources) != len(self.context.upstream):
            raise self.config_error(f"dataSource lists {len(self.sources)} key(s) ({','.join(self.sources)})"
                                    f" but {len(self.context.upstream)} element(s) link into it;"
                                    " give one key per input pad")
        path = self._model_path()
        try:
            self.model = open_shared_model(path)  # one engine for every element naming this file
        except ModelLoadError as exc:
            raise self.config_error(str(exc)) from None
        self.inputs, self.outputs = self.model.inputs, self.model.outputs
        self.split_batch = self._can_split_batch()
        batch = self.inputs[0].dims[0] if self.inputs and self.inputs[0].dims else 1
        self.multi_batch = not self.props["singleBatchInfer"] and batch != 1 and bool(self.inputs[0].dims)
        self.static_batch = batch if batch > 0 else None
        self.max_batch = (batch if batch > 0 else env_int(ENV_MAX_BATCH, 8)) if self.multi_batch else 1
        self.waiting_s = self.props["waitingTime"] / 1000.0
        self.order: list[Pending] = []
        self.samples: list = []  # multi-batch queue: (pending, package index, feeds)
        self.last_arrival = 0.0
        self.warned = set()
        self._pool = None   # threads for the samples of a split batch, when the engine runs several at once
        log.info("%s: model %s (%s); inputs %s; outputs %s; %s", self.where(), path, self.model.engine,
                 ", ".join(t.describe() for t in self.inputs), ", ".join(t.describe() for t in self.outputs),
                 f"multi-batch mode, up to {self.max_batch} samples" if self.multi_batch else "single-batch mode")

    def _model_path(self) -> Path:
        text = self.props["modelPath"]
        path = Path(os.path.expanduser(text))
        if not path.is_absolute():
            path = (self.context.base_dir or Path.cwd()) / path
        if path.suffix.lower() == ".om":
            raise self.config_error(
                f"modelPath '{text}' is an Ascend .om model; the local runtime runs .onnx and OpenVINO .xml models"
                " — point modelPath at the .onnx export or run on an Ascend machine with the MindX SDK")
        if not path.is_file():
            raise self.config_error(f"model file not found: {path} (modelPath '{text}')")
        return path

    def _can_split_batch(self) -> bool:
        """Run multi-sample packages one sample at a time (CPU, shared symbolic batch dim only).

        Results are identical (convolutions treat samples independently), and the activations
        of one sample need half the memory of two: 2x768x768 SuperRetina batches peak ~0.5 GB
        lower. Only when every input and output has the same symbolic leading dim (so outputs
        are per-sample too); $MXLOCAL_SPLIT_BATCH=0 turns it off.
        """
        if not env_int(ENV_SPLIT, 1) or not self.model.on_cpu:
            return False
        leads = {t.batch_symbol for t in (*self.inputs, *self.outputs)}
        return len(leads) == 1 and None not in leads

    # ---- processing ----------------------------------------------------------------------------
    def process(self, buffers):
        entry = Pending(buffers[0])
        self.order.append(entry)
        failed = [b for b in buffers if b.has_errors()]
        if failed:  # an upstream error: forward it (SDK CheckMetaData)
            for other in buffers[1:]:
                entry.buffer.errors.update(other.errors)
            entry.ready = True
            return self._drain()
        try:
            packages = self._assemble(buffers)
        except SkipBuffer as missing:
            self._warn_once(f"missing:{missing}", f"no metadata under key '{missing}' (dataSource); the buffer"
                            " goes on without inference, as in the SDK")
            entry.ready = True
            return self._drain()
        except E.MxError as exc:
            self._fail(entry, exc.code, exc.message)
            return self._drain()
        entry.packages = len(packages)
        entry.results = [None] * len(packages)
        if not self.multi_batch:
            for j, feeds in enumerate(packages):
                outputs = self._run(feeds, [entry])
                if outputs is None:
                    return self._drain()
                entry.results[j] = outputs
            self._finish(entry)
            return self._drain()
        self.samples.extend((entry, j, feeds) for j, feeds in enumerate(packages))
        self.last_arrival = time.monotonic()
        while len(self.samples) >= self.max_batch:
            self._run_samples(self.max_batch)
        return self._drain()

    def next_deadline(self):
        return self.last_arrival + self.waiting_s if self.samples else None

    def on_timeout(self):
        while self.samples:  # not enough for a full batch in time: infer what is there
            self._run_samples(self.max_batch)
        return self._drain()

    def deinit(self):
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if getattr(self, "model", None) is not None:
            release_model(self.model)
        self.model = None

    # ---- helpers -------------------------------------------------------------------------------
    def _assemble(self, buffers) -> list:
        """Feeds (list of arrays, one per model input) for every input package."""
        lists = [self._tensor_list(i, buf) for i, buf in enumerate(buffers)]
        n_packages = len(lists[0])
        if any(len(lst) != n_packages for lst in lists):
            raise E.MxError(E.APP_ERR_COMM_FAILURE, "Number of tensorPackages should be same on inputPorts.")
        packages = []
        for j in range(n_packages):
            tensors = [t for lst in lists for t in lst[j]]
            packages.append(self._feeds(tensors))
        return packages

    def _tensor_list(self, port: int, buffer) -> list:
        key = self.sources[port]
        msg = buffer.metadata.get(key)
        if msg is None:
            raise SkipBuffer(key)
        kind = msg.DESCRIPTOR.name
        if kind == "MxpiTensorPackageList":
            packages = [[self._input_tensor(buffer, t.tensorShape, t.tensorDataType, t.tensorDataPtr, t.tensorDataSize)
                         for t in pkg.tensorVec] for pkg in msg.tensorPackageVec]
        elif kind == "MxpiVisionList":
            packages = [[self._vision_tensor(buffer, v)] for v in msg.visionVec]
        else:
            raise E.MxError(E.APP_ERR_PLUGIN_TOOLKIT_METADATA_KEY_NOEXIST,
                            f"Neither MxpiVisionList nor MxpiTensorPackageList is provided from input port({port}).")
        if not packages or not packages[0]:
            raise E.MxError(E.APP_ERR_COMM_INVALID_PARAM,
                            f"Invalid MxpiTensorPackageList is provided from input port({port}).")
        return packages

    def _input_tensor(self, buffer, shape, code, ptr, size) -> InputTensor:
        try:
            data = buffer.read_memory(ptr, size)
        except KeyError as exc:
            raise E.MxError(E.APP_ERR_COMM_INVALID_POINTER, f"input tensor data not readable: {exc}") from None
        return InputTensor(list(shape), int(code), data)

    def _vision_tensor(self, buffer, vision) -> InputTensor:
        info, data = vision.visionInfo, vision.visionData
        h = info.heightAligned or info.height
        w = info.widthAligned or info.width
        shape = [1, h * 3 // 2, w, 1] if info.format in (1, 2) else [1, h, w, 3]
        code = 0 if data.dataType == pb.MXPI_DATA_TYPE_FLOAT32 else 4
        return self._input_tensor(buffer, shape, code, data.dataPtr, data.dataSize)

    def _feeds(self, tensors: list) -> list:
        """Check the tensors of one package against the model; return the arrays to feed."""
        skip_check = self.props["skipModelCheck"] == 1
        if len(tensors) != len(self.inputs):
            raise E.MxError(E.APP_ERR_COMM_FAILURE,
                            "The shape of concated inputTensors does not match model inputTensors."
                            f" ({len(tensors)} tensor(s) sent, the model has {len(self.inputs)} input(s))")
        feeds = []
        for j, (tensor, model) in enumerate(zip(tensors, self.inputs)):
            if not skip_check:
                self._check_shape(j, tensor, model)
            dims = self._resolve_dims(j, tensor, model)
            expected = int(np.prod(dims, dtype=np.int64)) * np.dtype(model.dtype).itemsize
            if tensor.data.nbytes != expected:
                raise E.MxError(E.APP_ERR_COMM_FAILURE,
                                f"The datasize of concated inputTensors[{j}]({tensor.data.nbytes}) does not match"
                                f" model inputTensors[{j}]({expected}). Tensor Dtype: {TYPE_NAMES.get(tensor.code, 'UNDEFINED')},"
                                f" model Dtype: {TYPE_NAMES[model.code]}."
                                f" (tensorShape {tensor.shape}, model input {model.name}{model.dims}"
                                f"{', one sample per package in multi-batch mode' if self.multi_batch else ''})")
            array = tensor.data
            if array.ctypes.data % np.dtype(model.dtype).itemsize:
                array = array.copy()  # numpy/ORT want aligned data
            feeds.append(array.view(model.dtype).reshape(dims))
        return feeds

    def _check_shape(self, j: int, tensor: InputTensor, model: ModelTensor) -> None:
        # SDK CheckTensorShape: a mismatch is logged and inference still runs (bytes decide).
        if len(tensor.shape) != len(model.dims):
            self._warn_once(f"rank{j}", f"The shape of concated inputTensors[{j}] does not match model"
                            f" inputTensors[{j}]: tensorShape {tensor.shape}, model {model.dims}")
            return
        for k in range(1, len(model.dims) - 1):
            if model.dims[k] != -1 and tensor.shape[k] != -1 and model.dims[k] != tensor.shape[k]:
                self._warn_once(f"dims{j}", f"The shape of concat inputTensors[{j}] does not match model"
                                f" inputTensors[{j}]: tensorShape {tensor.shape}, model {model.dims}")
                return

    def _resolve_dims(self, j: int, tensor: InputTensor, model: ModelTensor) -> list:
        """Feed shape: the model dims, dynamic ones taken from ``tensorShape``; batch 1 per sample."""
        dims = list(model.dims)
        if self.multi_batch and dims:
            dims[0] = 1
        for k, d in enumerate(dims):
            if d >= 0:
                continue
            if len(tensor.shape) != len(dims) or tensor.shape[k] <= 0:
                raise E.MxError(E.APP_ERR_COMM_FAILURE,
                                f"inputTensors[{j}] tensorShape {tensor.shape} cannot fill the dynamic dims of model"
                                f" input {model.name}{model.dims}; send a tensorShape of rank {len(dims)}")
            dims[k] = int(tensor.shape[k])
        return dims

    def _run(self, feeds: list, entries: list):
        """The model on one feed set; ``None`` (and error info on ``entries``) on failure."""
        try:
            return self._infer(feeds)
        except Exception as exc:
            first = first_line(exc)
            for entry in entries:
                self._fail(entry, E.APP_ERR_COMM_FAILURE, f"Model inference is failed. {first}")
            return None

    def _infer(self, feeds: list) -> list:
        """The model outputs for one feed set (raises what the engine raises)."""
        n = feeds[0].shape[0] if feeds and feeds[0].ndim else 1
        if self.split_batch and n > 1 and all(f.ndim and f.shape[0] == n for f in feeds):
            samples = [[a[i:i + 1] for a in feeds] for i in range(n)]
            if getattr(self.model, "concurrency", 1) > 1:   # OpenVINO streams: the samples at once
                parts = list(self._sample_pool().map(self.model.run, samples))
            else:
                parts = [self.model.run(sample) for sample in samples]
            return [np.concatenate(outs, axis=0) for outs in zip(*parts)]
        return self.model.run(feeds)

    def _sample_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.model.concurrency, thread_name_prefix=f"mxlocal:{self.name}:sample")
        return self._pool

    def _run_samples(self, limit: int) -> None:
        """Infer up to ``limit`` queued samples of the same shape as one batch."""
        shapes = [f.shape for f in self.samples[0][2]]
        count = 1
        while count < min(limit, len(self.samples)) and [f.shape for f in self.samples[count][2]] == shapes:
            count += 1
        batch, self.samples = self.samples[:count], self.samples[count:]
        live = [s for s in batch if not s[0].ready]  # skip samples of a buffer that already failed
        if not live:
            return
        entries = list({id(s[0]): s[0] for s in live}.values())
        if len(entries) > 1:
            # Samples of several buffers share this batch: if it fails, run each buffer's samples
            # on their own, so that one bad request fails alone (a failed request affects only itself).
            try:
                outputs = self._infer(self._stack(live))
            except Exception:
                for entry in entries:
                    self._store(self._run(self._stack([s for s in live if s[0] is entry]), [entry]),
                                [s for s in live if s[0] is entry])
                return
            self._store(outputs, live)
            return
        self._store(self._run(self._stack(live), entries), live)

    def _stack(self, samples: list) -> list:
        """Feeds of one batch: the samples concatenated along dim 0 (zero-padded to a static batch)."""
        feeds = []
        for i in range(len(self.inputs)):
            stacked = np.concatenate([s[2][i] for s in samples], axis=0)
            if self.static_batch and len(samples) < self.static_batch:  # static batch: pad with zeros
                pad = np.zeros((self.static_batch - len(samples),) + stacked.shape[1:], stacked.dtype)
                stacked = np.concatenate([stacked, pad], axis=0)
            feeds.append(stacked)
        return feeds

    def _store(self, outputs, live: list) -> None:
        """Hand each sample its slice of a batch's outputs (nothing when the batch failed)."""
        if outputs is None:
            return
        for k, (entry, j, _) in enumerate(live):
            if entry.ready:
                continue
            entry.results[j] = [out[k:k + 1] for out in outputs]
            if all(r is not None for r in entry.results):
                self._finish(entry)

    def _finish(self, entry: Pending) -> None:
        """Attach the output MxpiTensorPackageList to the buffer and mark it ready."""
        buffer = entry.buffer
        out_dev = self.props["outputDeviceId"]
        has_batch = self.props["outputHasBatchDim"]
        result = pb.MxpiTensorPackageList()
        for j, outputs in enumerate(entry.results):
            package = result.tensorPackageVec.add()
            for source in self.sources:
                header = package.headerVec.add()
                header.dataSource = source
                header.memberId = j
            for model, array in zip(self.outputs, outputs):
                tensor = package.tensorVec.add()
                tensor.tensorDataPtr, tensor.tensorDataSize = buffer.attach_array(array)
                tensor.deviceId = 0 if out_dev == -1 else out_dev
                tensor.memType = pb.MXPI_MEMORY_HOST_MALLOC if out_dev == -1 else pb.MXPI_MEMORY_DEVICE
                tensor.freeFunc = 0
                tensor.tensorShape.extend([1] + [int(d) for d in array.shape[has_batch:]])
                tensor.tensorDataType = model.code
        buffer.metadata[self.name] = result
        entry.ready = True

    def _fail(self, entry: Pending, code: int, message: str) -> None:
        if not entry.ready:
            log.warning("%s: [%d] %s", self.where(), code, message)
            entry.buffer.add_error(self.name, code, message)
            entry.ready = True

    def _drain(self) -> list:
        out = []
        while self.order and self.order[0].ready:
            out.append(self.order.pop(0).buffer)
        return out

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning("%s: %s", self.where(), message)
