"""How closely a fast checkpoint's keypoints follow the default model's, on held-out frames.

    PYTHONPATH=python .venv/bin/python benchmarks/keypoint_agreement.py FAST.pth [FAST2.pth ...] \
        [--teacher model/superretina.pth] [--data ../shared/data/fundus] [--images 2]

On the first ``--images`` held-out photographs of ``data_split.split`` (the frames the
distillation's agreement checks use), enhanced to the 768 frame, both networks in fp32 (an
OpenVINO IR, ``.xml``, given as either runs as the application runs it: bf16, int8): the
default's keypoints (``keypoints.detect``, default settings) and, for each, the nearest keypoint
of the checkpoint — the share within 1, 1.5, 2 and 3 px, the share of the checkpoint's keypoints
with a default one within 1 px, and the distance between the two sub-pixel positions
(``refine_subpixel``, as the registrar uses) of the pairs within 2 px (model pixels).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from superretina.data_split import split
from superretina.enhance import equalise, model_input
from superretina.keypoints import detect
from superretina.model.network import load_checkpoint
from superretina.training.distill import subpixel_distances


def detector(path: Path):
    """image (H, W) float32 -> detector map, for a checkpoint (fp32 PyTorch) or an OpenVINO IR
    (``.xml``, in the precision its rt_info says: bf16 for the shipped IRs, int8 layers as quantized)."""
    if path.suffix == ".xml":
        from mxlocal.model_runtime import OpenVinoModel

        model = OpenVinoModel(path)
        index = [t.name for t in model.outputs].index("detector")
        return lambda img: model.run([img[None, None]])[index][0, 0]
    net = load_checkpoint(path)

    def run(img):
        with torch.no_grad():
            return net(torch.from_numpy(img[None, None]))[0][0, 0].numpy()
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--teacher", type=Path, default=Path("model/superretina.pth"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/fundus"))
    ap.add_argument("--images", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    _, held = split(args.data)
    frames = [model_input(equalise(cv2.imread(str(p))[..., 1]), (768, 768)) for p in held[:args.images]]
    teacher = detector(args.teacher)
    for ck in args.checkpoints:
        net = detector(ck)
        near, back, sub, n_t, n_s = [], 0, [], 0, 0
        for img in frames:
            pt, ps = teacher(img), net(img)
            kt, ks = detect(pt)[0], detect(ps)[0]
            d = np.linalg.norm(kt[:, None].astype(float) - ks[None].astype(float), axis=2)
            near.append(d.min(axis=1))
            back += int((d.min(axis=0) <= 1).sum())
            n_t, n_s = n_t + len(kt), n_s + len(ks)
            sub.append(subpixel_distances(pt, kt, ps, ks))
        near, sub = np.concatenate(near), np.concatenate(sub)
        within = " ".join(f"<={r}px {np.mean(near <= r):.3f}" for r in (1, 1.5, 2, 3))
        print(f"{ck}: default keypoints {n_t}, its {n_s}; default's with one of its {within}; "
              f"its with a default one <=1px {back / max(n_s, 1):.3f}; sub-pixel distance (pairs <=2px) "
              f"median {np.median(sub):.3f} mean {sub.mean():.3f} model px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
