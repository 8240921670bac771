"""Engines that register a batch's pairs: threads on this machine (local) or Ray actors (ray).

An engine opens the application (once per worker), says which setup it runs (``setup``), and
``map``s pair jobs to ``(job, PairOutput)`` in the order they finish. ``drain`` hands back the
pairs still finishing after an interruption (Ctrl-C), so that none of them is lost.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from .fingerprint import app_setup
from .pairs import PairJob
from .worker import PairOutput, process_pair

DestFn = Callable[[PairJob], Optional[Path]]
# Upper bounds of --jobs. Local: each pair in flight holds its photographs and pictures (32 jobs
# took 2.8 GB in issue 20's reproduction, ~90 MB a job), on a machine's few cores.
MAX_JOBS = {"local": 16, "ray": 4096}
JOBS_WHY = {"local": "pairs in flight on this machine, each holding ~90 MB of images",
            "ray": "Ray workers"}


# OpenVINO CPU streams of a local batch with pairs in flight (``$MXLOCAL_INFER_STREAMS`` overrides):
# 2 streams x 1 thread ran 2 requests at once 18 % faster per image than 1 stream x 2 threads, and
# one request alone 18 % slower (benchmarks/infer_modes.py; docs/batch-throughput.md): a batch
# wants throughput, a single registration latency.
BATCH_STREAMS = 2
_STREAMS_LOCK = threading.Lock()


@contextmanager
def _streams_setting(jobs: int):
    """``$MXLOCAL_INFER_STREAMS`` = min(jobs, BATCH_STREAMS) while the application opens, unless set."""
    from mxlocal.model_runtime import ENV_STREAMS

    with _STREAMS_LOCK:   # the environment is the process's: one opening at a time
        if os.environ.get(ENV_STREAMS, "").strip():
            yield
            return
        os.environ[ENV_STREAMS] = str(min(jobs, BATCH_STREAMS))
        try:
            yield
        finally:
            os.environ.pop(ENV_STREAMS, None)


class LocalEngine:
    """Pairs in flight through one opened application (one model, one stream) from N threads.

    The stream keeps several batches in flight and the image work releases the GIL, so a few
    threads keep both the model and the CPU cores busy (``--jobs``). With 2 or more jobs the
    local runtime's OpenVINO engine runs 2 requests at once (``BATCH_STREAMS``; identical
    outputs; summary.json's ``this_run`` records it).
    """

    name = "local"

    def __init__(self, config: Path | None, pipeline: Path | None, runtime: str | None, jobs: int = 2,
                 device: str | None = None):
        from ..app import open_app

        self.jobs = max(1, int(jobs))
        with _streams_setting(self.jobs):
            from mxlocal.model_runtime import inference_streams

            self.app = open_app(config, pipeline, runtime, device=device)
            # what the engine was asked for (an OpenVINO CPU engine runs it; others run 1 at a time)
            self.inference_streams = inference_streams()
        self.config = config
        self._pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="superretina-batch")
        self._inflight: dict = {}

    def setup(self, pictures: str) -> dict:
        return app_setup(self.app, config_file=self.config, pictures=pictures)

    def map(self, jobs: Iterable[PairJob], pictures: str, dest_for: DestFn,
            work: str = "pair") -> Iterator[tuple[PairJob, PairOutput]]:
        """``work``: "pair" (``process_pair``) or "series" (``superretina.series.batch.process_series``)."""
        fn = process_pair
        if work == "series":
            from ..series.batch import process_series as fn
        queue = deque(jobs)
        while queue or self._inflight:
            while queue and len(self._inflight) < 2 * self.jobs:  # bounded: 100,000 jobs are not 100,000 futures
                job = queue.popleft()
                fut = self._pool.submit(fn, self.app, job, pictures, dest_for(job))
                self._inflight[fut] = job
            done, _ = wait(list(self._inflight), return_when=FIRST_COMPLETED)
            for fut in done:
                job = self._inflight.pop(fut)
                yield job, fut.result()

    def drain(self) -> Iterator[tuple[PairJob, PairOutput]]:
        """After an interruption: the pairs already running, as they finish (none started anew)."""
        for fut in list(self._inflight):
            fut.cancel()
        for fut, job in list(self._inflight.items()):
            if not fut.cancelled():
                try:
                    yield job, fut.result()
                except Exception:  # noqa: BLE001 - already interrupting; the pair reruns next time
                    pass
        self._inflight.clear()

    @property
    def workers(self) -> int:
        return self.jobs

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.app.close()


def make_engine(name: str, config, pipeline, runtime, jobs: int | None, address: str | None,
                device: str | None = None):
    """The engine called ``name`` ('local' or 'ray'), opened; ``device``: --device (None: auto or
    $MXLOCAL_DEVICE), for every worker."""
    if name == "local":
        return LocalEngine(config, pipeline, runtime, jobs or 2, device)
    if name == "ray":
        from .ray_engine import RayEngine
        return RayEngine(config, pipeline, runtime, jobs, address, device=device)
    raise ValueError(f"--engine must be local or ray, got {name!r}")
