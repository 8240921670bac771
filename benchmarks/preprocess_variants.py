"""Cheaper pre-processing for large photographs: cost and accuracy impact (issue 5, item 2).

Variants of the pre-processing of registrar.py, measured on FIRE-size (2912x2912) pairs:

  V0 current   enhance the full photograph (z-score, CLAHE, gamma), then resize to 768x768;
               matching trick: warp the full-size enhanced query with H1, then resize to 768.
  V1 trick768  as V0, but the matching trick warps the query's 768x768 model input with H1
               expressed in model pixels (S_r^-1 H1 S_q), straight into the reference's frame.
  V2 enhance2x the green channel is first reduced (INTER_AREA) to twice the model side
               (1536 px), enhanced there, then resized to 768; the trick warps that image.
  V3           V1 + V2.

For each: seconds of the pre-processing it changes (2 x enhance + model input; trick warp +
model input), the difference of the model inputs to V0 in grey levels (mean / 99th percentile
/ max), and registration with the project's post-processing on the maps of the seeded
random-weights stand-in network of benchmarks/reference_torch.py (whose maps follow image
structure, so registration works without trained weights): control-point error against the
known homography and |H - H_V0| (mean distance of the control points under the two).

Pairs: scikit-image's retina and held-out photographs of ../shared/data/fundus (if present),
upscaled to 2912 px, the query warped by the demo's known homography with its photometric
change (superretina.demo.make_pair), both JPEG-compressed (quality 95) and decoded.

Usage: python benchmarks/preprocess_variants.py [--runs 3] [--images 4]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python"), str(ROOT)]

from superretina.demo import control_point_error, make_pair, retina_bgr  # noqa: E402
from superretina.descriptors import sample_descriptors  # noqa: E402
from superretina.enhance import enhance, green_channel, to_model_input  # noqa: E402
from superretina.homography import estimate_homography  # noqa: E402
from superretina.keypoints import detect  # noqa: E402
from superretina.matching import ratio_match  # noqa: E402

FRAME = 768
SIZE = 2912
MAX_KP = 3000
VARIANTS = ("V0 current", "V1 trick768", "V2 enhance2x", "V3 both")


def reduced_enhance(bgr: np.ndarray, side: int) -> np.ndarray:
    """Enhance after an INTER_AREA reduction of the green channel to at most ``side`` px."""
    g = green_channel(bgr)
    h, w = g.shape
    if max(h, w) > side:
        s = side / max(h, w)
        g = cv2.resize(g, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return enhance(g)


def model_frame_h(H: np.ndarray, q_hw, r_hw) -> np.ndarray:
    """H (query → reference, original pixels) in model pixels of both."""
    S_q = np.diag([q_hw[1] / FRAME, q_hw[0] / FRAME, 1.0])
    S_r_inv = np.diag([FRAME / r_hw[1], FRAME / r_hw[0], 1.0])
    return S_r_inv @ H @ S_q


class Pipeline:
    """§2 with the project's post-processing and a stand-in network; pre-processing per variant."""

    def __init__(self, net):
        self.net = net

    def maps(self, inputs: np.ndarray):
        import torch
        with torch.no_grad():
            det, desc = self.net(torch.from_numpy(inputs[:, None]))
        return det.numpy(), desc.numpy()

    @staticmethod
    def features(det, desc, hw):
        kp, sc = detect(det[0])
        if len(sc) > MAX_KP:
            kp = kp[np.sort(np.argsort(-sc, kind="stable")[:MAX_KP])]
        d = sample_descriptors(kp, desc)
        xy = kp.astype(np.float64) * np.array([hw[1] / FRAME, hw[0] / FRAME])
        return xy, d

    @staticmethod
    def match(fq, fr):
        m = ratio_match(fq[1], fr[1], 0.9)
        return estimate_homography(fq[0][m[:, 0]], fr[0][m[:, 1]], "LMEDS", None, 4)

    def register(self, q, r, variant: str, times: dict):
        reduced = variant in ("V2 enhance2x", "V3 both")
        trick768 = variant in ("V1 trick768", "V3 both")
        t0 = time.perf_counter()
        eq = reduced_enhance(q, 2 * FRAME) if reduced else enhance(q)
        er = reduced_enhance(r, 2 * FRAME) if reduced else enhance(r)
        xq, xr = to_model_input(eq, (FRAME, FRAME)), to_model_input(er, (FRAME, FRAME))
        times["enhance"] = time.perf_counter() - t0
        det, desc = self.maps(np.stack([xq, xr]))
        q_hw, r_hw = q.shape[:2], r.shape[:2]
        fq, fr = self.features(det[0], desc[0], q_hw), self.features(det[1], desc[1], r_hw)
        h1 = self.match(fq, fr)
        if not h1.ok:
            return None, (xq, xr, None)
        t0 = time.perf_counter()
        if trick768:
            Hm = model_frame_h(h1.H, q_hw, r_hw)
            u8 = np.round(xq * 255).astype(np.uint8)
            xw = cv2.warpPerspective(u8, Hm, (FRAME, FRAME), flags=cv2.INTER_LINEAR).astype(np.float32) / 255
        else:
            # The enhanced image may be reduced: H1 expressed in its pixels.
            S_q = np.diag([q_hw[1] / eq.shape[1], q_hw[0] / eq.shape[0], 1.0])
            S_r_inv = np.diag([er.shape[1] / r_hw[1], er.shape[0] / r_hw[0], 1.0])
            warped = cv2.warpPerspective(eq, S_r_inv @ h1.H @ S_q, (er.shape[1], er.shape[0]), flags=cv2.INTER_LINEAR)
            xw = to_model_input(warped, (FRAME, FRAME))
        times["trick warp"] = time.perf_counter() - t0
        det_w, desc_w = self.maps(xw[None])
        fw = self.features(det_w[0], desc_w[0], r_hw)
        h2 = self.match(fw, fr)
        H = h1.H if not h2.ok else h2.H @ h1.H
        return H / H[2, 2], (xq, xr, xw)


