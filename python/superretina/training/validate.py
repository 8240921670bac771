"""Validation during training: registration accuracy on held-out photographs.

Each held-out photograph gives a fixed (seeded) pair: the enhanced image and a second visit of
it (appearance change) under a random homography, both at the 768x768 model size.  The pair
is registered with the network plus the inference post-processing; the score is the AUC of the
mean control-point error over 1..25 px, as in the FIRE protocol.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from superretina.enhance import enhance, to_model_input

from .augment import random_view, revisit, warp_points
from .losses import sample_descriptors


def _keypoints(det: np.ndarray, radius=10, thresh=0.01, border=4) -> torch.Tensor:
    """Local maxima of a (H, W) detector map (plain max-filter NMS; fast enough for validation)."""
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    peak = (det == cv2.dilate(det, k)) & (det > thresh)
    peak[:border], peak[-border:], peak[:, :border], peak[:, -border:] = False, False, False, False
    ys, xs = np.nonzero(peak)
    if len(xs) > 3000:  # an untrained detector has huge plateaus; keep the strongest
        top = np.argsort(-det[ys, xs], kind="stable")[:3000]
        ys, xs = ys[top], xs[top]
    return torch.from_numpy(np.stack([xs, ys], 1).astype(np.float32))


class Validator:
    key = "val_auc"

    def __init__(self, paths, cfg: dict):
        rng = np.random.default_rng(cfg.get("seed", 1234))
        frame = int(cfg.get("frame", 768))
        self.bf16 = bool(cfg.get("bf16", False))
        self.pairs = []
        for p in paths:
            green = cv2.imread(str(p), cv2.IMREAD_COLOR)[..., 1]
            ref = to_model_input(enhance(green), (frame, frame))
            qry_full = to_model_input(enhance(revisit(rng, green, 1.0)), (frame, frame))
            H = random_view(rng, frame, frame, 12, (0.9, 1.1), 0.08, 0.1)  # ref frame -> query
            qry = cv2.warpPerspective(qry_full, H, (frame, frame))
            fov = green > 20
            ys, xs = np.nonzero(cv2.resize(fov.astype(np.uint8), (frame, frame)))
            sel = rng.choice(len(xs), size=10, replace=False)
            ref_pts = np.stack([xs[sel], ys[sel]], 1).astype(np.float32)
            self.pairs.append((qry, ref, warp_points(H, ref_pts), ref_pts))

    @torch.no_grad()
    def __call__(self, net) -> dict:
        net.eval()
        errors, matches = [], []
        for qry, ref, q_pts, r_pts in self.pairs:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                det, desc = net(torch.from_numpy(np.stack([qry, ref])[:, None]))
            det, desc = det.float(), desc.float()
            kq, kr = _keypoints(det[0, 0].numpy()), _keypoints(det[1, 0].numpy())
            err = 1e6
            if len(kq) >= 4 and len(kr) >= 4:
                dq, dr = sample_descriptors(desc[0], kq).numpy(), sample_descriptors(desc[1], kr).numpy()
                knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dq, dr, k=2)
                good = [m[0] for m in knn if len(m) == 2 and m[0].distance < 0.9 * m[1].distance]
                matches.append(len(good))
                if len(good) >= 4:
                    src = kq.numpy()[[m.queryIdx for m in good]]
                    dst = kr.numpy()[[m.trainIdx for m in good]]
                    H, mask = cv2.findHomography(src, dst, cv2.LMEDS)
                    if H is not None and mask.sum() > 0:
                        err = float(np.linalg.norm(warp_points(H, q_pts) - r_pts, axis=1).mean())
            errors.append(err)
        e = np.array(errors)
        auc = float(np.mean([(e < t).mean() for t in range(1, 26)]))
        return {self.key: auc, "val_median_error": float(np.median(e)),
                "val_failed": int((e >= 1e6).sum()), "val_matches": float(np.mean(matches) if matches else 0)}
