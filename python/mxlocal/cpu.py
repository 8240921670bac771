"""CPU facts the runtime tunes itself by."""
from __future__ import annotations

import os
from pathlib import Path


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-thread siblings counted once)."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        try:
            cores.add(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip())
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))
