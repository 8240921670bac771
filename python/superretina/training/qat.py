"""Quantization-aware distillation: an int8 OpenVINO IR of a shipped checkpoint (issue 19).

    python -m superretina.training.qat --teacher model/superretina_lowrank2.pth --out runs/int8 --minutes 40
    python -m superretina.training.qat --out runs/int8 --resume --minutes 50     # go on
    python -m superretina.training.qat --out runs/int8 --export model/superretina_lowrank2_int8.xml

Needs NNCF (``pip install 'nncf==3.4.0'``, in the ``train`` extra); the application does not.

Why: on this machine's CPU (AVX-512 VNNI) OpenVINO runs the network with int8 weights and
activations in ~0.57x the time of bf16 (the network is memory-bound; int8 halves the bytes every
layer reads and writes). Post-training quantization alone moves the detector's keypoints
enough to cost ~0.4 px on the eye-model sets (docs/int8-model.md); this trains the quantized
network back onto the float one.

1. **Quantize**: NNCF's post-training quantization of the teacher (a copy): symmetric int8
   activations and per-channel weights (``PERFORMANCE`` preset, the layout the CPU plugin runs
   fastest), ranges from ``--calib`` training-split frames.
2. **Distil**: the quantized copy (fake quantization in its forward pass, straight-through
   gradients; weights, biases and quantizer ranges all learn) is trained to reproduce the float
   teacher on random views of the training photographs (``distill.Views``): the detector by
   ``distill.distill_loss`` weighted up around keypoints (``--kp-weight``, ``--kp-radius``), the
   descriptors by 1 - cosine per cell (weight ``--desc-weight``), and with ``--subpixel-weight``
   the refined positions of the teacher's keypoints (``distill.subpixel_loss``: what the
   registrar reads, and what int8's noise moves). Adam, cosine learning rate
   over ``--minutes``; checkpoints every few minutes (``state.pt``, resumable), a JSON-lines log
   with the agreement on held-out frames.
3. **Export** (``--export OUT.xml``): the last checkpoint's network as an OpenVINO IR with
   FakeQuantize nodes (the CPU plugin runs them as int8), the application's input and output
   names (``input``; ``detector``, ``descriptor``) and bf16 for what stays float.

Held-out photographs (``data_split``) are never trained on or calibrated with; FIRE never.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mxlocal.model_runtime import PRECISION_KEY

from ..data_split import split
from ..enhance import equalise, model_input
from ..image_io import read_image
from ..keypoints import detect
from ..model.export import INPUT_NAME, OUTPUT_NAMES
from ..model.network import CheckpointError, load_checkpoint
from ..model.ov_rewrites import constant_behind
from ..provenance import files_sha256
from .distill import (Views, distill_loss, keypoint_weights, map_agreement, nms_maxima, subpixel_distances,
                      subpixel_loss)

FRAME = 768
TEACHER_KEY = ["superretina", "int8_teacher_sha256"]   # the checkpoint the run started from
TRAINING_KEY = ["superretina", "int8_training"]         # JSON: steps, minutes, settings of the run
LOGIT_EPS = 1e-7   # probabilities are turned back into logits for distill_loss


def need_nncf():
    try:
        import nncf
    except ImportError:
        raise SystemExit("error: quantization-aware training needs NNCF: pip install 'nncf==3.4.0'") from None
    return nncf


def frames(paths: list[Path]) -> list[np.ndarray]:
    """Whole (768, 768) model inputs of photographs, enhanced as at inference."""
    return [model_input(equalise(read_image(p)), (FRAME, FRAME)) for p in paths]


def quantized_copy(teacher_path: Path, calib: list[np.ndarray], ranges: str = "histogram"):
    """A fresh copy of the teacher with NNCF's fake quantizers, activation ranges calibrated on
    ``calib`` (``ranges``: NNCF's estimator, ``minmax`` or ``histogram``; the histogram's ranges
    leave out rare outliers and start the training closer: keypoint agreement 0.73 against 0.67)."""
    nncf = need_nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    net = load_checkpoint(teacher_path).eval()
    data = nncf.Dataset([torch.from_numpy(f[None, None]) for f in calib])
    estimator = {"minmax": RangeEstimatorParametersSet.MINMAX, "histogram": RangeEstimatorParametersSet.HISTOGRAM}
    return nncf.quantize(net, data, subset_size=len(calib), preset=nncf.QuantizationPreset.PERFORMANCE,
                         advanced_parameters=AdvancedQuantizationParameters(
                             activations_range_estimator_params=estimator[ranges]))


def logits(p: torch.Tensor) -> torch.Tensor:
    return torch.logit(p.clamp(LOGIT_EPS, 1 - LOGIT_EPS))


def descriptor_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cosine between the student's and teacher's descriptor vectors, per cell."""
    return (1 - F.cosine_similarity(s, t, dim=1, eps=1e-8)).mean()


