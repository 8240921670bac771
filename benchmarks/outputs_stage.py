"""CPU seconds of the outputs stage and of each picture, on the bench pair (benchmarks/bench.py's
2912x2912 pair), this tree's code, default pipeline and configuration.

    PYTHONPATH=python .venv/bin/python benchmarks/outputs_stage.py [--runs 5] [--size 2912]
    PYTHONPATH=python .venv/bin/python benchmarks/outputs_stage.py --baseline e81c82d [--rounds 3]

``--baseline REV``: ``write_outputs`` of this tree against that git revision's (extracted as
``bench.py --baseline`` does, its own default configuration), each in its own process, taking
turns ``--rounds`` times; prints the median CPU seconds of each side.

The pair is registered once; then each step is timed ``--runs`` times (median), in process CPU
seconds (``time.process_time``: all threads, so OpenCV's own threads count and the machine's
other load does not), the pictures drawn and JPEG-encoded as ``outputs.write_outputs`` does.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "python", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(1, str(p))

import cv2  # noqa: E402

from benchmarks.bench import make_bench_pair  # noqa: E402


def os_environ_pythonpath() -> str:
    import os

    return os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]


def cpu(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def write_outputs_only(runs: int, size: int) -> float:
    """Median CPU seconds of ``write_outputs`` on the bench pair, with whatever superretina is imported."""
    from superretina.app import open_app
    from superretina.image_io import read_pair
    from superretina.outputs import result_json, write_outputs

    with tempfile.TemporaryDirectory() as tmp, open_app(None, None, "local") as app:
        pair = make_bench_pair(size, Path(tmp) / "pair")
        q, r = read_pair(pair["query"], pair["refer"])
        res = app.registrar.register_images(q, r)
        info = result_json(res, pair["query"], pair["refer"], app.provenance)
        return cpu(lambda: write_outputs(res, q, r, Path(tmp) / "out", info, app.config), runs)


def against(rev: str, rounds: int, runs: int, size: int) -> int:
    import os
    import subprocess

    from benchmarks.batch_throughput import extract

    with tempfile.TemporaryDirectory() as tmp:
        code = {rev: extract(rev, Path(tmp) / "base") / "python", "this tree": ROOT / "python"}
        got: dict = {k: [] for k in code}
        for i in range(rounds):
            for side in (list(code) if i % 2 == 0 else list(code)[::-1]):
                env = {**os.environ, "PYTHONPATH": str(code[side])}
                out = subprocess.run([sys.executable, __file__, "--one", "--runs", str(runs), "--size", str(size)],
                                     env=env, capture_output=True, text=True, check=True).stdout
                got[side].append(float(out.strip().splitlines()[-1]))
                print(f"round {i} {side:10s} write_outputs {got[side][-1]:.3f} CPU s  ({out.strip().splitlines()[0]})",
                      flush=True)
    print(f"write_outputs on the {size}x{size} bench pair, CPU seconds, median of {rounds} processes"
          f" (each the median of {runs}):")
    for side, v in got.items():
        print(f"  {side:10s} {statistics.median(v):.3f}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=2912)
    ap.add_argument("--baseline", metavar="REV", help="compare write_outputs with this git revision's")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:   # a side's process: its code is first on PYTHONPATH
        from benchmarks.bench import use_code   # bench imported today's superretina: drop it

        use_code(os_environ_pythonpath())
        import superretina

        print(f"code {Path(superretina.__file__).parents[1]}, version {superretina.__version__}")
        print(f"{write_outputs_only(args.runs, args.size):.4f}")
        return 0
    if args.baseline:
        return against(args.baseline, args.rounds, args.runs, args.size)

    from superretina import viz
    from superretina.app import open_app
    from superretina.image_io import read_pair
    from superretina.outputs import final_matches, merged_picture, result_json, write_outputs
    from superretina.transform import inverse_maps

    def encode(image, quality=90):   # outputs.save_jpeg's quality
        return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])

    with tempfile.TemporaryDirectory() as tmp, open_app(None, None, "local") as app:
        pair = make_bench_pair(args.size, Path(tmp) / "pair")
        q, r = read_pair(pair["query"], pair["refer"])
        res = app.registrar.register_images(q, r)
        info = result_json(res, pair["query"], pair["refer"], app.provenance)
        o = app.config["outputs"]
        rows = {"write_outputs (all pictures + result.json)":
                lambda: write_outputs(res, q, r, Path(tmp) / "out", info, app.config),
                "result.json (JSON text)": lambda: json.dumps(info, indent=1)}
        warp = res.H
        if res.transform is not None and res.transform.model != "homography":
            wh_r, wh_q = (res.refer_size[1], res.refer_size[0]), (res.query_size[1], res.query_size[0])
            rows["inverse maps (full size)"] = lambda: inverse_maps(res.transform.transform, wh_r, wh_q)
            warp = inverse_maps(res.transform.transform, wh_r, wh_q)
        qq, rr, inl = final_matches(res)
        match = viz.draw_matches(q, r, qq, rr, inl, ["x"])
        over = merged_picture(res, warp, o["merged_max_side"])
        full = viz.merged(res.query_equalised, warp, res.refer_equalised)
        board = viz.checkerboard(q, warp, r, o["checkerboard_tiles"])
        rows.update({
            "match picture: draw": lambda: viz.draw_matches(q, r, qq, rr, inl, ["x"]),
            "match picture: encode": lambda: encode(match),
            f"overlay at merged_max_side {o['merged_max_side']} ({over.shape[1]} px): draw": lambda: merged_picture(
                res, warp, o["merged_max_side"]),
            f"overlay at merged_max_side {o['merged_max_side']}: encode": lambda: encode(over),
            f"overlay full size ({full.shape[1]} px): draw": lambda: viz.merged(res.query_equalised, warp,
                                                                                 res.refer_equalised),
            "overlay full size: encode": lambda: encode(full),
            "checkerboard: draw": lambda: viz.checkerboard(q, warp, r, o["checkerboard_tiles"]),
            "checkerboard: encode": lambda: encode(board),
            "checkerboard: encode at JPEG quality 80": lambda: encode(board, 80),
        })
        # thumbnails (batch --pictures thumbnails): a photograph to 240 px, one INTER_AREA resize
        # (before) against exact halvings first (thumbnails.shrunk, now)
        side = 240
        wh = (round(r.shape[1] * side / max(r.shape[:2])), round(r.shape[0] * side / max(r.shape[:2])))
        grey = res.refer_equalised
        rows.update({
            "thumbnail of the BGR reference: one INTER_AREA resize": lambda: cv2.resize(r, wh, interpolation=cv2.INTER_AREA),
            "thumbnail of the BGR reference: halvings first": lambda: viz.shrink(r, wh),
            "thumbnail of the grey equalised: one INTER_AREA resize": lambda: cv2.resize(grey, wh,
                                                                                      interpolation=cv2.INTER_AREA),
            "thumbnail of the grey equalised: halvings first": lambda: viz.shrink(grey, wh),
        })
        diff = abs(cv2.resize(r, wh, interpolation=cv2.INTER_AREA).astype(float) - viz.shrink(r, wh)).mean()
        print(f"{args.size}x{args.size} bench pair, transform {res.transform.model if res.transform else None}; "
              f"CPU seconds, median of {args.runs}")
        for label, fn in rows.items():
            print(f"  {label:55s} {cpu(fn, args.runs):.3f}")
        print(f"  thumbnail mean difference, halvings vs one resize: {diff:.2f} grey levels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