def jpeg_roundtrip(img: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def sources(n: int) -> list[tuple[str, np.ndarray]]:
    out = [("skimage_retina", retina_bgr())]
    folder = ROOT.parent / "shared" / "data" / "fundus"
    if folder.is_dir():
        from superretina.data_split import split
        _, held = split(folder)
        out += [(p.stem, cv2.imread(str(p))) for p in held[: max(0, n - 1)]]
    return out[:n]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="timed runs per variant and pair (median)")
    ap.add_argument("--images", type=int, default=4, help="source photographs (skimage retina + held-out)")
    args = ap.parse_args(argv)
    import torch
    from reference_torch import StandInNet

    torch.set_num_threads(2)
    pipe = Pipeline(StandInNet(0, 2.0))
    rows = {v: {"enhance": [], "trick warp": [], "diff_first": [], "diff_trick": [], "err": [], "dH": []} for v in VARIANTS}
    for name, src in sources(args.images):
        refer = cv2.resize(src, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
        query, G, pts = make_pair(refer)
        query, refer = jpeg_roundtrip(query), jpeg_roundtrip(refer)
        base = None
        for v in VARIANTS:
            ts = {"enhance": [], "trick warp": []}
            for _ in range(args.runs):
                t = {}
                H, inputs = pipe.register(query, refer, v, t)
                for k in t:
                    ts[k].append(t[k])
            if base is None:
                base = (H, inputs)
            r = rows[v]
            for k in ("enhance", "trick warp"):
                r[k].append(float(np.median(ts[k])) if ts[k] else np.nan)
            d1 = np.abs(inputs[0] - base[1][0]) * 255
            r["diff_first"].append((d1.mean(), np.percentile(d1, 99), d1.max()))
            if inputs[2] is not None and base[1][2] is not None:
                d2 = np.abs(inputs[2] - base[1][2]) * 255
                r["diff_trick"].append((d2.mean(), np.percentile(d2, 99), d2.max()))
            r["err"].append(control_point_error(H, G, pts))
            if H is not None and base[0] is not None:
                from bench import homography_distance
                r["dH"].append(homography_distance(H, base[0], cv2.perspectiveTransform(pts.reshape(-1, 1, 2), G).reshape(-1, 2)))
            print(f"{name:16s} {v:13s} error {r['err'][-1]:7.2f} px  |H-H_V0| {r['dH'][-1] if r['dH'] else float('nan'):6.2f} px  "
                  f"enhance {r['enhance'][-1]:.3f} s  trick warp {r['trick warp'][-1]:.3f} s", file=sys.stderr)
    print(f"{'variant':13s} {'enhance+input s':>15s} {'trick warp s':>12s} {'input diff mean/p99/max':>24s} "
          f"{'trick input diff':>18s} {'error px':>9s} {'|H-H_V0| px':>12s}")
    for v in VARIANTS:
        r = rows[v]
        d1 = np.mean(r["diff_first"], axis=0) if r["diff_first"] else [np.nan] * 3
        d2 = np.mean(r["diff_trick"], axis=0) if r["diff_trick"] else [np.nan] * 3
        print(f"{v:13s} {np.median(r['enhance']):15.3f} {np.nanmedian(r['trick warp']):12.3f} "
              f"{d1[0]:10.2f}/{d1[1]:5.1f}/{d1[2]:5.0f}   {d2[0]:6.2f}/{d2[1]:4.1f}/{d2[2]:4.0f} "
              f"{np.mean(r['err']):9.2f} {np.mean(r['dH']) if r['dH'] else float('nan'):12.2f}")
    print(f"({len(rows[VARIANTS[0]]['err'])} pairs of {SIZE}x{SIZE}; medians of {args.runs} runs; errors are means over pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
