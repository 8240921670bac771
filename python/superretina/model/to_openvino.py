"""An ONNX export as an OpenVINO IR that runs in a chosen precision (the default bf16 model).

    python -m superretina.model.to_openvino model/superretina.onnx model/superretina_bf16.xml
    python -m superretina.model.to_openvino IN.onnx OUT.xml --precision f32

The IR keeps the export's inputs, outputs and float32 weights (``.bin`` beside the ``.xml``),
with two graph rewrites that are exact in real arithmetic and faster on the CPU
(``ov_rewrites``); the precision goes into the model's rt_info under ``runtime_options/INFERENCE_PRECISION_HINT``,
which ``mxlocal.model_runtime`` passes to the CPU plugin. bf16 computes convolutions on
AMX / AVX-512 BF16 units with float32 accumulation: about 4x ONNX Runtime fp32 on such a
CPU for SuperRetina at 768x768 (benchmarks/accuracy_variants.py and ``bash run.sh bench
--model`` measure it). A pipeline runs the variant by pointing ``modelPath`` at the ``.xml``.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from mxlocal.model_runtime import PRECISION_KEY, first_line

from .ov_rewrites import rewrite_for_cpu

PRECISIONS = ("bf16", "f32")
SOURCE_KEY = ["superretina", "source_onnx_sha256"]
REWRITES_KEY = ["superretina", "cpu_rewrites"]


class ConvertError(RuntimeError):
    """A problem the user can fix (missing or unreadable model, bad output name)."""


def convert(onnx_path: Path, xml_path: Path, precision: str = "bf16") -> Path:
    """Write ``xml_path`` (+ ``.bin``) from ``onnx_path``; returns the ``.xml`` path."""
    import openvino as ov

    if precision not in PRECISIONS:
        raise ConvertError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if not onnx_path.is_file():
        raise ConvertError(f"{onnx_path}: no such ONNX model")
    if xml_path.suffix.lower() != ".xml":
        raise ConvertError(f"{xml_path}: the output must be an .xml path (the .bin is written beside it)")
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:
        raise ConvertError(f"{onnx_path}: OpenVINO cannot read it: {first_line(exc)}") from None
    rewritten = rewrite_for_cpu(model)
    model.set_rt_info(precision, PRECISION_KEY)
    model.set_rt_info(",".join(f"{k}={v}" for k, v in rewritten.items()), REWRITES_KEY)
    model.set_rt_info(hashlib.sha256(onnx_path.read_bytes()).hexdigest(), SOURCE_KEY)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    # float32 weights: rounding them to fp16 first would add a second rounding before bf16.
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return xml_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m superretina.model.to_openvino", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", type=Path, help="ONNX export (pth2onnx: bash run.sh export)")
    ap.add_argument("xml", type=Path, help="output OpenVINO IR .xml (the .bin is written beside it)")
    ap.add_argument("--precision", choices=PRECISIONS, default="bf16",
                    help="inference precision stored in the IR (default bf16)")
    args = ap.parse_args(argv)
    try:
        out = convert(args.onnx, args.xml, args.precision)
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} and {out.with_suffix('.bin')} ({args.precision})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
