"""Benchmark of the pair-registration post-processing (method §2 steps 5-9), per image.

Stages, for one query image with about 3000 keypoints against a reference with about 3000:
  1. detect     simple NMS (radius 10) + threshold 0.01 + border 4 on the 768x768 map
                (+ subpixel peaks, ours, when configs/default.yaml has keypoints.subpixel)
  2. describe   bilinear descriptor sampling from the 256x94x94 map + L2 normalisation
  3. match      2-NN ratio test (0.9) against the reference's descriptors
  4. homography scaling to the original size + findHomography LMEDS (+ sanity checks; ours
                + the Cauchy refinement of homography.refine_scale, as the driver does)
Each stage is timed as the median of --runs runs after warm-up, for this project's NumPy/OpenCV
code and for the plain PyTorch eager implementation in benchmarks/reference_torch.py (the same one
the equivalence test uses; matching and homography there are the reference's cv2 calls).

Maps come from a seeded random-weights stand-in network on the enhanced skimage retina
(1411x1411) and a warped copy, with the sigmoid offset tuned to give ~3000 keypoints each.

Usage:  python benchmarks/bench_postprocess.py [--runs 9] [--threads N] [--keypoints 3000]
--threads N sets OpenBLAS/OpenMP, OpenCV and torch to N threads (default: libraries' defaults).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=9, help="timed runs per stage (median reported, >= 7 advised)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    p.add_argument("--threads", type=int, default=None, help="thread count for BLAS, OpenCV and torch")
    p.add_argument("--keypoints", type=int, default=3000, help="target keypoints per image")
    return p.parse_args()


ARGS = parse_args()
if ARGS.threads is not None:  # must precede the numpy import to reach OpenBLAS
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

sys.path[:0] = [str(ROOT / "python"), str(ROOT)]

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from skimage import data  # noqa: E402

from superretina.descriptors import sample_descriptors  # noqa: E402
from superretina.enhance import enhance, to_model_input  # noqa: E402
from superretina.config import load_config  # noqa: E402
from superretina.homography import estimate_homography  # noqa: E402
from superretina.keypoints import detect, refine_subpixel, to_original  # noqa: E402
from superretina.matching import ratio_match  # noqa: E402
from reference_torch import (MODEL_SIZE, StandInNet, ref_detect, ref_homography,  # noqa: E402
                                   ref_match, ref_sample, ref_scale, warped_pair)

MODEL = (MODEL_SIZE, MODEL_SIZE)


def machine_info() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = "?"
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{cfg.get('name')} {cfg.get('version')}"
    except Exception:  # noqa: BLE001 - informational only
        pass
    return [
        f"command : {' '.join([Path(sys.executable).name] + sys.argv)}",
        f"date    : {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"machine : {cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}",
        f"load    : {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min, before the run)",
        f"python  : {platform.python_version()}, numpy {np.__version__} ({blas}), opencv {cv2.__version__}, "
        f"torch {torch.__version__}",
        f"threads : OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset (all cores)')}, "
        f"cv2.getNumThreads()={cv2.getNumThreads()}, torch.get_num_threads()={torch.get_num_threads()}",
    ]


def tuned_maps(inputs: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Stand-in maps with, per image, the sigmoid offset giving about ``target`` keypoints."""
    net = StandInNet(seed=0)
    z, desc = net.logits(torch.from_numpy(inputs)[:, None])
    dets, offsets = [], []
    for zi in z:
        lo, hi = -1.0, 4.0  # keypoint count decreases with the offset
        for _ in range(20):
            mid = (lo + hi) / 2
            n = len(detect(torch.sigmoid(3.0 * (zi - mid)).numpy()[0])[0])
            lo, hi = (mid, hi) if n > target else (lo, mid)
        offsets.append(hi)
        dets.append(torch.sigmoid(3.0 * (zi - hi)).numpy())
    return np.stack(dets), desc.numpy(), offsets


