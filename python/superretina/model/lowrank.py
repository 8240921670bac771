"""Factorise a SuperRetina checkpoint's full-resolution decoder block to low rank.

    python -m superretina.model.lowrank model/superretina.pth runs/lowrank/fit.pth --data ../shared/data/fundus
    python -m superretina.model.lowrank model/superretina.pth runs/lowrank2/fit.pth --up2-ranks 24,12 \
        --from-lowrank model/superretina_lowrank.pth      # dconv_up2 too, the distilled block kept
    python -m superretina.model.lowrank model/superretina.pth runs/lowrank3/fit.pth --up3-ranks 48,24 \
        --from-lowrank model/superretina_lowrank2.pth     # dconv_up3 too, on top of lowrank2

``dconv_up1``'s two 3x3 convolutions are fitted, one after the other, on their inputs on
enhanced fundus photographs (the training split of ``--data``, prepared as at inference):

* layer a (W: 64 -> c1) on its input side: the input u is replaced by A Q (u - mean) + mean,
  Q (1x1, 64 -> q) and A (64 x q) chosen to lose the least of W's *output*: the top q
  directions of the input covariance S measured in the metric M = sum W^T W over taps and
  outputs (eigenvectors of M^1/2 S M^1/2). Plain PCA of the input keeps directions that W
  ignores: at q = 16 it found 58 % of the keypoints within 1 px, the weighted fit 96 %.
* layer b (W: c1 -> c1) on its output side, fitted on layer a's factorised output: P^T W
  (3x3, c1 -> r) then P (1x1, r -> c1), P the top r principal directions of W's outputs; the
  output's mean is kept exactly through the 1x1 bias.

With ``--up2-ranks``, ``dconv_up2`` (1/2 resolution, c3+c2 -> c2 -> c2) is factorised the same
way, on the published network's own ``dconv_up2`` inputs (:func:`factorise_decoder_block`), and with
``--up3-ranks`` ``dconv_up3`` (1/4 resolution, c4+c3 -> c3 -> c3, above a factorised ``dconv_up2``);
``--from-lowrank`` keeps a lowrank checkpoint's factorised blocks (distilled ones) instead of
fitting them.

The result is a ``lowrank`` checkpoint (``network.SuperRetinaLowRankNet``) whose other
parameters are the input's, bit for bit; ``training/distill.py --student lowrank --init``
fine-tunes it against the original.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .network import (LOWRANK_HEAD, CheckpointError, SuperRetinaLowRankNet, SuperRetinaNet, checkpoint_dict,
                      load_checkpoint, upsample)

DEFAULT_RANKS = (16, 8)
DEFAULT_CALIB = 8
SAMPLES = 200_000      # output pixels per layer entering the PCA
FRAME = 768


def block_inputs(net: SuperRetinaNet, frames: list[np.ndarray]) -> list[torch.Tensor]:
    """``dconv_up1``'s input, concat(upsampled ``dconv_up2`` output, ``x1``), for each (H, W) frame."""
    out = []
    with torch.no_grad():
        for img in frames:
            x1, x2, x3, x4 = net.encode(torch.from_numpy(np.ascontiguousarray(img, np.float32)[None, None]))
            out.append(torch.cat([upsample(net.half_resolution_decoder(x2, x3, x4)), x1], dim=1))
    return out


def _sample_channels(maps: list[torch.Tensor], rng: np.random.Generator) -> torch.Tensor:
    """(C, n) float64: the channel vectors of up to SAMPLES random pixels of (1, C, H, W) maps."""
    flat = torch.cat([m.permute(1, 0, 2, 3).reshape(m.shape[1], -1) for m in maps], dim=1)
    pick = torch.from_numpy(rng.choice(flat.shape[1], min(SAMPLES, flat.shape[1]), replace=False))
    return flat[:, pick].double()


def _symmetric_power(m: torch.Tensor, power: float) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(m)
    return vectors @ torch.diag(values.clamp(min=1e-12) ** power) @ vectors.T


