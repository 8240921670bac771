"""pth2onnx: export a SuperRetina checkpoint to ONNX (or TorchScript).

    python -m superretina.model.export CHECKPOINT OUT.onnx            # dynamic batch and size
    python -m superretina.model.export CHECKPOINT OUT.onnx --static   # (2,1,768,768), opset 11, for ATC
    python -m superretina.model.export CHECKPOINT OUT.pt              # TorchScript, for GPUs through PyTorch

A TorchScript file carries its inputs and outputs (names, dtypes, dims) in an extra file
``mxlocal.json``, which the local runtime's TorchScript engine reads (``mxlocal.model_runtime``).

Input ``input``: (N, 1, H, W) float32 in [0, 1] (H, W multiples of 16).
Outputs ``detector``: (N, 1, H, W) keypoint probabilities; ``descriptor``: (N, 256, H/8-2, W/8-2).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from .network import CheckpointError, load_checkpoint
from ..progname import prog_name

INPUT_NAME = "input"
OUTPUT_NAMES = ("detector", "descriptor")


# Inputs and outputs of the network, as the TorchScript engine describes them (-1: dynamic).
TORCHSCRIPT_IO = {
    "inputs": [{"name": INPUT_NAME, "dtype": "float32", "dims": [-1, 1, -1, -1]}],
    "outputs": [{"name": OUTPUT_NAMES[0], "dtype": "float32", "dims": [-1, 1, -1, -1]},
                {"name": OUTPUT_NAMES[1], "dtype": "float32", "dims": [-1, 256, -1, -1]}],
}


def export_torchscript(checkpoint: Path, out: Path) -> Path:
    """Write a traced TorchScript module (any batch and size; the network has no
    shape-dependent Python); returns ``out``."""
    net = load_checkpoint(checkpoint)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes, and PyTorch's deprecation of TorchScript
        traced = torch.jit.trace(net, torch.rand(1, 1, 128, 160))
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.jit.save(traced, str(out), _extra_files={"mxlocal.json": json.dumps(TORCHSCRIPT_IO)})
    return out


def export_onnx(checkpoint: Path, out: Path, static: bool = False, batch: int = 2, size: int = 768,
                opset: int | None = None) -> Path:
    """Write the ONNX model; returns ``out``. The static variant has a fixed (batch,1,size,size) input."""
    net = load_checkpoint(checkpoint)
    dummy = torch.rand(batch, 1, size, size)
    dynamic = None if static else {
        INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
        OUTPUT_NAMES[0]: {0: "batch", 2: "height", 3: "width"},
        OUTPUT_NAMES[1]: {0: "batch", 2: "desc_height", 3: "desc_width"},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, dummy, str(out), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_axes=dynamic, opset_version=opset or (11 if static else 17),
                          do_constant_folding=True, dynamo=False)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog=prog_name("export"), description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="{'net': state_dict} checkpoint (official or this project's)")
    ap.add_argument("out", type=Path, help="output .onnx path (.pt: TorchScript, dynamic batch and size)")
    ap.add_argument("--static", action="store_true", help="fixed (2,1,768,768) input, opset 11 (for Ascend ATC)")
    ap.add_argument("--batch", type=int, default=2, help="batch of the static variant (default 2)")
    ap.add_argument("--size", type=int, default=768, help="side of the static variant (default 768)")
    ap.add_argument("--opset", type=int, help="ONNX opset (default 11 static, 17 dynamic)")
    args = ap.parse_args(argv)
    if not args.checkpoint.is_file():
        raise SystemExit(f"error: checkpoint not found: {args.checkpoint}")
    try:
        if args.out.suffix.lower() == ".pt":
            if args.static:
                raise SystemExit("error: --static is for ONNX exports (Ascend ATC);"
                                 " a TorchScript export takes any size")
            export_torchscript(args.checkpoint, args.out)
        else:
            export_onnx(args.checkpoint, args.out, args.static, args.batch, args.size, args.opset)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
