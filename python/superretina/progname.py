"""The command's name in help and usage: ``superretina`` when installed, ``bash run.sh`` from the checkout.

run.sh sets ``$SUPERRETINA_PROG`` before it runs the console script; anything else (the console
script a pip install makes, ``python -m superretina.cli``) is ``superretina``.
"""
from __future__ import annotations

import os

ENV_PROG = "SUPERRETINA_PROG"


def prog_name(subcommand: str = "") -> str:
    """``superretina [subcommand]`` or, under run.sh, ``bash run.sh [subcommand]``."""
    base = os.environ.get(ENV_PROG, "").strip() or "superretina"
    return f"{base} {subcommand}".strip()