def fit_input_side(conv: nn.Conv2d, inputs: list[torch.Tensor], rank: int, reduce: nn.Conv2d, conv_out: nn.Conv2d,
                   rng: np.random.Generator) -> float:
    """Set ``reduce`` (1x1) and ``conv_out`` (same kernel as ``conv``) so that conv_out(reduce(u))
    is ``conv`` applied to u's best rank-``rank`` approximation in conv's output metric; returns
    the fraction of that metric's input variance kept."""
    with torch.no_grad():
        s = _sample_channels(inputs, rng)
        mean = s.mean(dim=1, keepdim=True)
        cov = (s - mean) @ (s - mean).T / s.shape[1]
        w = conv.weight.double()
        metric = torch.einsum("oikl,ojkl->ij", w, w)
        half, inv_half = _symmetric_power(metric, 0.5), _symmetric_power(metric, -0.5)
        values, vectors = torch.linalg.eigh(half @ cov @ half)  # ascending
        basis = inv_half @ vectors[:, -rank:]                                   # A: (C_in, q)
        coords = torch.linalg.solve(basis.T @ metric @ basis, basis.T @ metric)  # Q: (q, C_in)
        mean = mean[:, 0]
        reduce.weight.copy_(coords.float()[:, :, None, None])
        reduce.bias.copy_((-coords @ mean).float())
        conv_out.weight.copy_(torch.einsum("oikl,iq->oqkl", w, basis).float())
        # u = A Q (u - mean) + mean: the mean's part goes into the bias (exact away from the zero-padded border).
        conv_out.bias.copy_((conv.bias.double() + torch.einsum("oikl,i->o", w, mean)).float())
        return float(values[-rank:].sum() / values.sum())


def fit_output_side(conv: nn.Conv2d, inputs: list[torch.Tensor], rank: int, reduce: nn.Conv2d, expand: nn.Conv2d,
                    rng: np.random.Generator) -> float:
    """Set ``reduce`` (``conv``'s kernel, no bias) and ``expand`` (1x1) so that expand(reduce(x))
    is ``conv(x)`` projected onto the top ``rank`` principal directions of its outputs on
    ``inputs``; returns the fraction of the output variance those directions keep."""
    with torch.no_grad():
        s = _sample_channels([F.conv2d(x, conv.weight, None, padding=conv.padding) for x in inputs], rng)
        mean = s.mean(dim=1, keepdim=True)
        values, vectors = torch.linalg.eigh((s - mean) @ (s - mean).T / s.shape[1])  # ascending
        p, mean = vectors[:, -rank:].float(), mean[:, 0].float()
        reduce.weight.copy_(torch.einsum("cr,cikl->rikl", p, conv.weight))
        expand.weight.copy_(p[:, :, None, None])
        # P P^T keeps the output's mean only partly; the bias restores the rest (and conv's bias).
        expand.bias.copy_(conv.bias + mean - p @ (p.T @ mean))
        return float(values[-rank:].sum() / values.sum())


def factorise(teacher: SuperRetinaNet, frames: list[np.ndarray], ranks=DEFAULT_RANKS,
              seed: int = 0) -> tuple[SuperRetinaLowRankNet, list[float]]:
    """The lowrank network fitted to ``teacher`` on ``frames`` (model inputs in [0, 1]), and the
    variance fraction each factorised layer keeps."""
    if type(teacher) is not SuperRetinaNet:
        raise CheckpointError("expected the published (unet) detector head to factorise")
    w = teacher.widths
    if len(ranks) != 2 or not (1 <= ranks[0] <= w.c1 + w.c2 and 1 <= ranks[1] <= w.c1):
        raise ValueError(f"ranks must be at most the layers' widths ({w.c1 + w.c2}, {w.c1}), got {tuple(ranks)}")
    net = SuperRetinaLowRankNet(w, ranks)
    shared = {k: v for k, v in teacher.state_dict().items() if k in net.state_dict()}
    missing, _ = net.load_state_dict(shared, strict=False)
    assert all(k.startswith(LOWRANK_HEAD) for k in missing), missing
    kept = fit_block(teacher.dconv_up1, block_inputs(teacher, frames), ranks, net, "up1_", np.random.default_rng(seed))
    return net.eval(), kept


