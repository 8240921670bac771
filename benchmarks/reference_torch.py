"""Plain PyTorch (eager) implementation of SuperRetina's §2 post-processing, plus a seeded
random-weights stand-in for the network that produces maps with real image structure.

Test and benchmark helper only (imported by tests/test_equivalence_torch.py and
benchmarks/bench_postprocess.py, so the reference is written once). It follows the method
description in ../shared/docs/superretina-method.md §2 literally, with PyTorch operations:
``max_pool2d`` simple NMS, ``nonzero`` threshold, border removal, ``grid_sample`` with
align_corners=True and ``F.normalize``, float32 scaling to the original size truncated to int,
``cv2.BFMatcher`` 2-NN with Lowe's ratio test, ``cv2.findHomography`` with LMEDS.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

MODEL_SIZE = 768          # model input height and width
DESC_CHANNELS = 256


# --------------------------------------------------------------------------------------------
# Stand-in network: fixed random weights, SuperRetina's output shapes.
# --------------------------------------------------------------------------------------------
class StandInNet(torch.nn.Module):
    """Seeded random convolutions giving a (N,1,H,W) detector map and a (N,256,h,w) descriptor
    map (h = 2*((H/8 - 4)//2 + 1), 94 for 768) that follow the image's structure.

    ``offset`` moves the sigmoid: larger values give fewer keypoints above 0.01.
    """

    def __init__(self, seed: int = 0, offset: float = 2.0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)

        def weight(*shape):
            fan_in = int(np.prod(shape[1:]))
            return torch.randn(*shape, generator=gen) * (2.0 / fan_in) ** 0.5

        # Zero-mean detector kernels: flat regions (the black surround of the fundus) respond 0
        # and stay far below the keypoint threshold, as a trained detector's do.
        self.det1 = weight(8, 1, 5, 5)
        self.det1 -= self.det1.mean(dim=(2, 3), keepdim=True)
        self.det2 = weight(1, 8, 3, 3)
        self.desc1 = weight(64, 1, 13, 13)  # random projections of 13x13 patches (JL-like)
        self.desc3 = weight(DESC_CHANNELS, 64, 4, 4)
        # ConvTranspose2d layout (in, out, kh, kw). One shared 256x256 map for the four output
        # positions (a trained net learns consistent ones; independent random ones would make
        # neighbouring cells incomparable and matching meaningless).
        self.trans = weight(DESC_CHANNELS, DESC_CHANNELS, 1, 1).expand(-1, -1, 2, 2).contiguous()
        self.trans_bias = 0.05 * torch.randn(DESC_CHANNELS, generator=gen)  # nn default has one
        self.offset = offset

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, descriptor = self.logits(x)
        return torch.sigmoid(3.0 * (z - self.offset)), descriptor

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised detector logits (before the offset and sigmoid) and descriptors."""
        x = x - x.mean(dim=(2, 3), keepdim=True)
        f = F.relu(F.conv2d(x, self.det1, padding=2))
        z = F.conv2d(f, self.det2, padding=1)
        z = (z - z.mean(dim=(2, 3), keepdim=True)) / (z.std(dim=(2, 3), keepdim=True) + 1e-6)
        # No keypoints where the image is flat (the surround of the fundus), as a trained
        # detector; without this a constant region is one huge plateau of "maxima".
        mean = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
        var = F.avg_pool2d(x * x, 5, stride=1, padding=2, count_include_pad=False) - mean * mean
        z = z - 20.0 * (var < 1e-6).float()

        d = F.avg_pool2d(x, 4)                                   # 1/4 resolution
        d = d - F.avg_pool2d(d, 9, stride=1, padding=4, count_include_pad=False)
        d = F.avg_pool2d(d, 7, stride=1, padding=3, count_include_pad=False)  # shift tolerance
        d = F.relu(F.conv2d(d, self.desc1, padding=6))
        d = F.avg_pool2d(d, 2)                                   # 1/8 resolution
        d = F.conv2d(d, self.desc3, stride=2)
        d = F.normalize(d, p=2, dim=1)
        descriptor = F.conv_transpose2d(d, self.trans, self.trans_bias, stride=2)
        return z, descriptor


def stand_in_maps(model_inputs: np.ndarray, seed: int = 0, offset: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Run the stand-in network on (N, H, W) float32 inputs in [0, 1].

    Returns (N, 1, H, W) and (N, 256, h, w) float32 numpy arrays.
    """
    x = torch.from_numpy(np.ascontiguousarray(model_inputs, dtype=np.float32))[:, None]
    det, desc = StandInNet(seed, offset)(x)
    return det.numpy(), desc.numpy()


def warped_pair(bgr: np.ndarray, ref_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query = ``bgr``; reference = ``bgr`` warped by a known mild homography (rotation 4 deg,
    scale 1.03, shift, slight perspective), then resized by ``ref_scale``.

    Returns (query, reference, H_true) with H_true mapping query to reference pixels.
    """
    h, w = bgr.shape[:2]
    a = np.deg2rad(4.0)
    H = np.array([[1.03 * np.cos(a), -np.sin(a), 25.0], [np.sin(a), 1.03 * np.cos(a), -15.0],
                  [2e-6, 1e-6, 1.0]])
    ref = cv2.warpPerspective(bgr, H, (w, h))
    if ref_scale != 1.0:
        ref = cv2.resize(ref, None, fx=ref_scale, fy=ref_scale, interpolation=cv2.INTER_AREA)
        H = np.diag([ref_scale, ref_scale, 1.0]) @ H
    return bgr, ref, H


# --------------------------------------------------------------------------------------------
# §2 steps 5-9 in PyTorch, as the reference code does them.
# --------------------------------------------------------------------------------------------
def ref_simple_nms(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """SuperPoint simple NMS on (N, 1, H, W) scores with max_pool2d."""
    def pool(t):
        return F.max_pool2d(t, kernel_size=2 * radius + 1, stride=1, padding=radius)

    zeros = torch.zeros_like(scores)
    keep = scores == pool(scores)
    for _ in range(2):
        suppressed = pool(keep.float()) > 0
        rest = torch.where(suppressed, zeros, scores)
        keep = keep | ((rest == pool(rest)) & ~suppressed)
    return torch.where(keep, scores, zeros)


def ref_detect(detector: torch.Tensor, nms_size: int = 10, nms_thresh: float = 0.01,
               border: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image of a (N, 1, H, W) map: ((K, 2) float32 (x, y) keypoints, (K,) scores)."""
    n, _, h, w = detector.shape
    nms = ref_simple_nms(detector, nms_size).reshape(n, h, w)
    out = []
    for s in nms:
        yx = torch.nonzero(s > nms_thresh)
        sc = s[yx[:, 0], yx[:, 1]]
        inside = ((yx[:, 0] >= border) & (yx[:, 0] < h - border)
                  & (yx[:, 1] >= border) & (yx[:, 1] < w - border))
        out.append((torch.flip(yx[inside], [1]).float(), sc[inside]))
    return out


def ref_sample(keypoints: torch.Tensor, descriptors: torch.Tensor, scale: int = 8) -> torch.Tensor:
    """(K, 2) (x, y) keypoints, (C, h, w) map -> (K, C) unit descriptors via grid_sample."""
    c, h, w = descriptors.shape
    grid = keypoints.clone().float() / torch.tensor([w * scale - 1, h * scale - 1], dtype=torch.float32)
    grid = grid * 2 - 1
    sampled = F.grid_sample(descriptors[None], grid.view(1, 1, -1, 2), mode="bilinear",
                            align_corners=True)
    return F.normalize(sampled.reshape(c, -1), p=2, dim=0).t()


def ref_scale(keypoints: torch.Tensor, image_size: tuple[int, int]) -> np.ndarray:
    """Reference's scaling to the original image: int(x / 768 * W) on float32 scalars."""
    h, w = image_size
    pts = [(int(k[0] / MODEL_SIZE * w), int(k[1] / MODEL_SIZE * h)) for k in keypoints]
    return np.array(pts, np.float64).reshape(-1, 2)


def ref_match(desc_q: np.ndarray, desc_r: np.ndarray, ratio: float = 0.9) -> np.ndarray:
    """cv2.BFMatcher(NORM_L2) knnMatch(k=2) + Lowe's test, as a (M, 2) [query, ref] array."""
    good = []
    try:
        for m, n in cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc_q, desc_r, k=2):
            if m.distance < ratio * n.distance:
                good.append((m.queryIdx, m.trainIdx))
    except (ValueError, cv2.error):  # fewer than two neighbours: the reference skips matching
        pass
    return np.array(good, np.int64).reshape(-1, 2)


def ref_homography(pts_q: np.ndarray, pts_r: np.ndarray):
    """cv2.findHomography LMEDS on float32 (M, 1, 2) points; (None, None) under 4 matches."""
    if len(pts_q) < 4:
        return None, None
    return cv2.findHomography(np.float32(pts_q).reshape(-1, 1, 2), np.float32(pts_r).reshape(-1, 1, 2),
                              cv2.LMEDS)


def ref_register(detector: np.ndarray, descriptor: np.ndarray, sizes: list[tuple[int, int]],
                 nms_size: int = 10, nms_thresh: float = 0.01, ratio: float = 0.9) -> dict:
    """Whole §2 steps 5-9 for a (2, 1, H, W) / (2, C, h, w) query+reference batch.

    ``sizes`` are the (height, width) of the original query and reference images.
    """
    det = torch.from_numpy(detector)
    desc = torch.from_numpy(descriptor)
    dets = ref_detect(det, nms_size, nms_thresh)
    kps = [k for k, _ in dets]
    descs = [ref_sample(k, d).numpy() for k, d in zip(kps, desc)]
    scaled = [ref_scale(k, s) for k, s in zip(kps, sizes)]
    matches = ref_match(descs[0], descs[1], ratio)
    H, mask = ref_homography(scaled[0][matches[:, 0]], scaled[1][matches[:, 1]])
    return {"keypoints": [k.numpy() for k in kps], "scores": [s.numpy() for _, s in dets],
            "descriptors": descs, "scaled": scaled, "matches": matches, "H": H,
            "mask": None if mask is None else mask.ravel().astype(bool)}
