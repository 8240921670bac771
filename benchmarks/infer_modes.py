"""OpenVINO CPU scheduling for images in flight: LATENCY (one request, all cores) against THROUGHPUT
streams (N requests at once, the cores split), and a batch of 2 images per request.

    python benchmarks/infer_modes.py [--model model/superretina_bf16.xml] [--size 768] [--rounds 4]

The engine alone (no stream, no registration), on a real model input (the skimage fundus photograph,
enhanced as the application does, and its mirror image), taking turns mode by mode, median over
rounds: seconds per image (wall) and process CPU seconds per image, for one request at a time, two
requests from two threads at once (what two pairs in flight give the engine), and one request of a
batch of two. Each mode's outputs are checked bit for bit against LATENCY's.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "model" / "superretina_bf16.xml")
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    args = ap.parse_args(argv)
    import openvino as ov
    from skimage import data

    sys.path.insert(0, str(ROOT / "python"))
    from mxlocal.model_runtime import model_precision
    from superretina.enhance import equalise, model_input

    core = ov.Core()
    model = core.read_model(str(args.model))
    precision = model_precision(model)
    img = cv2.cvtColor(data.retina(), cv2.COLOR_RGB2BGR)
    n = args.size
    x = model_input(equalise(img), (n, n)).reshape(1, 1, n, n).astype(np.float32)
    y = np.ascontiguousarray(x[..., ::-1])
    xy = np.concatenate([x, y])
    modes = {"latency 1 stream x 2 threads": {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": 2},
             "latency 1 stream x 1 thread": {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": 1},
             "throughput 2 streams x 1 thread": {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 2,
                                                 "INFERENCE_NUM_THREADS": 2}}
    compiled = {k: core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision, **v}) for k, v in modes.items()}
    r = args.repeat

    def timed(fn, images):
        t, c = time.perf_counter(), time.process_time()
        fn()
        return (time.perf_counter() - t) / images, (time.process_time() - c) / images

    def single(cm):
        req = cm.create_infer_request()
        req.infer({0: x})
        return timed(lambda: [req.infer({0: x}) for _ in range(r)], r)

    def two_at_once(cm):
        reqs = [cm.create_infer_request() for _ in range(2)]
        for q in reqs:
            q.infer({0: x})

        def go():
            ts = [threading.Thread(target=lambda q=q, a=a: [q.infer({0: a}) for _ in range(r)]) for q, a in zip(reqs, (x, y))]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        return timed(go, 2 * r)

    def batch2(cm):
        req = cm.create_infer_request()
        req.infer({0: xy})
        return timed(lambda: [req.infer({0: xy}) for _ in range(r)], 2 * r)

    ref = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision, **modes["latency 1 stream x 2 threads"]})
    want = [o.copy() for o in ref.create_infer_request().infer({0: y}).values()]
    for k, cm in compiled.items():
        req = cm.create_infer_request()
        got = list(req.infer({0: y}).values())
        same = all(np.array_equal(a, b) for a, b in zip(got, want))
        print(f"{k}: {cm.get_property('NUM_STREAMS')} stream(s), {cm.get_property('INFERENCE_NUM_THREADS')} threads, "
              f"outputs {'identical to' if same else 'DIFFERENT from'} latency 1x2")
    res: dict = {}
    order = list(compiled)
    for rnd in range(args.rounds):
        for k in (order if rnd % 2 == 0 else order[::-1]):
            for what, fn in (("one at a time", single), ("2 requests at once", two_at_once), ("batch of 2", batch2)):
                res.setdefault((k, what), []).append(fn(compiled[k]))
    print(f"\n{args.model.name} ({precision}), {n}x{n}, median of {args.rounds} rounds x {r} runs; per image:")
    for (k, what), v in res.items():
        print(f"  {k:32s} {what:20s} wall {statistics.median(a for a, _ in v):.3f} s   CPU {statistics.median(b for _, b in v):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
