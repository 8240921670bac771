"""Train a cheaper detector head by distillation from a shipped SuperRetina checkpoint.

    python -m superretina.training.distill --teacher model/superretina.pth --out runs/fast --minutes 60
    python -m superretina.training.distill --student lowrank --out runs/lowrank --minutes 45

``--student lowrank`` (:class:`~superretina.model.network.SuperRetinaLowRankNet`) starts from
the published block factorised to low rank (``--init`` a checkpoint of
``python -m superretina.model.lowrank``, or fitted here with ``--ranks``); its factorised
block and ``conv_last`` learn, everything else stays the teacher's. The rest of this text is
about the default ``--student fast``.

The fast student (:class:`~superretina.model.network.SuperRetinaFastNet`) starts as a copy of the
teacher: encoder, descriptor head and the decoder blocks ``dconv_up3``/``dconv_up2`` are copied
and frozen (descriptors stay bit-identical), only the new head (``det_*``) learns; with
``--train-decoder`` ``dconv_up2`` learns too (it feeds only the detector: the descriptor head
reads the encoder's last block, so the descriptors still stay bit-identical). ``--init`` starts
the head from an earlier fast checkpoint. Its target is the teacher's detector on the same
input: binary cross-entropy against the teacher's probabilities, plus an L1 term on the logits
wherever either map is above a low floor, because keypoints are read off the map down to
``nms_thresh`` (0.01) and refined from its neighbours. ``--kp-weight`` weighs both terms up
within ``--kp-radius`` px of the teacher's keypoints (NMS maxima above 0.01, as the registrar
reads them) and of the student's maxima where the teacher has none: keypoint positions, not
the map's bulk, are what the registration uses.

Inputs are the training photographs of ``data_split.split`` (never the held-out ones) with the
training code's visit augmentation (``augment.revisit``), enhanced and resized to the model frame
as at inference, then viewed through a random rotation/zoom (``augment.random_view``): crops
centred on vessels, and some anywhere on the frame so the field-of-view edge and the black
surround are learned too. Runs on one thread, checkpoints every few minutes and resumes
(``--resume``; the budget may be raised on resuming), logs JSON lines; the teacher runs under
bf16 autocast unless ``--fp32-teacher``; the learning rate follows a cosine over ``--minutes``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from superretina.enhance import equalise, model_input
from superretina.keypoints import detect, refine_subpixel

from ..data_split import split
from ..model.lowrank import DEFAULT_RANKS, calibration_frames, factorise
from ..model.network import (LOWRANK_HEAD, CheckpointError, SuperRetinaFastNet, SuperRetinaLowRankNet,
                             SuperRetinaNet, checkpoint_dict, load_checkpoint, read_checkpoint, upsample)
from .augment import random_view, revisit

LOGIT_FLOOR = 0.002   # L1 on logits where teacher or student probability exceeds this
LOGIT_CLAMP = 12.0    # logits beyond this are saturated either way
WINDOW_MARGIN = 8     # px left out of the loss at a training window's edge (the head sees ~5 px)
DECODER_MARGIN = 4    # more with dconv_up2 trained (two 3x3 convolutions at 1/2 resolution)
KP_THRESH = 0.01      # the registrar's nms_thresh: maxima above it are keypoints
SUBPIXEL_MIN_BEND = 1e-4  # a parabola flatter than this (probability per px^2) places no peak
SUBPIXEL_BETA = 0.05  # px: smooth-L1's quadratic zone of subpixel_loss
HEAD = ("det_",)                          # parameters of the fast head: always trained
DETECTOR_ONLY = HEAD + ("dconv_up2.",)    # the head and what feeds only it (--train-decoder)
LOWRANK_TRAINED = (LOWRANK_HEAD, "conv_last.")  # --student lowrank: the factorised block and the 1x1 after it


class Views:
    """Random augmented crops of training photographs in the model frame."""

    def __init__(self, paths: list[Path], frame: int, crop: int, seed: int):
        self.frame, self.crop = frame, crop
        self.rng = np.random.default_rng(seed)
        self.green, self.vessels = [], []
        for p in paths:
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if bgr is None:
                raise SystemExit(f"error: {p}: not a readable image")
            self.green.append(bgr[..., 1].copy())
            mask = cv2.imread(str(p.with_name(p.stem + "_vessels.png")), cv2.IMREAD_GRAYSCALE)
            ys, xs = (np.nonzero(cv2.resize(mask, (frame, frame), interpolation=cv2.INTER_NEAREST) > 127)
                      if mask is not None else (np.zeros(0), np.zeros(0)))
            self.vessels.append((xs, ys))

    def sample(self, n: int) -> np.ndarray:
        """(n, crop, crop) float32 model inputs in [0, 1]: n views of one augmented visit
        (the visit and its enhancement cost as much as the teacher's pass on a crop)."""
        rng, i = self.rng, int(self.rng.integers(len(self.green)))
        green = revisit(rng, self.green[i], 1.0, haze=0.6, reflections=0.3) if rng.random() < 0.9 else self.green[i]
        frame_img = model_input(equalise(green), (self.frame, self.frame))
        xs, ys = self.vessels[i]
        out = []
        for _ in range(n):
            centre = None
            if len(xs) and rng.random() < 0.75:  # most crops on vessels, the rest anywhere (FOV edge, surround)
                j = rng.integers(len(xs))
                centre = (float(xs[j]), float(ys[j]))
            H = random_view(rng, self.frame, self.crop, 15.0, (0.9, 1.35), 0.0, 0.1, centre)
            out.append(cv2.warpPerspective(frame_img, H, (self.crop, self.crop), flags=cv2.INTER_LINEAR))
        return np.stack(out)


def teacher_and_features(teacher, x: torch.Tensor, bf16: bool = False, decoder: bool = False,
                         lowrank: bool = False, up2: bool = False, up3: bool = False):
    """Teacher logits (N,1,H,W) and the shared features the student's head reads (no grad), as
    float32: ``x1`` (N,c1,H,W) and ``y2`` (N,c2,H/2,W/2), the output of ``dconv_up2``; with
    ``decoder``, ``dconv_up2``'s input (N,c3+c2,H/2,W/2) instead of ``y2``; with ``lowrank``,
    one feature: the full-resolution block's input concat(up(y2), x1) (N,c2+c1,H,W); with
    ``lowrank`` and ``up2`` (a student whose ``dconv_up2`` is factorised too), ``dconv_up2``'s input
    and ``x1``; with ``up3`` too (``dconv_up3`` factorised as well), the encoder's outputs ``x4``,
    ``x3``, ``x2``, ``x1``.
    ``bf16``: compute them under bf16 autocast (half the CPU time here; the shipped IRs run in
    bf16 too)."""
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        x1, x2, x3, x4 = teacher.encode(x)
        u2 = teacher.dconv_up2_input(x2, x3, x4)   # (--train-decoder, up2)
        y2 = teacher.dconv_up2(u2)
        u1 = torch.cat([upsample(y2), x1], dim=1)
        logits = teacher.conv_last(teacher.dconv_up1(u1))
    if lowrank and up3:
        return logits.float(), tuple(f.float() for f in (x4, x3, x2, x1))
    if lowrank:
        return logits.float(), ((u2.float(), x1.float()) if up2 else (u1.float(),))
    return logits.float(), (x1.float(), (u2 if decoder else y2).float())


def student_logits(student: SuperRetinaNet, feats: tuple, decoder: bool = False,
                   offsets: list | None = None) -> torch.Tensor:
    """The fast head on precomputed features (same arithmetic as ``detector_logits``); with
    ``decoder``, ``y2`` is ``dconv_up2``'s input and the student's ``dconv_up2`` runs first (its
    input is cached rather than ``dconv_up3``'s: the bilinear upsampling with aligned corners
    is not shift-invariant, so it cannot be recomputed on a window of a crop). A lowrank
    student reads one feature, its block's input; one with ``dconv_up2`` factorised too reads
    ``dconv_up2``'s input on the whole crop and ``x1`` on the window at ``offsets`` ((y, x) per
    crop, full-resolution pixels; None: whole crops): its half-resolution part runs on the
    whole crop and is upsampled there, then cut to the window. One with ``dconv_up3`` factorised
    as well reads the encoder's outputs, all but ``x1`` whole, and runs its decoder from ``x4``."""
    if isinstance(student, SuperRetinaLowRankNet):
        if student.up2_ranks is None:
            return student.conv_last(student.full_resolution_block(feats[0]))
        if student.up3_ranks is not None:
            x4, x3, x2, x1 = feats
            y2 = student.half_resolution_decoder(x2, x3, x4)
        else:
            u2, x1 = feats
            y2 = student.half_resolution_block(u2)
        conv = student.up1_in   # split over its two inputs as in the network's detector_head
        c2 = y2.shape[1]
        low = upsample(F.conv2d(y2, conv.weight[:, :c2], conv.bias))
        if offsets is not None:
            h, w = x1.shape[-2:]
            low = torch.stack([low[i, :, oy:oy + h, ox:ox + w] for i, (oy, ox) in enumerate(offsets)])
        v = low + F.conv2d(x1, conv.weight[:, c2:])
        return student.conv_last(student._after_in(v))
    r = student.relu
    x1, y2 = feats
    if decoder:
        y2 = student.dconv_up2(y2)
    y = r(student.det_fuse(torch.cat([y2, r(student.det_skip(x1))], dim=1)))
    return F.pixel_shuffle(student.det_out(r(student.det_refine(y))), 2)


class FeaturePool:
    """A ring of crops with the teacher's features and logits, so that the teacher's pass (four
    fifths of a step's arithmetic) is paid once per crop while the head trains on each crop many
    times. Features are kept in bf16 (x1 of a 256x256 crop: 4 MB)."""

    def __init__(self, teacher, size: int, bf16: bool, rng: np.random.Generator, decoder: bool = False,
                 lowrank: bool = False, up2: bool = False, up3: bool = False):
        self.teacher, self.size, self.bf16, self.rng, self.decoder = teacher, size, bf16, rng, decoder
        self.lowrank, self.up2, self.up3 = lowrank, up2, up3
        # features kept whole by batch(): all but x1 when the student's decoder runs on whole crops
        self.whole = (True, True, True, False) if lowrank and up3 else (True, False) if lowrank and up2 else ()
        self.items: list[tuple] = []
        self.next = 0

    def __len__(self) -> int:
        return len(self.items)

    def add(self, crops: np.ndarray) -> None:
        """Run the teacher on (n, crop, crop) inputs and keep them (oldest replaced)."""
        logits, feats = teacher_and_features(self.teacher, torch.from_numpy(crops[:, None]), self.bf16,
                                             self.decoder, self.lowrank, self.up2, self.up3)
        for i in range(len(crops)):
            item = (tuple(f[i].bfloat16() for f in feats), logits[i])
            if len(self.items) < self.size:
                self.items.append(item)
            else:
                self.items[self.next] = item
                self.next = (self.next + 1) % self.size

    def batch(self, n: int, window: int = 0):
        """(features, teacher logits, offsets), float32, of n crops: the newest and random others;
        with ``window`` (even), a random window x window part of each (more, smaller steps; a
        half-resolution feature is cut at half the offsets, one of ``whole`` not at all), and the
        window's (y, x) in each crop (offsets None without a window)."""
        last = len(self.items) - 1 if len(self.items) < self.size else (self.next - 1) % self.size
        idx = [last] + list(self.rng.choice(len(self.items), size=min(n, len(self.items)) - 1, replace=False))
        parts, offsets = [], []
        for i in idx:
            feats, t = self.items[i]
            side = t.shape[-1]
            if window and window < side:
                oy, ox = (int(v) for v in 2 * self.rng.integers(0, (side - window) // 2 + 1, size=2))
                cut = []
                for j, f in enumerate(feats):
                    k = side // f.shape[-1]  # 1: full resolution, 2: half
                    whole = j < len(self.whole) and self.whole[j]
                    cut.append(f if whole else f[:, oy // k:(oy + window) // k, ox // k:(ox + window) // k])
                feats, t = tuple(cut), t[:, oy:oy + window, ox:ox + window]
                offsets.append((oy, ox))
            parts.append((feats, t))
        feats = tuple(torch.stack([p[0][j] for p in parts]).float() for j in range(len(parts[0][0])))
        return feats, torch.stack([p[1] for p in parts]).float(), (offsets if offsets else None)


def nms_maxima(logits: torch.Tensor, radius: int, thresh: float = KP_THRESH) -> torch.Tensor:
    """(N,1,H,W) bool: the keypoints ``keypoints.detect`` reads off ``sigmoid(logits)`` (its
    simple NMS with all three rounds, then ``> thresh``; no border), as torch max-pools."""
    def pool(x):
        return F.max_pool2d(x, 2 * radius + 1, 1, radius)

    p = torch.sigmoid(logits)
    keep = p == pool(p)
    for _ in range(2):  # the later rounds add maxima outside the kept ones' windows (~40 % more)
        free = pool(keep.float()) == 0
        rest = torch.where(free, p, torch.zeros_like(p))
        keep |= (rest == pool(rest)) & free
    return keep & (p > thresh)


def keypoint_weights(s: torch.Tensor, t: torch.Tensor, weight: float, radius: int, nms: int) -> torch.Tensor:
    """(N,1,H,W) loss weights: 1 + ``weight`` within ``radius`` px (square) of the teacher's
    keypoints and of the student's maxima that have no teacher keypoint that close."""
    def near(m):
        return F.max_pool2d(m.float(), 2 * radius + 1, 1, radius) > 0

    kt = nms_maxima(t, nms)
    spurious = nms_maxima(s.detach(), nms) & ~near(kt)
    return 1.0 + weight * near(kt | spurious).float()


def distill_loss(s: torch.Tensor, t: torch.Tensor, w: torch.Tensor | None = None,
                 l1_weight: float = 0.1) -> tuple[torch.Tensor, dict]:
    """10 x BCE against the teacher's probabilities + ``l1_weight`` x L1 on logits where either map
    is non-negligible, both weighted per pixel by ``w`` (N,1,H,W) when given (:func:`keypoint_weights`)."""
    pt = torch.sigmoid(t)
    w = torch.ones_like(t) if w is None else w
    bce = (F.binary_cross_entropy_with_logits(s, pt, reduction="none") * w).mean()
    floor = math.log(LOGIT_FLOOR / (1 - LOGIT_FLOOR))
    mask = ((t > floor) | (s.detach() > floor)).float()
    diff = (s.clamp(-LOGIT_CLAMP, LOGIT_CLAMP) - t.clamp(-LOGIT_CLAMP, LOGIT_CLAMP)).abs()
    l1 = (diff * mask * w).sum() / mask.sum().clamp(min=1.0)
    loss = bce * 10.0 + l1_weight * l1
    return loss, {"loss": loss.item(), "bce": bce.item(), "l1_logit": l1.item()}


def parabola_offsets(p: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per interior pixel of probability maps ``p`` (N,1,H,W): the unclipped offsets (x, y) of
    the parabola through the pixel and its two neighbours on each axis, and the two curvatures
    (``keypoints.refine_subpixel``'s arithmetic, differentiable), each (N,1,H-2,W-2)."""
    c = p[..., 1:-1, 1:-1]
    left, right = p[..., 1:-1, :-2], p[..., 1:-1, 2:]
    up, down = p[..., :-2, 1:-1], p[..., 2:, 1:-1]
    bend_x, bend_y = left - 2 * c + right, up - 2 * c + down
    safe = -SUBPIXEL_MIN_BEND
    off_x = 0.5 * (left - right) / torch.where(bend_x < safe, bend_x, torch.full_like(bend_x, safe))
    off_y = 0.5 * (up - down) / torch.where(bend_y < safe, bend_y, torch.full_like(bend_y, safe))
    return off_x, off_y, bend_x, bend_y


def subpixel_loss(ps: torch.Tensor, pt: torch.Tensor, keypoints: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean smooth-L1 (per axis, summed) between where the registrar would refine each of the
    teacher's ``keypoints`` (N,1,H,W bool, :func:`nms_maxima`) on the teacher's probabilities
    ``pt`` and on the student's ``ps``, both read at the teacher's pixel; and how many keypoints
    counted (those whose teacher and student maps both bend down there).

    The detector losses match the map's values; registration reads positions, and a broad maximum
    moves by a third of a pixel under value noise a BCE barely sees (int8: docs/int8-model.md).
    The student's offset is left unclipped (up to +-1.5 px), so a student maximum one pixel off
    still pulls back towards the teacher's."""
    ox_s, oy_s, bx_s, by_s = parabola_offsets(ps)
    with torch.no_grad():
        ox_t, oy_t, bx_t, by_t = parabola_offsets(pt)
    k = keypoints[..., 1:-1, 1:-1] & (bx_t < -SUBPIXEL_MIN_BEND) & (by_t < -SUBPIXEL_MIN_BEND) \
        & (bx_s < -SUBPIXEL_MIN_BEND) & (by_s < -SUBPIXEL_MIN_BEND)
    n = int(k.sum())
    if n == 0:
        return ps.sum() * 0.0, 0
    err = sum(F.smooth_l1_loss(s[k].clamp(-1.5, 1.5), t[k].clamp(-0.5, 0.5), reduction="sum", beta=SUBPIXEL_BETA)
              for s, t in ((ox_s, ox_t), (oy_s, oy_t)))
    return err / n, n


def keypoint_agreement(teacher, student, images: list[np.ndarray]) -> dict:
    """On whole model frames: mean |p_s - p_t|, and how many teacher keypoints (detect, default
    settings) have a student keypoint within 1 px, and the reverse (:func:`map_agreement`)."""
    with torch.no_grad():
        return map_agreement([(teacher(x)[0][0, 0].numpy(), student(x)[0][0, 0].numpy())
                              for x in (torch.from_numpy(img[None, None]) for img in images)])


def map_agreement(maps: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """:func:`keypoint_agreement` of (teacher, student) detector maps already computed."""
    if not maps:
        return {}
    diffs, hit_t, hit_s, n_t, n_s = [], 0, 0, 0, 0
    for pt, ps in maps:
        diffs.append(float(np.abs(ps - pt).mean()))
        kt, _ = detect(pt)
        ks, _ = detect(ps)
        n_t, n_s = n_t + len(kt), n_s + len(ks)
        if len(kt) and len(ks):
            d = np.linalg.norm(kt[:, None, :].astype(float) - ks[None, :, :].astype(float), axis=2)
            hit_t += int((d.min(axis=1) <= 1.0).sum())
            hit_s += int((d.min(axis=0) <= 1.0).sum())
    return {"mean_abs_prob": float(np.mean(diffs)), "teacher_kp": n_t, "student_kp": n_s,
            "teacher_kp_found": hit_t / max(n_t, 1), "student_kp_in_teacher": hit_s / max(n_s, 1)}


def subpixel_distances(pt: np.ndarray, kt: np.ndarray, ps: np.ndarray, ks: np.ndarray, within: float = 2.0) -> np.ndarray:
    """Distances (model px) between the sub-pixel positions (``refine_subpixel``, as the registrar
    reads them) of the teacher's keypoints ``kt`` on map ``pt`` and of the student's nearest
    keypoint in ``ks`` on ``ps``, for the teacher keypoints with one within ``within`` px."""
    if not len(kt) or not len(ks):
        return np.zeros(0)
    d = np.linalg.norm(kt[:, None].astype(float) - ks[None].astype(float), axis=2)
    close = d.min(axis=1) <= within
    return np.linalg.norm(refine_subpixel(pt, kt)[close] - refine_subpixel(ps, ks)[d.argmin(axis=1)[close]], axis=1)


def trained_prefixes(student: SuperRetinaNet, decoder: bool = False) -> tuple[str, ...]:
    """Parameter-name prefixes a student trains (the rest stay the teacher's)."""
    if isinstance(student, SuperRetinaLowRankNet):
        return LOWRANK_TRAINED + tuple(prefix for prefix, ranks in (("up2_", student.up2_ranks), ("up3_", student.up3_ranks))
                                       if ranks is not None)
    return DETECTOR_ONLY if decoder else HEAD


def init_student(teacher, decoder: bool = False, fitted: SuperRetinaLowRankNet | None = None) -> SuperRetinaNet:
    """The fast network with the teacher's shared parameters copied, or the ``fitted`` lowrank
    one; only the :func:`trained_prefixes` parameters trainable (``decoder``: ``dconv_up2`` too,
    which feeds only the fast detector)."""
    student = fitted if fitted is not None else SuperRetinaFastNet(teacher.widths)
    if fitted is None:
        shared = {k: v for k, v in teacher.state_dict().items() if k in student.state_dict()}
        missing, _ = student.load_state_dict(shared, strict=False)
        assert all(k.startswith("det_") for k in missing), missing
    trained = trained_prefixes(student, decoder)
    for name, p in student.named_parameters():
        p.requires_grad = name.startswith(trained)
    return student.train()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m superretina.training.distill", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, default=Path("model/superretina.pth"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/fundus"))
    ap.add_argument("--out", type=Path, default=Path("runs/fast"))
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pth")
    ap.add_argument("--minutes", type=float, default=60.0, help="training time budget (cosine schedule over it)")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--views-per-visit", type=int, default=4, help="crops drawn from one augmented visit")
    ap.add_argument("--pool", type=int, default=96, help="crops whose teacher features are kept for training")
    ap.add_argument("--visit-every", type=int, default=8,
                    help="steps between fresh visits (VIEWS_PER_VISIT crops through the teacher into the pool)")
    ap.add_argument("--window", type=int, default=128,
                    help="train on random WINDOW x WINDOW parts of the pooled crops (even; 0 = whole crops)")
    ap.add_argument("--check-images", type=int, default=2, help="held-out frames of the agreement checks")
    ap.add_argument("--fp32-teacher", action="store_true", help="teacher in float32 (default: bf16 autocast)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--student", choices=("fast", "lowrank"), default="fast",
                    help="the network to train (default fast; lowrank: the factorised full-resolution block)")
    ap.add_argument("--ranks", default=",".join(map(str, DEFAULT_RANKS)),
                    help="--student lowrank without --init: the ranks to fit (default %(default)s)")
    ap.add_argument("--init", type=Path, help="start from this checkpoint of the student's kind (its shared "
                    "parameters must be the teacher's)")
    ap.add_argument("--train-decoder", action="store_true", help="train dconv_up2 too (detector-only path)")
    ap.add_argument("--decoder-lr-scale", type=float, default=0.25, help="dconv_up2's learning rate / --lr")
    ap.add_argument("--kp-weight", type=float, default=0.0,
                    help="extra loss weight near teacher keypoints and spurious student maxima (0 = off)")
    ap.add_argument("--kp-radius", type=int, default=2, help="px around a keypoint that --kp-weight covers")
    ap.add_argument("--kp-nms", type=int, default=10, help="NMS radius of those keypoints (nms_size)")
    ap.add_argument("--checkpoint-minutes", type=float, default=3.0)
    ap.add_argument("--validate-minutes", type=float, default=30.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    if not args.data.is_dir():
        print(f"error: --data {args.data}: no such folder of fundus photographs", file=sys.stderr)
        return 2
    try:
        teacher = load_checkpoint(args.teacher)
    except (CheckpointError, RuntimeError) as exc:
        print(f"error: --teacher {args.teacher}: {' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return 2
    if type(teacher) is not SuperRetinaNet:
        print(f"error: --teacher {args.teacher}: expected the published (unet) detector head, got another",
              file=sys.stderr)
        return 2
    lowrank = args.student == "lowrank"
    resume_from = args.out / "last.pth" if args.resume and (args.out / "last.pth").exists() else None
    try:
        if lowrank and resume_from is not None:   # the ranks it was started with; its weights load below
            fitted = load_checkpoint(resume_from)
            if not isinstance(fitted, SuperRetinaLowRankNet):
                raise CheckpointError(f"{resume_from}: not a lowrank run")
        elif lowrank and args.init is None:
            ranks = tuple(int(r) for r in args.ranks.split(","))
            fitted, kept = factorise(teacher, calibration_frames(args.data), ranks)
            print(f"fitted ranks {ranks}: output variance kept {kept[0]:.4f} / {kept[1]:.4f}", flush=True)
        elif lowrank:
            fitted = load_checkpoint(args.init)
            if not isinstance(fitted, SuperRetinaLowRankNet):
                raise CheckpointError("expected a lowrank checkpoint (python -m superretina.model.lowrank)")
        else:
            fitted = None
        student = init_student(teacher, args.train_decoder and not lowrank, fitted)
        if args.init is not None:
            init = read_checkpoint(args.init)["net"]
            # a fast start may carry a trained dconv_up2 (an earlier --train-decoder run) either way
            trained = LOWRANK_TRAINED if lowrank else DETECTOR_ONLY
            frozen = {k: v for k, v in teacher.state_dict().items() if k in init and not k.startswith(trained)}
            if any(not torch.equal(init[k], v) for k, v in frozen.items()):
                raise CheckpointError("its shared parameters are not the teacher's")
            student.load_state_dict(init, strict=True)
    except (CheckpointError, RuntimeError, KeyError, ValueError, FileNotFoundError) as exc:
        what = f"--init {args.init}" if args.init else f"--resume {resume_from}" if resume_from else f"--ranks {args.ranks}"
        print(f"error: {what}: {' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return 2
    named = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    groups = [{"params": [p for n, p in named if n.startswith(HEAD) or lowrank], "lr_scale": 1.0}]
    if args.train_decoder and not lowrank:
        groups.append({"params": [p for n, p in named if not n.startswith(HEAD)],
                       "lr_scale": args.decoder_lr_scale})
    opt = torch.optim.Adam(groups, lr=args.lr)
    elapsed, step = 0.0, 0
    args.out.mkdir(parents=True, exist_ok=True)
    if resume_from is not None:
        ck = read_checkpoint(resume_from)
        student.load_state_dict(ck["net"], strict=True)
        opt.load_state_dict(ck["optimizer"])
        elapsed, step = float(ck["elapsed_s"]), int(ck["step"])
        print(f"resumed at step {step}, {elapsed / 60:.1f} min", flush=True)

    train_paths, held_paths = split(args.data)
    views = Views(train_paths, 768, args.crop, args.seed + step)
    held = [model_input(equalise(cv2.imread(str(p), cv2.IMREAD_COLOR)[..., 1]), (768, 768))
            for p in held_paths[:args.check_images]]
    print(f"distilling on {len(train_paths)} photographs ({len(held_paths)} held out; "
          f"{len(held)} for agreement checks); {sum(p.numel() for p in params)} trainable parameters", flush=True)
    decoder = args.train_decoder and not lowrank
    up2 = lowrank and student.up2_ranks is not None
    up3 = lowrank and student.up3_ranks is not None
    pool = FeaturePool(teacher, args.pool, not args.fp32_teacher, np.random.default_rng(args.seed + step + 1),
                       decoder, lowrank, up2, up3)
    while len(pool) < min(args.pool, 4 * args.views_per_visit):
        pool.add(views.sample(args.views_per_visit))
    log = (args.out / "log.jsonl").open("a")
    budget = 60.0 * args.minutes
    last_ck = last_val = time.time()
    run = []
    t_start = time.time() - elapsed
    settings = {"teacher": str(args.teacher), "crop": args.crop, "batch": args.batch,
                "views_per_visit": args.views_per_visit, "pool": args.pool, "visit_every": args.visit_every,
                "window": args.window, "teacher_bf16": not args.fp32_teacher, "lr": args.lr,
                "minutes": args.minutes, "init": str(args.init) if args.init else None,
                "student": args.student, "ranks": list(getattr(student, "ranks", ())) or None,
                "up2_ranks": list(getattr(student, "up2_ranks", None) or ()) or None,
                "up3_ranks": list(getattr(student, "up3_ranks", None) or ()) or None,
                "train_decoder": decoder, "decoder_lr_scale": args.decoder_lr_scale,
                "kp_weight": args.kp_weight, "kp_radius": args.kp_radius, "kp_nms": args.kp_nms}
    best = {"score": -1.0}

    def save():
        meta = {**settings, "step": step, "elapsed_s": time.time() - t_start}
        tmp = args.out / "last.pth.tmp"
        torch.save(checkpoint_dict(student, optimizer=opt.state_dict(), distillation=meta, **meta), tmp)
        tmp.replace(args.out / "last.pth")

    def check(final: bool = False) -> dict:
        """Agreement on the held-out frames, logged; the best so far (mean of both directions,
        the model-selection criterion) is kept as OUT/best.pth."""
        student.eval()
        agree = keypoint_agreement(teacher, student, held)
        student.train()
        rec = {"step": step, "minutes": (time.time() - t_start) / 60, **({"final": True} if final else {}),
               "agreement": agree}
        print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")
        log.flush()
        score = 0.5 * (agree.get("teacher_kp_found", 0.0) + agree.get("student_kp_in_teacher", 0.0))
        if agree and score > best["score"]:
            best["score"] = score
            torch.save(checkpoint_dict(student, step=step, distillation={
                **settings, "steps": step, "agreement_heldout": agree}), args.out / "best.pth")
        return agree

    while time.time() - t_start < budget:
        progress = (time.time() - t_start) / budget
        for g in opt.param_groups:
            g["lr"] = g.get("lr_scale", 1.0) * args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))
        if step % args.visit_every == 0:
            pool.add(views.sample(args.views_per_visit))
        feats, t_logits, offsets = pool.batch(args.batch, args.window)
        # A window's edge lacks the context the teacher had.
        m = (WINDOW_MARGIN + DECODER_MARGIN * decoder) if args.window else 0
        s_logits = student_logits(student, feats, decoder, offsets)
        h, w = s_logits.shape[-2:]
        s_in, t_in = s_logits[..., m:h - m, m:w - m], t_logits[..., m:h - m, m:w - m]
        weights = (keypoint_weights(s_in, t_in, args.kp_weight, args.kp_radius, args.kp_nms)
                   if args.kp_weight > 0 else None)
        loss, parts = distill_loss(s_in, t_in, weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        run.append(parts)
        if step % 20 == 0:
            mean = {k: float(np.mean([r[k] for r in run])) for k in run[0]}
            rec = {"step": step, "minutes": (time.time() - t_start) / 60, "lr": opt.param_groups[0]["lr"], **mean}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            run = []
        if time.time() - last_ck > 60 * args.checkpoint_minutes:
            save()
            last_ck = time.time()
        if time.time() - last_val > 60 * args.validate_minutes:
            check()
            last_val = time.time()
    save()
    agree = check(final=True)
    student.eval()
    torch.save(checkpoint_dict(student, step=step, distillation={
        **settings, "steps": step, "agreement_heldout": agree}), args.out / "final.pth")
    print(f"stopped at step {step}; {args.out / 'final.pth'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
