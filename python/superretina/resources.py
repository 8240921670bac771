"""Where the shipped configuration, pipelines and model live, in a checkout and when installed.

The files stay at the project's top level (``configs/``, ``pipeline/``, ``model/``: what users
edit); ``superretina/assets/`` links to them, and a wheel carries them as package data, so
:mod:`importlib.resources` finds them either way. A user's own ``--config``, ``--pipeline`` and
``modelPath`` always win over these.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def asset(*parts: str) -> Path:
    """Path of a shipped file, e.g. ``asset("pipeline", "superretina.pipeline")``.

    The pipelines name their model relative to themselves (``../model/...``), which holds both
    in the checkout and in an installed package, so callers get a real file-system path.
    """
    return Path(str(resources.files("superretina") / "assets" / Path(*parts)))


DEFAULT_CONFIG = asset("configs", "default.yaml")
DEFAULT_PIPELINE = asset("pipeline", "superretina.pipeline")