def median_ms(fn, runs: int, warmup: int) -> tuple[float, float]:
    """Median wall time and median process CPU time (all threads), in milliseconds."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1e3 * float(np.median(wall)), 1e3 * float(np.median(cpu))


def main() -> None:
    if ARGS.threads is not None:
        cv2.setNumThreads(ARGS.threads)
        torch.set_num_threads(ARGS.threads)
    print("\n".join(machine_info()))

    bgr = cv2.cvtColor(data.retina(), cv2.COLOR_RGB2BGR)
    query, refer, _ = warped_pair(bgr)
    sizes = [query.shape[:2], refer.shape[:2]]
    inputs = np.stack([to_model_input(enhance(query), MODEL), to_model_input(enhance(refer), MODEL)])
    det, desc, offsets = tuned_maps(inputs, ARGS.keypoints)

    # Reference-side data the query is matched against (computed once, as in a pair run the
    # reference image is processed like the query).
    kp_r, _ = detect(det[1])
    d_r = sample_descriptors(kp_r, desc[1])
    pts_r = to_original(kp_r, MODEL, sizes[1])
    t_det = torch.from_numpy(det[:1])
    t_desc = torch.from_numpy(desc[0])
    (t_kp_r, _), = ref_detect(torch.from_numpy(det[1:]))
    t_d_r = ref_sample(t_kp_r, torch.from_numpy(desc[1])).numpy()
    t_pts_r = ref_scale(t_kp_r, sizes[1])

    # Inputs of each stage, from the previous one (ours and reference agree, see the tests).
    kp_q, _ = detect(det[0])
    d_q = sample_descriptors(kp_q, desc[0])
    matches = ratio_match(d_q, d_r)
    (t_kp_q, _), = ref_detect(t_det)
    t_d_q = ref_sample(t_kp_q, t_desc).numpy()
    t_matches = ref_match(t_d_q, t_d_r)
    result = estimate_homography(to_original(kp_q, MODEL, sizes[0])[matches[:, 0]], pts_r[matches[:, 1]])
    print(f"data    : skimage retina {sizes[0][1]}x{sizes[0][0]} + warped copy; stand-in maps, "
          f"sigmoid offsets {offsets[0]:.3f}/{offsets[1]:.3f}")
    print(f"          keypoints query {len(kp_q)}, reference {len(kp_r)}; matches {len(matches)}; "
          f"LMEDS inliers {result.num_inliers} ({result.inlier_rate:.0%})")

    cfg = load_config()
    refine_scale = cfg["homography"]["refine_scale"] * float(np.mean(np.divide(sizes[1], MODEL)))

    def ours_detect():
        kp, _ = detect(det[0])
        return refine_subpixel(det[0], kp) if cfg["keypoints"]["subpixel"] else kp

    def ours_homography():
        pts_q = to_original(kp_q, MODEL, sizes[0])
        return estimate_homography(pts_q[matches[:, 0]], pts_r[matches[:, 1]], refine_scale=refine_scale)

    def ref_homography_stage():
        pts_q = ref_scale(t_kp_q, sizes[0])
        return ref_homography(pts_q[t_matches[:, 0]], t_pts_r[t_matches[:, 1]])

    stages = [
        ("detect (NMS+thresh+border)", ours_detect, lambda: ref_detect(t_det)),
        ("describe (sample+normalise)", lambda: sample_descriptors(kp_q, desc[0]),
         lambda: ref_sample(t_kp_q, t_desc)),
        (f"match (2-NN ratio, {len(kp_q)}x{len(kp_r)})", lambda: ratio_match(d_q, d_r),
         lambda: ref_match(t_d_q, t_d_r)),
        ("homography (scale+LMEDS[+refine])", ours_homography, ref_homography_stage),
    ]
    print(f"\nmedian of {ARGS.runs} runs after {ARGS.warmup} warm-up runs, milliseconds per image;")
    print("wall = elapsed time, cpu = process CPU time over all threads (less sensitive to other")
    print("processes on a shared machine; above wall when several threads work)")
    print(f"{'stage':<34}{'ours wall':>10}{'ours cpu':>10}{'ref wall':>11}{'ref cpu':>10}{'speed-up':>10}")
    times = []
    for name, ours, ref in stages:
        t = np.array(median_ms(ours, ARGS.runs, ARGS.warmup) + median_ms(ref, ARGS.runs, ARGS.warmup))
        times.append(t)
        print(f"{name:<34}{t[0]:>10.2f}{t[1]:>10.2f}{t[2]:>11.2f}{t[3]:>10.2f}{t[2] / t[0]:>9.1f}x")
    tot = np.sum(times, axis=0)
    print(f"{'total per image (4 stages)':<34}{tot[0]:>10.2f}{tot[1]:>10.2f}{tot[2]:>11.2f}{tot[3]:>10.2f}"
          f"{tot[2] / tot[0]:>9.1f}x")
    # In a pair both images are detected and described, matching and homography run once.
    pair = times[0] + times[1] + (times[2] + times[3]) / 2
    print(f"{'  per image of a pair (m+h shared)':<34}{pair[0]:>10.2f}{pair[1]:>10.2f}{pair[2]:>11.2f}"
          f"{pair[3]:>10.2f}{pair[2] / pair[0]:>9.1f}x")
    # Matching and homography are done once per pair, for both its images: an image's share is
    # half of them. The stricter reading charges the whole pair's matching to one image.
    print(f"speed-up = ref wall / ours wall. Target <= 30 ms per image (wall): "
          f"{'met' if pair[0] <= 30 else 'NOT met'} per image of a pair ({pair[0]:.1f} ms); "
          f"{'met' if tot[0] <= 30 else 'not met'} with the whole matching charged to one image ({tot[0]:.1f} ms).")
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