def fit_block(block: nn.Sequential, inputs: list[torch.Tensor], ranks, net: SuperRetinaLowRankNet, prefix: str,
              rng: np.random.Generator) -> list[float]:
    """Fit ``net``'s ``<prefix>*`` layers to the published two-layer ``block`` on its ``inputs``: the
    first layer on its input side, the second on its output side, fitted on the first factorised
    layer's outputs; returns the variance fraction each keeps."""
    reduce_in, layer_a = getattr(net, prefix + "in"), getattr(net, prefix + "a")
    kept = [fit_input_side(block[0], inputs, ranks[0], reduce_in, layer_a, rng)]
    with torch.no_grad():
        mids = [net.relu(layer_a(reduce_in(u))) for u in inputs]
    kept.append(fit_output_side(block[2], mids, ranks[1], getattr(net, prefix + "b_reduce"),
                                getattr(net, prefix + "b_expand"), rng))
    return kept


# The decoder blocks above dconv_up1 that can be factorised too: parameter prefix -> published block.
DECODER_BLOCKS = {"up2_": "dconv_up2", "up3_": "dconv_up3"}


def decoder_inputs(net: SuperRetinaNet, frames: list[np.ndarray], prefix: str = "up2_") -> list[torch.Tensor]:
    """For each (H, W) frame, ``dconv_up2``'s input concat(up(``dconv_up3`` output), ``x2``), or with
    ``prefix`` ``up3_`` ``dconv_up3``'s input concat(up(``x4``), ``x3``)."""
    out = []
    with torch.no_grad():
        for img in frames:
            _, x2, x3, x4 = net.encode(torch.from_numpy(np.ascontiguousarray(img, np.float32)[None, None]))
            out.append(net.dconv_up2_input(x2, x3, x4) if prefix == "up2_" else net.dconv_up3_input(x3, x4))
    return out


def factorise_decoder_block(teacher: SuperRetinaNet, lowrank: SuperRetinaLowRankNet, frames: list[np.ndarray],
                            prefix: str, ranks=DEFAULT_RANKS, seed: int = 0) -> tuple[SuperRetinaLowRankNet, list[float]]:
    """``lowrank`` (its factorised blocks as they are, e.g. distilled) with ``dconv_up2`` (``prefix``
    ``up2_``) or ``dconv_up3`` (``up3_``, above a factorised ``dconv_up2``) factorised too, fitted as
    :func:`factorise` fits ``dconv_up1``, on ``teacher``'s own inputs of that block (the encoder is
    the teacher's, so for ``dconv_up3`` they are exactly the student's)."""
    block = DECODER_BLOCKS[prefix]
    if type(teacher) is not SuperRetinaNet or not hasattr(lowrank, block):
        raise CheckpointError(f"expected the published (unet) head and a lowrank network whose {block} is whole")
    if prefix == "up3_" and lowrank.up2_ranks is None:
        raise CheckpointError("dconv_up3 is factorised only above a factorised dconv_up2 (--up2-ranks)")
    published = getattr(teacher, block)
    cin, cout = published[0].in_channels, published[0].out_channels
    if len(ranks) != 2 or not (1 <= ranks[0] <= cin and 1 <= ranks[1] <= cout):
        raise ValueError(f"ranks must be at most the layers' widths ({cin}, {cout}), got {tuple(ranks)}")
    net = SuperRetinaLowRankNet(teacher.widths, lowrank.ranks, ranks if prefix == "up2_" else lowrank.up2_ranks,
                                ranks if prefix == "up3_" else None)
    missing, _ = net.load_state_dict({k: v for k, v in lowrank.state_dict().items() if not k.startswith(block + ".")},
                                     strict=False)
    assert all(k.startswith(prefix) for k in missing), missing
    kept = fit_block(published, decoder_inputs(teacher, frames, prefix), ranks, net, prefix,
                     np.random.default_rng(seed))
    return net.eval(), kept


