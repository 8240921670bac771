"""The static report of a run: ``OUT/index.html``, browsable from the file system without a server."""
from .build import build_report

__all__ = ["build_report"]
