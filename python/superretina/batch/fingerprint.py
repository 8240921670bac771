"""What produced a result: fingerprints of a pair's inputs and of the run's setup.

A row of a resumable run records two keys. ``inputs_sha`` identifies the input files by resolved
path, size and modification time, taken from the files the worker decoded (reading 100,000
pairs' pixels again on every rerun would take longer than the rerun may). ``setup_sha``
identifies the method and everything that changes its numbers: the resolved configuration (so
a YAML file repeating the defaults changes nothing), the pipeline file's bytes, the model
files' bytes, the runtime, the device and engine that ran the model (as the engine reported it:
rows made on a GPU are not mixed with rows made on the CPU), the package version and the picture
mode. A rerun reuses a row only when both keys match.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from ..provenance import files_sha256

PATH_KEYS = ("config", "model_settings", "pipeline", "model")   # where things are, for people; their bytes are keyed


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@lru_cache(maxsize=32)
def file_sha(path: str) -> str:
    """16-hex-digit SHA-256 of a file's bytes ('missing' when it does not exist)."""
    try:
        return files_sha256(path)[:16]
    except OSError:
        return "missing"


def inputs_sha(*paths) -> str:
    """Key of the input files: resolved path, size and mtime (ns) of each ('missing' when absent)."""
    stats = []
    for p in paths:
        try:
            stats.append((p, os.stat(Path(p).resolve())))
        except OSError:
            stats.append((p, None))
    return read_inputs_sha(stats)


def read_inputs_sha(stats) -> str:
    """:func:`inputs_sha` of files as they were read: ``stats`` is ``[(path, os.stat_result or None), ...]``
    with the ``fstat`` of the descriptor that was decoded (``image_io.read_image_file``), so a file
    replaced while its pair was in flight keys the bytes that produced the row, not the new ones."""
    parts = []
    for p, st in stats:
        p = Path(p).resolve()
        parts.append(f"{p}|missing" if st is None else f"{p}|{st.st_size}|{st.st_mtime_ns}")
    return _sha("\n".join(parts).encode())


def app_setup(app, method: str = "superretina", config_file=None, **extra) -> dict:
    """Setup description of an opened ``superretina.app.App``: one sha per component.

    Returns
    -------
    dict
        ``method``, ``config`` (the file named, for people; not keyed) and ``config_sha`` (of the
        resolved configuration: the pipeline's own settings, ``model_settings`` where it has
        some, are in it), ``pipeline`` and
        ``pipeline_sha``, ``model`` and ``model_sha``, ``runtime``, ``device`` and ``engine``
        (where the model ran, from ``app.provenance``: the engine's report, not the --device
        asked for, so auto and cpu agree where auto runs on the CPU), ``package_version`` (a new
        version may compute differently) and ``extra``'s items.
    """
    from .. import __version__

    config = json.dumps(app.config, sort_keys=True).encode()
    model_sha = app.provenance["model_sha256"][:16]   # the model's bytes (.xml with its .bin)
    return {"method": method, "config": str(config_file) if config_file else "default", "config_sha": _sha(config), "pipeline": str(app.pipeline),
            "pipeline_sha": file_sha(str(app.pipeline)), "model": str(app.model), "model_sha": model_sha,
            "runtime": app.runtime, "device": app.provenance.get("device"), "engine": app.provenance.get("engine"),
            "package_version": __version__,
            # absent where the pipeline has no settings file: those setups read (and key) as before
            **{k: v for k, v in app.provenance.items() if k == "model_settings"}, **extra}


def setup_sha(setup: dict) -> str:
    """Key of a setup description (paths of pipeline and model are not part of it, their bytes are)."""
    keyed = {k: v for k, v in setup.items() if k not in PATH_KEYS}
    return _sha(json.dumps(keyed, sort_keys=True, default=str).encode())


def setup_differences(old: dict, new: dict) -> list[str]:
    """Names of the components that differ, e.g. ['config_sha', 'method'] (path-only keys ignored)."""
    keys = sorted((set(old) | set(new)) - set(PATH_KEYS))
    return [k for k in keys if old.get(k) != new.get(k)]
