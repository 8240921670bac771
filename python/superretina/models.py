"""The shipped models by name (``--model lowrank|bf16|fp32|...``) and the device their engine runs on (``--device``).

A name stands for a pipeline file in the shipped ``pipeline/`` folder, so that a pip user picks
a model without a path into the package: ``superretina_NAME.pipeline`` is ``NAME``, and the
default ``superretina.pipeline`` is the NAME whose pipeline runs the same model file
(``int8`` today), else named after its model file the same way (``superretina_x_bf16.xml`` →
``x_bf16``). A pipeline file added to the folder is a name at once.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

from .resources import DEFAULT_PIPELINE

DEVICES = ("auto", "cpu", "gpu")   # --device; mxlocal.model_runtime.DEVICES
_PREFIX = "superretina_"
_ENV_LOCK = threading.Lock()


class ModelChoiceError(ValueError):
    """An unknown model name, or a device the runtime cannot give (one line for the user)."""


def _model_file(pipeline: Path) -> str | None:
    from .stream_client import PipelineError, read_layout

    try:
        return Path(read_layout(pipeline).model_path).name
    except PipelineError:
        return None


def _name(pipeline: Path) -> str | None:
    if pipeline.stem.startswith(_PREFIX):
        return pipeline.stem[len(_PREFIX):]
    if pipeline.name == DEFAULT_PIPELINE.name:
        model = Path(_model_file(pipeline) or "").stem
        return model[len(_PREFIX):] if model.startswith(_PREFIX) else None
    return None


def shipped_models(folder: Path | None = None) -> dict[str, Path]:
    """{name: pipeline file} of the shipped pipelines (``folder``: default the package's ``pipeline/``), sorted.

    The default pipeline is listed under its own model's name only when no ``superretina_NAME``
    pipeline runs that model already (the default is then that NAME: ``default_model_name``)."""
    folder = Path(folder or DEFAULT_PIPELINE.parent)
    names = {}
    for path in sorted(folder.glob("*.pipeline")):
        name = _name(path)
        if name and name not in names:
            names[name] = path
    default = folder / DEFAULT_PIPELINE.name
    default_model = _model_file(default)
    if any(path != default and _model_file(path) == default_model for path in names.values()):
        names = {name: path for name, path in names.items() if path != default}
    return names


def default_model_name(folder: Path | None = None) -> str | None:
    """The name ``--model`` gives the default pipeline's model (None if no shipped pipeline runs it)."""
    folder = Path(folder or DEFAULT_PIPELINE.parent)
    default = _model_file(folder / DEFAULT_PIPELINE.name)
    return next((name for name, path in shipped_models(folder).items() if _model_file(path) == default), None)


def choose_pipeline(model: str | None, pipeline: str | Path | None) -> Path | None:
    """The pipeline file of ``--model NAME`` or ``--pipeline FILE`` (None: the default); both is an error."""
    if model is None:
        return None if pipeline is None else Path(pipeline)
    if pipeline is not None:
        raise ModelChoiceError(f"--model {model} and --pipeline {pipeline}: give one of them (a model name stands "
                               "for a shipped pipeline file)")
    names = shipped_models()
    if model not in names:
        raise ModelChoiceError(f"--model: unknown model {model!r}; the shipped ones are {', '.join(names)} "
                               "(or give a pipeline file with --pipeline)")
    return names[model]


def add_model_option(ap) -> None:
    """``--model NAME`` on a command's argparse parser (beside its ``--pipeline``)."""
    ap.add_argument("--model", help="a shipped model by name instead of --pipeline: "
                    + ", ".join(shipped_models()) + f" (default {default_model_name() or 'the default pipeline'})")


def add_device_option(ap) -> None:
    """``--device auto|cpu|gpu`` on a command's argparse parser (checked when the application opens)."""
    ap.add_argument("--device", choices=DEVICES, help="where the local runtime runs the model: gpu (ONNX Runtime "
                    "CUDA, OpenVINO GPU, PyTorch CUDA; one line if there is none), cpu, or auto (default; also "
                    "$MXLOCAL_DEVICE); results record the device the engine reports")


def apply_model_option(args) -> None:
    """Replace ``args.pipeline`` by the pipeline of ``args.model`` (see :func:`choose_pipeline`)."""
    args.pipeline = choose_pipeline(args.model, args.pipeline)


def check_device(device: str | None, model_file: Path, runtime: str, source: str = "--device") -> str:
    """``device`` (default auto) if the runtime and the model's engine can give it, else one clear
    line naming ``source`` (the option, or the environment variable it came from)."""
    device = (device or "auto").strip().lower()
    if device not in DEVICES:
        raise ModelChoiceError(f"{source}: expected one of {', '.join(DEVICES)}, got {device!r}")
    if runtime != "local":
        if device != "auto":
            raise ModelChoiceError(f"{source} {device}: the MindX SDK runs the model on the Ascend device that the "
                                   "pipeline's deviceId names; the device choice applies to the local runtime")
        return device
    if device == "gpu":
        from mxlocal.model_runtime import gpu_missing

        why = gpu_missing(Path(model_file).suffix)
        if why:
            raise ModelChoiceError(f"{source} gpu: no GPU for {Path(model_file).name}: {why}; use cpu or auto")
    return device


@contextmanager
def device_setting(device: str):
    """``$MXLOCAL_DEVICE`` set to ``device`` while the local runtime opens the model (the streams'
    creation), restored afterwards; one opening at a time, since the environment is the process's."""
    from mxlocal.model_runtime import ENV_DEVICE

    with _ENV_LOCK:
        before = os.environ.get(ENV_DEVICE)
        os.environ[ENV_DEVICE] = device
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(ENV_DEVICE, None)
            else:
                os.environ[ENV_DEVICE] = before
