"""Opening the application: configuration, runtime, pipeline and model, with clear errors."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import DEFAULT_PIPELINE, load_config, pipeline_settings
from .provenance import describe
from .registrar import Registrar
from .sdk import load_sdk
from .stream_client import SuperRetinaStream, model_file, read_layout


# How each shipped model is made, for the error when it is missing (e.g. a checkout without
# them). {dir} is the folder the pipeline looks in, so the commands make the file where it is wanted.
MISSING_MODEL_HINTS = {
    "superretina.onnx": (" — the default weights are made by `bash run.sh train` then exported into {dir}"
                         " (see model/README.md)"),
    "superretina_bf16.xml": (" — it is made from {dir}/superretina.onnx (`bash run.sh train`, exported) by "
                             "`python -m superretina.model.to_openvino {dir}/superretina.onnx"
                             " {dir}/superretina_bf16.xml`"
                             " (see model/README.md)"),
    **{f"{name}_bf16.xml": (
        f" — it is made from {{dir}}/{name}.onnx by `python -m superretina.model.to_openvino {{dir}}/{name}.onnx"
        f" {{dir}}/{name}_bf16.xml`; that ONNX is exported from {name}.pth, fitted and distilled from the"
        " weights of `bash run.sh train` (see model/README.md)") for name in ("superretina_lowrank", "superretina_lowrank2")},
    "superretina_lowrank2_int8.xml": (
        " — it is exported from the quantization-aware training state model/checkpoints/qat_int8_state.pt"
        " (the train extra): `mkdir RUN && cp model/checkpoints/qat_int8_state.pt RUN/state.pt &&"
        " python -m superretina.training.qat --out RUN --export {dir}/superretina_lowrank2_int8.xml`"
        " (see model/README.md)"),
}


class AppError(RuntimeError):
    """A problem the user can fix (missing model, bad pipeline): printed as one line."""


@dataclass
class App:
    registrar: Registrar
    stream: SuperRetinaStream
    config: dict
    pipeline: Path
    model: Path
    runtime: str
    provenance: dict   # provenance.describe(): what every result of this app says produced it

    def close(self) -> None:
        self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_app(config=None, pipeline: Path | None = None, runtime: str | None = None, *,
             model: str | None = None, device: str | None = None) -> App:
    """Open the runtime, the pipeline's streams and the model; ``config`` is a YAML path or a mapping of overrides,
    laid over the pipeline's own settings (``config.pipeline_settings``) where it has some.

    ``model``: a shipped model's name instead of ``pipeline`` (:mod:`superretina.models`);
    ``device``: auto, cpu or gpu for the local runtime's engine (None: ``$MXLOCAL_DEVICE``, else auto).
    """
    from .models import ModelChoiceError, check_device, choose_pipeline, device_setting

    try:
        pipeline = Path(choose_pipeline(model, pipeline) or DEFAULT_PIPELINE)
    except ModelChoiceError as exc:
        raise AppError(str(exc)) from None
    settings = pipeline_settings(pipeline)
    cfg = load_config(config, settings)
    if not pipeline.exists():   # a FIFO or a folder: read_layout says what it is
        raise AppError(f"{pipeline}: pipeline file not found")
    layout = read_layout(pipeline)
    model = model_file(pipeline, layout.model_path)
    sdk = load_sdk(runtime)
    if not model.is_file():
        hint = MISSING_MODEL_HINTS.get(model.name, "").format(dir=model.parent)
        if not Path(layout.model_path).expanduser().is_absolute():
            hint += f" (a relative modelPath is resolved against the pipeline file's folder {pipeline.resolve().parent})"
        raise AppError(f"{pipeline}: modelPath {layout.model_path} → {model} does not exist{hint}")
    if sdk.name == "local" and model.suffix.lower() == ".om":
        raise AppError(f"{pipeline}: {model.name} is an Ascend .om model; the local runtime runs .onnx, .xml and .pt models — "
                       "use pipeline/superretina.pipeline or run on an Ascend machine with the MindX SDK")
    from mxlocal.model_runtime import ENV_DEVICE

    try:   # a device that cannot be had is one line here, not a failed stream creation
        if device is not None:
            device = check_device(device, model, sdk.name)
        elif sdk.name == "local" and os.environ.get(ENV_DEVICE, "").strip():
            check_device(os.environ[ENV_DEVICE], model, sdk.name, f"${ENV_DEVICE}")
    except ModelChoiceError as exc:
        raise AppError(str(exc)) from None
    if device is None:
        stream = SuperRetinaStream(pipeline, sdk)
    else:
        with device_setting(device):
            stream = SuperRetinaStream(pipeline, sdk)
    return App(Registrar(stream, cfg), stream, cfg, pipeline, model, sdk.name,
               describe(model, pipeline, sdk.name, cfg, stream.engine_report(), settings))
