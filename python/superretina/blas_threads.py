"""numpy's BLAS on one thread per process while pairs are registered.

The registration's matrix products (descriptor distances: ~1 000 x 1 000 x 257 per pass, a few
passes per pair) run in a process whose cores are already busy with the network's threads and
the other pairs in flight. OpenBLAS (numpy's BLAS) wakes a worker thread per core for each such
product and the workers then spin, waiting for the next one: on fire_dev with 2 pairs in flight
they burned 0.11 CPU s per pair, ~9 % of the pair's CPU, and the rows are bit-identical on one
thread (``benchmarks/batch_cpu.py``; docs/batch-throughput.md "0.7.0").

So the first :class:`~superretina.registrar.Registrar` of a process limits the BLAS libraries
loaded in it to ``$SUPERRETINA_BLAS_THREADS`` threads (default 1; 0 leaves them as they are,
for a Python session that wants numpy's other products multi-threaded). The limit is the
process's (BLAS has no per-thread setting), so it is set once, not around each product: pairs in
flight on other threads would otherwise undo each other's.
"""
from __future__ import annotations

import logging
import os
import threading

__all__ = ["ENV_BLAS_THREADS", "limit_blas_threads"]

ENV_BLAS_THREADS = "SUPERRETINA_BLAS_THREADS"
DEFAULT_THREADS = 1

log = logging.getLogger(__name__)
_lock = threading.Lock()
_applied: list = []   # [the limit applied (None: left as it was)] once done


def requested_threads() -> int:
    """``$SUPERRETINA_BLAS_THREADS`` as a count (0: leave BLAS alone); the default, with a warning
    naming the variable, for anything but a non-negative integer (as the runtime's own settings)."""
    text = os.environ.get(ENV_BLAS_THREADS, "").strip()
    if not text:
        return DEFAULT_THREADS
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        log.warning("$%s=%r is not a thread count (0: leave numpy's BLAS as it is); using %d",
                    ENV_BLAS_THREADS, text, DEFAULT_THREADS)
        return DEFAULT_THREADS
    return value


def limit_blas_threads() -> int | None:
    """Limit this process's BLAS libraries to :func:`requested_threads` threads, the first time
    only; returns the limit in force (None: left as it was)."""
    with _lock:
        if not _applied:
            threads = requested_threads()
            if threads:
                from threadpoolctl import threadpool_limits

                threadpool_limits(limits=threads, user_api="blas")
                log.debug("numpy's BLAS limited to %d thread(s) ($%s)", threads, ENV_BLAS_THREADS)
            _applied.append(threads or None)
        return _applied[0]
