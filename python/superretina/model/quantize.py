"""Faster inference variants of a SuperRetina ONNX export: int8 static quantization (and fp16).

    python -m superretina.model.quantize IN.onnx OUT.onnx --calib-dir ../shared/data/fundus
    python -m superretina.model.quantize IN.onnx OUT.onnx --precision fp16

int8 (default): ONNX Runtime static quantization, QDQ format, per-channel symmetric int8
weights, uint8 activations (the u8s8 pair MLAS runs with AVX512-VNNI / AMX on x86), activation
ranges calibrated on enhanced fundus photographs of the *training* split of ``--calib-dir``
(``superretina.data_split``; the held-out images stay unseen for the accuracy check),
prepared exactly as at inference (enhance → 768x768 model input). By default the layers whose
8-bit output would hurt registration stay float32:

* ``conv_last`` + ``Sigmoid`` (the detector map): an 8-bit detector map has flat plateaus that
  simple NMS keeps in full, and a 1/255 step next to the 0.01 threshold;
* the descriptor normalisation and ``trans_conv``: descriptors are matched by L2 distance with
  a 0.9 ratio test, an 8-bit output would quantise those distances.

The network input is quantized with scale 1/255 and zero point 0 (not calibrated): model inputs
are whole grey levels divided by 255 (``enhance.to_model_input``), so this step is exact.

The variant has the same input and outputs as the export (``input`` (N,1,H,W) float32,
``detector``, ``descriptor`` float32), so a pipeline runs it by pointing ``modelPath`` at it.
Its settings are written into the model's metadata (``superretina.quantization``).

fp16 converts weights and activations to float16 with float32 inputs/outputs; on x86 CPUs ONNX
Runtime has no fp16 convolution kernels worth having (measured: no faster than fp32), so it is
only useful for GPU providers. ONNX Runtime's CPU provider has no bfloat16 convolutions at all.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_CALIB_COUNT = 16
DEFAULT_FRAME = 768
# Node-name prefixes kept in float32 by default (see the module docstring). Names are those of
# torch.onnx.export of superretina.model.network (pth2onnx).
KEEP_FP32_DEFAULT = ("/conv_last/", "/Sigmoid", "/ReduceL2", "/Clip", "/Expand", "/Div", "/Shape",
                     "/trans_conv/")
METADATA_KEY = "superretina.quantization"


class QuantizeError(RuntimeError):
    """A problem the user can fix (missing calibration images, unreadable model)."""


# --------------------------------------------------------------------------- calibration data
def calibration_images(calib_dir: Path, count: int = DEFAULT_CALIB_COUNT) -> list[Path]:
    """``count`` training-split photographs of ``calib_dir``, spread evenly over the sorted list.

    The held-out images (``data_split.HELD_OUT``) are never used, so the accuracy check on
    a synthetic set made from them is not calibrated on its own images.
    """
    from superretina.data_split import split

    calib_dir = Path(calib_dir)
    if not calib_dir.is_dir():
        raise QuantizeError(f"{calib_dir}: calibration folder not found")
    train, _ = split(calib_dir)
    if not train:
        raise QuantizeError(f"{calib_dir}: no training-split photographs (png/jpg/tif) in this folder")
    count = max(1, min(int(count), len(train)))
    picks = np.linspace(0, len(train) - 1, count).round().astype(int)
    return [train[i] for i in sorted(set(picks.tolist()))]


def model_input(path: Path, frame: int = DEFAULT_FRAME) -> np.ndarray:
    """(1, 1, frame, frame) float32 model input of a photograph, prepared as at inference."""
    from superretina import enhance
    from superretina.image_io import read_image

    return enhance.model_input(enhance.equalise(read_image(path)), (frame, frame))[None, None]


class _Reader:
    """onnxruntime.quantization CalibrationDataReader over photographs (one image per batch)."""

    def __init__(self, paths: list[Path], input_name: str, frame: int):
        self.paths, self.input_name, self.frame = list(paths), input_name, frame
        self._it = iter(self.paths)

    def get_next(self):
        path = next(self._it, None)
        return None if path is None else {self.input_name: model_input(path, self.frame)}

    def rewind(self):
        self._it = iter(self.paths)


# --------------------------------------------------------------------------- variants
def _node_names(model) -> list[str]:
    return [n.name for n in model.graph.node]


def _excluded(names: list[str], prefixes) -> list[str]:
    return [n for n in names if any(n.startswith(p) for p in prefixes)]


def quantize_int8(src: Path, dst: Path, calib_dir: Path, count: int = DEFAULT_CALIB_COUNT,
                  frame: int = DEFAULT_FRAME, quant_format: str = "qdq", per_channel: bool = True,
                  activation: str = "u8", method: str = "minmax", keep_fp32=KEEP_FP32_DEFAULT,
                  log=print) -> dict:
    """Write an int8 statically quantized copy of ``src`` to ``dst``; returns its settings.

    Parameters
    ----------
    src, dst : Path
        Float32 ONNX export (dynamic or static shape) and the output path.
    calib_dir : Path
        Folder of fundus photographs laid out like ../shared/data/fundus.
    count : int
        Calibration photographs (training split), one 1xframexframe batch each.
    quant_format : {"qdq", "qoperator"}
    per_channel : bool
        Per-output-channel weight scales (recommended for convolutions).
    activation : {"u8", "s8"}
        Activation type; weights are always signed int8.
    method : {"minmax", "percentile", "entropy"}
        Activation range calibration.
    keep_fp32 : sequence of str
        Node-name prefixes left in float32.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    formats = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if quant_format not in formats:
        raise QuantizeError(f"--format must be one of {', '.join(formats)}, got {quant_format!r}")
    if method not in methods:
        raise QuantizeError(f"--method must be one of {', '.join(methods)}, got {method!r}")
    if activation not in ("u8", "s8"):
        raise QuantizeError(f"--activation must be u8 or s8, got {activation!r}")
    src, dst = Path(src), Path(dst)
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise QuantizeError(f"{src}: not a readable ONNX model ({exc})") from None
    input_name = model.graph.input[0].name
    paths = calibration_images(calib_dir, count)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Shape inference + graph clean-up, as ONNX Runtime recommends before quantizing.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        exclude = _excluded(_node_names(onnx.load(str(pre))), keep_fp32)
        extra = {"max_intermediate_outputs": 2}  # bounded memory: ranges merged every 2 images
        if activation == "u8":  # inputs are k/255, k = 0..255: this scale represents them exactly
            extra["TensorQuantOverrides"] = {input_name: [{"scale": np.array(1 / 255, np.float32), "zero_point": np.array(0, np.uint8)}]}
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        dst.parent.mkdir(parents=True, exist_ok=True)
        quantize_static(str(pre), str(dst), _Reader(paths, input_name, frame),
                        quant_format=formats[quant_format], per_channel=per_channel,
                        activation_type=QuantType.QUInt8 if activation == "u8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                        calibrate_method=methods[method], extra_options=extra)
    settings = {"precision": "int8", "format": quant_format, "per_channel": per_channel,
                "activation": activation, "weights": "s8", "method": method, "frame": frame,
                "calibration": [p.name for p in paths], "kept_fp32": exclude,
                "input_scale": "1/255 exact" if activation == "u8" else "calibrated", "source": src.name,
                "seconds": round(time.perf_counter() - t0, 1)}
    _write_metadata(dst, settings)
    log(f"quantized {src.name} → {dst} ({len(paths)} calibration images, {len(exclude)} nodes kept fp32, "
        f"{settings['seconds']} s)")
    return settings


def convert_fp16(src: Path, dst: Path, log=print) -> dict:
    """float16 weights/activations with float32 input and outputs (for GPU providers)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    onnx.save(convert_float_to_float16(model, keep_io_types=True), str(dst))
    settings = {"precision": "fp16", "source": Path(src).name}
    _write_metadata(dst, settings)
    log(f"converted {Path(src).name} → {dst} (float16, float32 input/outputs)")
    return settings


def _write_metadata(path: Path, settings: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(settings))
    onnx.save(model, str(path))


def read_settings(path: Path) -> dict | None:
    """The ``superretina.quantization`` metadata of a variant (None for a plain export)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return None


# --------------------------------------------------------------------------- command line
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m superretina.model.quantize", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="float32 ONNX export (pth2onnx)")
    ap.add_argument("dst", type=Path, help="output .onnx (keep variants out of model/ until chosen)")
    ap.add_argument("--precision", choices=("int8", "fp16"), default="int8", help="variant (default int8)")
    ap.add_argument("--calib-dir", type=Path, help="fundus photographs (training split used), needed for int8")
    ap.add_argument("--calib-count", type=int, default=DEFAULT_CALIB_COUNT,
                    help=f"calibration photographs (default {DEFAULT_CALIB_COUNT})")
    ap.add_argument("--frame", type=int, default=DEFAULT_FRAME, help="model input side (default 768)")
    ap.add_argument("--format", dest="quant_format", choices=("qdq", "qoperator"), default="qdq",
                    help="quantized graph format (default qdq)")
    ap.add_argument("--no-per-channel", action="store_true", help="one weight scale per tensor")
    ap.add_argument("--activation", choices=("u8", "s8"), default="u8", help="activation type (default u8)")
    ap.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax",
                    help="activation range calibration (default minmax)")
    ap.add_argument("--keep-fp32", nargs="*", metavar="PREFIX",
                    help="node-name prefixes kept float32 (default: " + " ".join(KEEP_FP32_DEFAULT)
                    + "); give none to quantize everything")
    args = ap.parse_args(argv)
    if not args.src.is_file():
        print(f"error: {args.src}: model not found", file=sys.stderr)
        return 2
    try:
        if args.precision == "fp16":
            convert_fp16(args.src, args.dst)
        else:
            if args.calib_dir is None:
                print("error: int8 needs --calib-dir (fundus photographs, e.g. ../shared/data/fundus)",
                      file=sys.stderr)
                return 2
            quantize_int8(args.src, args.dst, args.calib_dir, args.calib_count, args.frame,
                          args.quant_format, not args.no_per_channel, args.activation, args.method,
                          KEEP_FP32_DEFAULT if args.keep_fp32 is None else tuple(args.keep_fp32))
    except QuantizeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