def agreement(teacher, student, images: list[np.ndarray]) -> dict:
    """On whole frames, each network run once per frame: ``distill.map_agreement`` of the detector
    maps, the mean cosine between the descriptor maps, and the median of ``distill.subpixel_distances``
    (what the registration's accuracy follows: lowrank2 against the published head, which passed the
    accuracy rule, 0.15 model px; int8 after post-training quantization 0.56-0.62)."""
    maps, cos, dist = [], [], []
    with torch.no_grad():
        for x in (torch.from_numpy(img[None, None]) for img in images):
            (pt, dt), (ps, ds) = teacher(x), student(x)
            pt, ps = pt[0, 0].numpy(), ps[0, 0].numpy()
            maps.append((pt, ps))
            cos.append(F.cosine_similarity(ds, dt, dim=1).mean().item())
            dist.append(subpixel_distances(pt, detect(pt)[0], ps, detect(ps)[0]))
    dist = np.concatenate(dist) if dist else np.zeros(0)
    return {**map_agreement(maps), "descriptor_cos": float(np.mean(cos)) if cos else float("nan"),
            "subpixel_median": float(np.median(dist)) if len(dist) else float("nan")}


def quantize_float_weights(model) -> int:
    """Give int8 weights (symmetric, per output channel, round to nearest) to every convolution of
    the OpenVINO ``model`` with an int8 input (a FakeQuantize) whose weights are still a float
    constant; returns how many.

    NNCF quantizes the weights of convolution modules only; the lowrank network's 1x1
    convolutions of a concatenated decoder input, split before the upsampling (``_split_in``,
    ``F.conv2d`` on slices of one weight), keep float weights. Their input is int8, so the CPU
    plugin dequantizes it first, at up to full resolution: the IR of ``qat3`` ran at 172.5 ms
    CPU per 768² image on one thread, 153.8 with these four weights in int8 (bf16 IR: 265.0),
    keypoints as close to the float network's (sub-pixel distance median 0.331 → 0.334 px;
    docs/int8-model.md)."""
    from openvino import opset13 as ops

    count = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Convolution" or op.input_value(0).get_node().get_type_name() != "FakeQuantize":
            continue
        node = constant_behind(op.input_value(1))
        if node is None or node.get_element_type().get_type_name() != "f32":
            continue
        w = node.get_data()
        scale = np.abs(w).reshape(len(w), -1).max(axis=1).reshape(-1, 1, 1, 1) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        dequantized = ops.multiply(ops.convert(ops.constant(q), "f32"), ops.constant(scale),
                                   name=f"{op.get_friendly_name()}/int8_weights")
        op.input(1).replace_source_output(dequantized.output(0))
        count += 1
    return count


def convert_student(student):
    """``student`` (quantized, PyTorch) as an OpenVINO model: its fake quantizers become
    FakeQuantize nodes and int8 weight constants; nothing else changes."""
    import openvino as ov

    student.eval()
    with torch.no_grad():
        return ov.convert_model(student, example_input=torch.zeros(1, 1, 256, 256), input=[-1, 1, -1, -1])


def export_ir(student, out: Path, teacher_path: Path, state: dict) -> Path:
    """``student`` (quantized) as an OpenVINO IR with the application's tensor names, the
    teacher's sha256 and the run's ``state`` (steps, minutes, settings) in its rt_info; weights
    NNCF left in float are quantized (:func:`quantize_float_weights`)."""
    import openvino as ov

    model = convert_student(student)
    weights_at_export = quantize_float_weights(model)
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    for port, name in zip(model.outputs, OUTPUT_NAMES):
        port.get_tensor().set_names({name})
    model.set_rt_info("bf16", PRECISION_KEY)
    model.set_rt_info(files_sha256(teacher_path), TEACHER_KEY)
    model.set_rt_info(json.dumps({"steps": state["step"], "minutes": round(state["seconds"] / 60, 1),
                                  "settings": state["args"], "weights_quantized_at_export": weights_at_export}),
                      TRAINING_KEY)
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


