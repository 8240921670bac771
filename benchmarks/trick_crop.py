"""The matching trick's crop (``matching_trick_crop_margin``): what it saves and why it is off.

    PYTHONPATH=python .venv/bin/python benchmarks/trick_crop.py [--margin 32] [--rounds 2] [--pairs P25,P30]

1. Time: every fire_dev pair registered (decode stream, default pipeline) with the trick inferring
   the whole 768x768 frame (margin -1) and the crop (``--margin``), taking turns ``--rounds``
   times in one process; per pair where the trick ran: the box, its share of the frame and the
   median ``trick_inference`` seconds of each.
2. Why the keypoints move: the fp32 ONNX model on each pair's query model input, whole frame
   against the same crop box; detector keypoints (NMS, sub-pixel) of the crop's interior (48 px
   from its edges) matched to the frame's within 3 px: median distance, and how many are the
   same to 1e-3 px. The network's upsampling (``F.interpolate(..., align_corners=True)``) samples
   at positions that depend on the input's size, so a crop is not the frame's window even far
   from its edges.

Accuracy with the crop: ``bash run.sh fire SET --config`` a YAML with ``matching_trick_crop_margin: 32``
against the default (docs/critical-path.md).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from superretina.app import open_app  # noqa: E402
from superretina.fire.protocol import list_pairs  # noqa: E402
from superretina.registrar import Timer  # noqa: E402

FIRE_DEV = ROOT.parent / "shared" / "data" / "fire_dev"


def time_pairs(app, specs, margin: int, rounds: int) -> dict:
    """name -> {box, share, full: [s], crop: [s]} for pairs whose trick ran."""
    out: dict = {}
    for r in range(rounds):
        for spec in specs:
            for m in ((-1, margin) if r % 2 == 0 else (margin, -1)):
                app.config["matching_trick_crop_margin"] = m
                t = Timer()
                res = app.registrar.register_files(spec.query_path, spec.refer_path, t)
                if res.trick_box is None:
                    continue
                d = out.setdefault(spec.name, {"full": [], "crop": []})
                d["crop" if m >= 0 else "full"].append(t.seconds["trick_inference"])
                if m >= 0:
                    x, y, w, h = res.trick_box
                    d["box"], d["share"] = res.trick_box, w * h / (768 * 768)
    app.config["matching_trick_crop_margin"] = -1
    return out


def keypoint_shift(spec, box) -> tuple[int, float, int]:
    """(matched keypoints, median distance in model px, identical ones) of the crop against the frame."""
    import cv2
    from scipy.spatial import cKDTree

    from mxlocal.model_runtime import open_model
    from superretina.enhance import equalise, model_input
    from superretina.keypoints import detect, refine_subpixel

    model = open_model(ROOT / "model" / "superretina.onnx")
    x = model_input(equalise(cv2.imread(str(spec.query_path))), (768, 768))
    bx, by, bw, bh = box

    def keypoints(det):
        k, _ = detect(det, 10, 0.01, 4)
        return refine_subpixel(det, k)

    full = keypoints(model.run([x[None, None]])[0][0, 0])
    pasted = np.zeros((768, 768), np.float32)
    pasted[by:by + bh, bx:bx + bw] = model.run([np.ascontiguousarray(x[by:by + bh, bx:bx + bw])[None, None]])[0][0, 0]
    crop = keypoints(pasted)
    e = 48
    inner = crop[(crop[:, 0] >= bx + e) & (crop[:, 0] < bx + bw - e) & (crop[:, 1] >= by + e) & (crop[:, 1] < by + bh - e)]
    d, _ = cKDTree(full).query(inner, distance_upper_bound=3)
    d = d[np.isfinite(d)]
    return len(d), float(np.median(d)) if len(d) else float("nan"), int((d < 1e-3).sum())


def input_sizes(sizes: list[tuple[int, int]]) -> None:
    """Output shapes and one inference's time (after one untimed run) of the default bf16 model
    for each (H, W) input: which sizes the stream's ``H/8-2`` descriptor map fits."""
    import time

    from mxlocal.model_runtime import open_model
    from superretina.stream_client import model_file, read_layout
    from superretina.config import DEFAULT_PIPELINE

    model = open_model(model_file(DEFAULT_PIPELINE, read_layout(DEFAULT_PIPELINE).model_path))
    x = np.random.default_rng(0).random((1, 1, 768, 768), np.float32)
    print(f"{'input H x W':>12s} {'detector':>16s} {'descriptor':>20s} {'H/8-2 x W/8-2':>14s} {'seconds':>8s}")
    for h, w in sizes:
        crop = np.ascontiguousarray(x[:, :, :h, :w])
        model.run([crop])
        t0 = time.perf_counter()
        det, desc = model.run([crop])
        t = time.perf_counter() - t0
        print(f"{h:5d} x {w:<5d} {str(det.shape):>16s} {str(desc.shape):>20s} {f'{h // 8 - 2} x {w // 8 - 2}':>14s} {t:8.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--margin", type=int, default=32, help="crop margin to compare with the whole frame (default 32)")
    ap.add_argument("--rounds", type=int, default=2, help="alternations (default 2)")
    ap.add_argument("--pairs", help="comma-separated pair names (default: all of fire_dev)")
    ap.add_argument("--sizes", action="store_true",
                    help="only: the model's output shapes and time for a few input sizes (multiples of 8 and 16)")
    args = ap.parse_args(argv)
    if args.sizes:
        input_sizes([(160, 240), (328, 456), (336, 464), (520, 768), (768, 768)])
        return 0
    if not FIRE_DEV.is_dir():
        print(f"error: {FIRE_DEV} not found", file=sys.stderr)
        return 2
    specs = list_pairs(FIRE_DEV)
    if args.pairs:
        specs = [s for s in specs if s.name in args.pairs.split(",")]
    with open_app(None, None, "local") as app:
        timed = time_pairs(app, specs, args.margin, args.rounds)
    print(f"fire_dev, default pipeline, trick inference whole frame vs crop (margin {args.margin}), "
          f"median of {args.rounds}; keypoints: fp32 ONNX, query model input, crop interior vs frame")
    print(f"{'pair':6s} {'box x,y,w,h':>20s} {'share':>6s} {'frame s':>8s} {'crop s':>7s} {'ratio':>6s}"
          f" {'kps':>5s} {'median d px':>12s} {'same':>5s}")
    ratios = []
    for name, d in timed.items():
        if not d["crop"] or not d["full"]:
            continue
        f, c = statistics.median(d["full"]), statistics.median(d["crop"])
        ratios.append(c / f)
        n, med, same = keypoint_shift(next(s for s in specs if s.name == name), d["box"])
        print(f"{name:6s} {','.join(map(str, d['box'])):>20s} {d['share']:6.2f} {f:8.3f} {c:7.3f} {c / f:6.2f}"
              f" {n:5d} {med:12.3f} {same:5d}")
    if ratios:
        print(f"median crop/frame trick inference time: {statistics.median(ratios):.2f} over {len(ratios)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
