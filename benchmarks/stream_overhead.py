"""What the stream adds around the network: a pair's two model inputs through the tensor stream,
and two JPEG photographs through the decode stream, against the same model's raw engine calls.

    PYTHONPATH=python .venv/bin/python benchmarks/stream_overhead.py [--rounds 3] [--runs 7] [--baseline 488d5b8]

One process per side and round (sides take turns, round by round), both on this tree's default
pipeline file and model, each with its own code: ``this tree`` and, with ``--baseline REV``, an
earlier version's ``python/`` extracted from git (``batch_throughput.extract``). In each process, after a
warm-up, ``--runs`` timed repetitions of:

* ``engine``: the pipeline's model file opened with ``mxlocal.model_runtime.open_model`` and run
  on the two model inputs one after the other (what ``mxpi_tensorinfer`` does with a pair);
* ``tensor stream``: ``SuperRetinaStream.infer`` of the (2, 1, H, W) pair batch (SendProtobuf,
  the element, GetProtobuf, the driver's unpacking);
* ``decode stream``: ``infer_encoded_async`` of the bench pair's two JPEGs (2912x2912), both in
  flight, with the photographs sent back (as when pictures are drawn) and without.

Prints the median of each side's rounds' medians, and ``tensor stream - engine``: the stream's
own cost per pair. The machine is shared: compare the sides of one run only.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(runs: int, pair_dir: Path) -> dict:
    """One side's medians (seconds) in this process, with the code on sys.path."""
    import numpy as np

    from mxlocal.model_runtime import open_model
    from superretina.app import open_app
    from superretina.enhance import equalise, model_input
    from superretina.image_io import read_pair

    app = open_app(None, ROOT / "pipeline" / "superretina.pipeline", "local")
    stream = app.registrar.backend
    engine = open_model(stream.model)
    q, r = read_pair(pair_dir / "query.jpg", pair_dir / "refer.jpg")
    batch = np.stack([model_input(equalise(im), (768, 768)) for im in (q, r)])[:, None].astype(np.float32)
    jpegs = [(pair_dir / n).read_bytes() for n in ("query.jpg", "refer.jpg")]

    def decode(images: bool):
        for f in [stream.infer_encoded_async(data, images) for data in jpegs]:
            f.result()

    steps = {"engine": lambda: [engine.run([batch[i:i + 1]]) for i in range(2)],
             "tensor stream": lambda: stream.infer(batch),
             "decode stream, photographs back": lambda: decode(True),
             "decode stream, no photographs": lambda: decode(False)}
    times = {k: [] for k in steps}
    for k, step in steps.items():
        step()  # warm-up
    for _ in range(runs):
        for k, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[k].append(time.perf_counter() - t0)
    app.close()
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="processes per side, taking turns (default 3)")
    ap.add_argument("--runs", type=int, default=7, help="timed repetitions per process (default 7)")
    ap.add_argument("--baseline", help="git revision of an earlier version to run as a second side")
    ap.add_argument("--one", nargs=2, metavar=("RUNS", "PAIR_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(int(args.one[0]), Path(args.one[1]))))
        return 0
    sys.path.insert(1, str(ROOT / "python"))
    sys.path.insert(1, str(ROOT / "benchmarks"))
    from batch_throughput import extract
    from bench import make_bench_pair

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_bench_pair(2912, tmp / "pair")
        sides = {"this tree": ROOT / "python"}
        if args.baseline:
            sides[args.baseline] = extract(args.baseline, tmp / "baseline") / "python"
        rounds: dict = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, code in sides.items():
                out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", str(args.runs),
                                      str(tmp / "pair")], env={**os.environ, "PYTHONPATH": str(code)},
                                     capture_output=True, text=True, check=True)
                rounds[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"median of {args.rounds} rounds x {args.runs} runs, seconds per pair (bench pair, 2912x2912)")
    keys = list(rounds["this tree"][0])
    print(f"{'':34s}" + "".join(f"{name:>16s}" for name in sides))
    med = {name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in rounds.items()}
    for k in keys:
        print(f"{k:34s}" + "".join(f"{med[name][k]:16.3f}" for name in sides))
    print(f"{'tensor stream - engine':34s}" + "".join(
        f"{med[name]['tensor stream'] - med[name]['engine']:16.3f}" for name in sides))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