def calibration_frames(data: Path, count: int = DEFAULT_CALIB) -> list[np.ndarray]:
    """``count`` training-split photographs of ``data`` (evenly spread; the held-out ones never),
    enhanced and resized to the model frame as at inference."""
    import cv2

    from ..data_split import split
    from ..enhance import equalise, model_input

    train, _ = split(data)
    if not train:
        raise FileNotFoundError(f"{data}: no training photographs")
    step = max(1, len(train) // count)
    frames = []
    for path in train[::step][:count]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"{path}: not a readable image")
        frames.append(model_input(equalise(bgr[..., 1]), (FRAME, FRAME)))
    return frames


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m superretina.model.lowrank", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="a published-head (unet) checkpoint, e.g. model/superretina.pth")
    ap.add_argument("out", type=Path, help="the lowrank checkpoint to write")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/fundus"),
                    help="fundus photographs; only the training split is used (default ../shared/data/fundus)")
    ap.add_argument("--ranks", default=",".join(map(str, DEFAULT_RANKS)),
                    help="ranks of the block's two layers (default %(default)s)")
    ap.add_argument("--up2-ranks", help="factorise dconv_up2 too, to these two ranks (e.g. 24,12)")
    ap.add_argument("--up3-ranks", help="factorise dconv_up3 too (above a factorised dconv_up2), e.g. 48,24")
    ap.add_argument("--from-lowrank", type=Path,
                    help="keep this lowrank checkpoint's factorised blocks (distilled ones) instead of fitting"
                         " them; only --up2-ranks / --up3-ranks are fitted")
    ap.add_argument("--calib", type=int, default=DEFAULT_CALIB, help="photographs for the PCA (default %(default)s)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ranks = _ranks("--ranks", args.ranks)
    more = {prefix: _ranks(f"--{prefix[:-1]}-ranks", text)
            for prefix, text in (("up2_", args.up2_ranks), ("up3_", args.up3_ranks)) if text is not None}
    if ranks is None or None in more.values():
        return 2
    if args.from_lowrank is not None and not more:
        print("error: --from-lowrank: only with --up2-ranks or --up3-ranks (the block it takes is what --ranks"
              " would fit)", file=sys.stderr)
        return 2
    try:
        teacher = load_checkpoint(args.checkpoint)
        frames = calibration_frames(args.data, args.calib)
        if args.from_lowrank is not None:
            net, kept = _from_lowrank(args.from_lowrank, teacher, args.checkpoint), []
        else:
            net, kept = factorise(teacher, frames, ranks)
        for prefix, block_ranks in more.items():
            net, kept_block = factorise_decoder_block(teacher, net, frames, prefix, block_ranks)
            kept += kept_block
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint_dict(net, factorised={"from": str(args.checkpoint), "ranks": list(net.ranks),
                                                "up2_ranks": list(net.up2_ranks) if net.up2_ranks else None,
                                                "up3_ranks": list(net.up3_ranks) if net.up3_ranks else None,
                                                "fitted_here": (["up1_"] if args.from_lowrank is None else []) + list(more),
                                                # the factorised blocks not fitted here came from this file
                                                "full_resolution_block_from": str(args.from_lowrank or ""),
                                                "calibration_photographs": len(frames),
                                                "variance_kept": kept}), args.out)
    print(f"wrote {args.out}: ranks {net.ranks}{f', dconv_up2 {net.up2_ranks}' if net.up2_ranks else ''}"
          f"{f', dconv_up3 {net.up3_ranks}' if net.up3_ranks else ''}, "
          f"output variance kept {' / '.join(f'{k:.4f}' for k in kept)}")
    return 0


def _from_lowrank(path: Path, teacher: SuperRetinaNet, teacher_path: Path) -> SuperRetinaLowRankNet:
    """The lowrank checkpoint whose factorised blocks are kept; every parameter it shares with
    ``teacher`` must be the teacher's (it was fitted from it)."""
    net = load_checkpoint(path)
    if not isinstance(net, SuperRetinaLowRankNet):
        raise CheckpointError(f"--from-lowrank {path}: not a lowrank checkpoint")
    mine = net.state_dict()
    factorised = tuple(f"{b}." for b in ("dconv_up1", *DECODER_BLOCKS.values()) if not hasattr(net, b))
    shared = {k: v for k, v in teacher.state_dict().items() if not k.startswith(("conv_last.", *factorised))}
    if any(k not in mine or not torch.equal(mine[k], v) for k, v in shared.items()):
        raise CheckpointError(f"--from-lowrank {path}: not fitted from {teacher_path}")
    return net


def _ranks(option: str, text: str | None) -> tuple[int, int] | None:
    """Two positive integers from "A,B"; None (and one error line) otherwise, or for no text."""
    if text is None:
        return None
    try:
        ranks = tuple(int(r) for r in text.split(","))
        if len(ranks) != 2:
            raise ValueError
        return ranks
    except ValueError:
        print(f"error: {option} {text!r}: expected two integers, e.g. 16,8", file=sys.stderr)
        return None


if __name__ == "__main__":
    raise SystemExit(main())
