"""Independent image jobs side by side in threads.

OpenCV and numpy release the GIL in their loops, so decoding, enhancing or drawing a second
image beside the first uses the second core instead of waiting (benchmarks: ``bash run.sh
bench``). One small shared pool: pairs in flight from several threads share it too.
:func:`in_flight` keeps several *pairs* in flight instead (a series' pairs): while one waits for
the network, the next one's enhancement and post-processing use the other core.
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
_PREFIX = "superretina-images"
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix=_PREFIX)


def run_all(*jobs: Callable[[], T]) -> list[T]:
    """Run the jobs at once (the first in the calling thread); results in job order.

    Every job finishes before this returns; the first exception raised, in job order, is
    raised again here.
    """
    if threading.current_thread().name.startswith(_PREFIX):  # nested: queueing could deadlock the pool
        return [job() for job in jobs]
    futures = [_POOL.submit(job) for job in jobs[1:]]
    errors: list[BaseException] = []
    results: list = []
    try:
        results.append(jobs[0]())
    except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others finish
        errors.append(exc)
    for future in futures:
        try:
            results.append(future.result())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
    if errors:
        raise errors[0]
    return results


def pair_map(fn: Callable[..., T], a, b) -> tuple[T, T]:
    """``(fn(a), fn(b))``, computed at once."""
    ra, rb = run_all(lambda: fn(a), lambda: fn(b))
    return ra, rb


def in_flight(fn: Callable[..., T], items: Iterable, jobs: int) -> Iterator[T]:
    """``fn(item)`` for every item, up to ``jobs`` at once, yielded in the items' order.

    ``jobs`` <= 1 runs them one by one in the calling thread. ``fn`` must be thread-safe (an
    opened ``App``/``Session`` is). An exception of ``fn`` is raised when its item's turn comes;
    the items already started finish first and none is started after it.
    """
    if jobs <= 1:
        for item in items:
            yield fn(item)
        return
    items = iter(items)
    with ThreadPoolExecutor(max_workers=int(jobs), thread_name_prefix="superretina-inflight") as pool:
        window: deque = deque()
        try:
            for item in items:
                window.append(pool.submit(fn, item))
                if len(window) >= jobs:   # bounded: at most ``jobs`` started and not yet handed back
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for future in window:   # an error or the caller stopped early: start no more
                future.cancel()
