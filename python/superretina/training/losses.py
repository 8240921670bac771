"""Losses: Dice on keypoint heatmaps, InfoNCE on descriptors of corresponding points."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - Dice between (N, 1, H, W) probabilities and heatmaps, averaged over the batch."""
    p, t = pred.flatten(1), target.flatten(1)
    inter = (p * t).sum(1)
    return (1 - (2 * inter + eps) / ((p * p).sum(1) + (t * t).sum(1) + eps)).mean()


def sample_descriptors(desc: torch.Tensor, points: torch.Tensor, scale: int = 8) -> torch.Tensor:
    """Descriptors at (P, 2) (x, y) model-pixel points of one (C, h, w) map, as at inference.

    Normalisation kp / (w*scale - 1) → [-1, 1] with align_corners=True, then L2 (method §2.6).
    """
    c, h, w = desc.shape
    norm = torch.tensor([w * scale - 1, h * scale - 1], dtype=points.dtype, device=points.device)
    grid = (points / norm * 2 - 1).view(1, 1, -1, 2)
    d = F.grid_sample(desc[None], grid, mode="bilinear", align_corners=True)[0, :, 0].t()
    return F.normalize(d, dim=1)


def info_nce(da: torch.Tensor, db: torch.Tensor, pa: torch.Tensor, temperature: float,
             exclusion_px: float) -> torch.Tensor:
    """Symmetric InfoNCE over P corresponding descriptors (P, C) of two views.

    The positive for row i is column i; other points closer than ``exclusion_px`` to point i
    in view A are left out of the negatives (they are the same place, seen twice).
    """
    logits = da @ db.t() / temperature
    near = torch.cdist(pa, pa) < exclusion_px
    near.fill_diagonal_(False)
    logits = logits.masked_fill(near, float("-inf"))
    target = torch.arange(len(da), device=da.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