def restore(out: Path, teacher_path: Path):
    """The student of ``out/state.pt`` (its quantizer layout from the saved NNCF config), on the
    network of ``teacher_path``, which must be the checkpoint the run started from."""
    need_nncf()
    from nncf.torch import load_from_config

    state = torch.load(out / "state.pt", map_location="cpu", weights_only=False)
    digest = files_sha256(teacher_path)
    if state.get("teacher_sha256", digest) != digest:
        raise SystemExit(f"error: {out}: the run started from {state['teacher']}, not {teacher_path} "
                         "(give that checkpoint as --teacher)")
    student = load_from_config(load_checkpoint(teacher_path).eval(), state["nncf_config"])
    student.load_state_dict(state["model"])
    return student, state


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, default=Path("model/superretina_lowrank2.pth"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/fundus"))
    ap.add_argument("--out", type=Path, required=True, help="run folder (state.pt, log.jsonl)")
    ap.add_argument("--minutes", type=float, default=40.0, help="training budget (raise it to go on with --resume)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export", type=Path, help="write the run's network as an int8 OpenVINO IR and stop")
    ap.add_argument("--calib", type=int, default=16, help="calibration frames (training split)")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--scale-lr", type=float, default=1e-3,
                    help="learning rate of the quantizers' ranges, relative to each range's size")
    ap.add_argument("--ranges", choices=("minmax", "histogram"), default="histogram",
                    help="activation range calibration of the starting point")
    ap.add_argument("--kp-weight", type=float, default=20.0)
    ap.add_argument("--kp-radius", type=int, default=2)
    ap.add_argument("--kp-nms", type=int, default=10)
    ap.add_argument("--desc-weight", type=float, default=100.0)
    ap.add_argument("--l1-weight", type=float, default=0.1,
                    help="weight of the logit L1 term of the detector loss (the shape of the map around keypoints)")
    ap.add_argument("--subpixel-weight", type=float, default=0.0,
                    help="weight of distill.subpixel_loss: the refined positions of the teacher's keypoints, "
                         "student against teacher (0 = off, as qat1-qat4)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        teacher = load_checkpoint(args.teacher).eval()
    except (CheckpointError, OSError) as exc:
        raise SystemExit(f"error: {args.teacher}: {exc}") from None
    if args.export:
        if not (args.out / "state.pt").is_file():
            raise SystemExit(f"error: {args.out / 'state.pt'}: no run to export (train first)")
        student, state = restore(args.out, args.teacher)
        print(f"wrote {export_ir(student, args.export, args.teacher, state)}")
        return 0
    train, held = split(args.data)
    if not train:
        raise SystemExit(f"error: {args.data}: no training-split photographs")
    check = frames(held[:2])
    args.out.mkdir(parents=True, exist_ok=True)
    if args.resume:
        student, state = restore(args.out, args.teacher)
        step, spent = state["step"], state["seconds"]
    else:
        pick = np.linspace(0, len(train) - 1, min(args.calib, len(train))).round().astype(int)
        student = quantized_copy(args.teacher, frames([train[i] for i in pick]), args.ranges)
        state, step, spent = None, 0, 0.0
    from nncf.torch import get_config

    student.train()
    for name, p in student.named_parameters():   # NNCF hands the quantizers' ranges over frozen
        p.requires_grad_(p.is_floating_point())
    named = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
    scales = [p for n, p in named if n.endswith("_scale_param_storage")]
    # Adam moves a parameter by ~lr per step: each range gets a rate relative to its own size
    # (activation ranges are of order 1-50, weight ranges 0.05-0.5).
    opt = torch.optim.Adam([{"params": [p for n, p in named if not n.endswith("_scale_param_storage")], "base": args.lr}]
                           + [{"params": [p], "base": args.scale_lr * p.detach().abs().mean().item()} for p in scales],
                           lr=args.lr)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    print(f"training {sum(p.numel() for _, p in named) - sum(p.numel() for p in scales)} weights and "
          f"{len(scales)} quantizer ranges from step {step}", flush=True)
    views = Views(train, FRAME, args.crop, args.seed + step)
    log = (args.out / "log.jsonl").open("a")
    budget = args.minutes * 60

    def save():
        torch.save({"model": student.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "seconds": spent, "nncf_config": get_config(student), "teacher": str(args.teacher),
                    "teacher_sha256": files_sha256(args.teacher),
                    "args": {k: str(v) for k, v in vars(args).items()}}, args.out / "state.pt.tmp")
        (args.out / "state.pt.tmp").replace(args.out / "state.pt")

    def evaluate():
        student.eval()
        rec = {"step": step, "minutes": round(spent / 60, 2), **agreement(teacher, student, check)}
        student.train()
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(json.dumps(rec), flush=True)

    if step == 0:
        evaluate()
    last_save = time.time()
    while spent < budget:
        t0 = time.time()
        decay = 0.5 * (1 + math.cos(math.pi * min(spent / budget, 1.0)))
        for g in opt.param_groups:
            g["lr"] = g["base"] * decay
        lr = args.lr * decay
        x = torch.from_numpy(views.sample(args.batch)[:, None])
        with torch.no_grad():
            pt, dt = teacher(x)
        ps, ds = student(x)
        s, t = logits(ps), logits(pt)
        det, info = distill_loss(s, t, keypoint_weights(s, t, args.kp_weight, args.kp_radius, args.kp_nms),
                                 args.l1_weight)
        desc = descriptor_loss(ds, dt)
        loss = det + args.desc_weight * desc
        if args.subpixel_weight > 0:
            sub, n_sub = subpixel_loss(ps, pt, nms_maxima(t, args.kp_nms))
            loss = loss + args.subpixel_weight * sub
            info.update(subpixel=sub.item(), subpixel_keypoints=n_sub)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        spent += time.time() - t0
        if step % 20 == 0:
            rec = {"step": step, "lr": lr, **info, "desc": desc.item(), "s_per_step": round(time.time() - t0, 2)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if time.time() - last_save > args.save_minutes * 60 or spent >= budget:
            save()
            evaluate()
            last_save = time.time()
    save()
    print(f"done: {step} steps, {spent / 60:.1f} min; export with --export OUT.xml", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
