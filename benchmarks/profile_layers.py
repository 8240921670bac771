"""Per-layer time of OpenVINO IRs on this CPU, models taking turns in one run.

    .venv/bin/python benchmarks/profile_layers.py model/superretina_bf16.xml model/superretina_fast_bf16.xml

Each model is compiled as the application compiles it (precision from the IR's rt_info, one
thread per physical core, latency hint) with per-node performance counters, run on an enhanced
photograph (scikit-image's retina) at SIDE x SIDE; every run's counters are summed per layer of
the network (the PyTorch module a node came from: ``conv1b``, ``dconv_up1``, ``det_fuse``; nodes
outside a module, such as the decoder's resizes, under their operation type), and the median
wall time of a run is printed too. The machine is shared, so compare models of one run only.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def layer_of(node_name: str, node_type: str) -> str:
    """'/dconv_up1/dconv_up1.0/Conv/part0' -> 'dconv_up1'; '/Resize_1' -> 'Resize'."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) >= 2 and not parts[0][:1].isupper():
        return parts[0]
    return node_type


def main(argv=None) -> int:
    import openvino as ov
    from mxlocal.model_runtime import PRECISION_KEY, inference_threads
    from superretina.demo import retina_bgr
    from superretina.enhance import enhance, to_model_input

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", type=Path, nargs="+", help="OpenVINO IR .xml files")
    ap.add_argument("--side", type=int, default=768, help="input side (default 768, the model frame)")
    ap.add_argument("--runs", type=int, default=10, help="profiled runs per model, taking turns (default 10)")
    ap.add_argument("--top", type=int, default=14, help="layers listed per model (default 14)")
    ap.add_argument("--threads", type=int, default=0,
                    help="inference threads (default 0: one per physical core, as the application); 1 measures "
                         "what one image costs a core, as in a batch with a stream per core")
    args = ap.parse_args(argv)
    threads = args.threads or inference_threads()

    x = to_model_input(enhance(retina_bgr()), (args.side, args.side))[None, None].astype(np.float32)
    core = ov.Core()
    requests = {}
    for path in args.models:
        model = core.read_model(str(path))
        precision = model.get_rt_info(PRECISION_KEY).astype(str) if model.has_rt_info(PRECISION_KEY) else "f32"
        compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "PERF_COUNT": True})
        request = compiled.create_infer_request()
        request.infer([x])  # warm-up (shape-specific compilation)
        requests[path] = (request, precision)
    per_layer = {p: defaultdict(float) for p in args.models}
    walls = {p: [] for p in args.models}
    cpus = {p: [] for p in args.models}   # process CPU time of a run (all threads)
    for _ in range(args.runs):
        for path, (request, _) in requests.items():
            t0, c0 = time.perf_counter(), time.process_time()
            request.infer([x])
            walls[path].append(time.perf_counter() - t0)
            cpus[path].append(time.process_time() - c0)
            for info in request.profiling_info:
                per_layer[path][layer_of(info.node_name, info.node_type)] += info.real_time.total_seconds()
    print(f"{args.side}x{args.side}, batch 1, {threads} threads, {args.runs} runs per model taking turns")
    for path, (_, precision) in requests.items():
        total = sum(per_layer[path].values())
        print(f"\n{path} ({precision}): median wall {1000 * statistics.median(walls[path]):.1f} ms, "
              f"CPU {1000 * statistics.median(cpus[path]):.1f} ms; "
              f"node time per run {1000 * total / args.runs:.1f} ms")
        for name, t in sorted(per_layer[path].items(), key=lambda kv: -kv[1])[:args.top]:
            print(f"  {name:24s} {1000 * t / args.runs:8.1f} ms  {100 * t / total:5.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
