"""What produced a result: package version, model file and its sha256, pipeline, runtime, config.

Written into every result.json, so that a result says what made it and results made another
way are never taken for one another.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from . import __version__


def files_sha256(*files) -> str:
    """sha256 (hex) of the files' bytes, one after the other, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_sha256(model: Path) -> str:
    """sha256 of the model's bytes: the file, and for an OpenVINO ``.xml`` its ``.bin`` weights after it."""
    files = [Path(model)]
    if files[0].suffix.lower() == ".xml" and files[0].with_suffix(".bin").is_file():
        files.append(files[0].with_suffix(".bin"))
    return files_sha256(*files)


def describe(model: Path, pipeline: Path, runtime: str, config: dict, engine: dict | None = None,
             model_settings: Path | None = None) -> dict:
    """The provenance entries of result.json (``config`` is the effective configuration).

    ``model_settings``: the pipeline's own settings file laid under the user's config
    (``config.pipeline_settings``), named when there is one.

    ``engine``: where the model ran as its engine reported it
    (``SuperRetinaStream.engine_report``); gives ``device`` (cpu, gpu, ascend) and ``engine``
    (name, version, providers, and OpenVINO's precision) — what ran, not what ``--device`` asked.
    """
    out = {"package_version": __version__, "model": str(model), "model_sha256": model_sha256(model),
           "pipeline": str(pipeline), "runtime": runtime}
    if engine is not None:
        out["device"] = engine["device"]
        out["engine"] = {k: v for k, v in engine.items() if k != "device"}
    if model_settings is not None:
        out["model_settings"] = str(model_settings)
    return {**out, "config": config}
