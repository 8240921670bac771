"""Post-training int8 quantization of an OpenVINO IR with NNCF: the variants of docs/int8-model.md.

    PYTHONPATH=python .venv/bin/python benchmarks/int8_ptq.py model/superretina_lowrank2_bf16.xml OUT.xml \
        [--preset performance|mixed] [--ignore conv_last,convDa] [--calib 48]

Calibration: ``--calib`` training-split photographs of ``--data`` (never the held-out ones),
enhanced to the 768 frame as at inference. ``--preset performance``: symmetric int8 activations
(what the CPU plugin runs fastest); ``mixed``: asymmetric activations. ``--ignore``: nodes whose
friendly name contains one of these stay in float. The IR keeps the input's float bf16 hint for
the layers left in float. Needs NNCF (the ``train`` extra). Then time it with
``benchmarks/profile_layers.py`` and register with it through a pipeline whose ``modelPath`` names it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="float OpenVINO IR (.xml)")
    ap.add_argument("dst", type=Path, help="int8 IR to write (.xml)")
    ap.add_argument("--preset", choices=("performance", "mixed"), default="performance")
    ap.add_argument("--ignore", default="", help="comma-separated name fragments of nodes left in float")
    ap.add_argument("--calib", type=int, default=48)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/fundus"))
    args = ap.parse_args(argv)
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise SystemExit(f"error: {exc.name} is needed (pip install 'nncf==3.4.0')") from None
    from superretina.data_split import split
    from superretina.training.qat import PRECISION_KEY, frames

    if not args.src.is_file():
        raise SystemExit(f"error: {args.src}: no such model")
    train, _ = split(args.data)
    if not train:
        raise SystemExit(f"error: {args.data}: no training-split photographs")
    pick = np.linspace(0, len(train) - 1, min(args.calib, len(train))).round().astype(int)
    calib = frames([train[i] for i in pick])
    model = ov.Core().read_model(str(args.src))
    fragments = [f for f in args.ignore.split(",") if f]
    ignored = [op.get_friendly_name() for op in model.get_ops() if any(f in op.get_friendly_name() for f in fragments)]
    preset = nncf.QuantizationPreset.MIXED if args.preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE
    quantized = nncf.quantize(model, nncf.Dataset([f[None, None] for f in calib]), subset_size=len(calib), preset=preset,
                              ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None)
    quantized.set_rt_info("bf16", PRECISION_KEY)
    args.dst.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(args.dst), compress_to_fp16=False)
    print(f"wrote {args.dst} ({args.preset}, {len(ignored)} nodes left in float, {len(calib)} calibration frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
