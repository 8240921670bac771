"""Runtime selection: the real MindX SDK when it can be imported, the local runtime otherwise.

Both expose the same two modules, ``StreamManagerApi`` and ``MxpiDataType_pb2``; the driver
code is identical for both.  Force a choice with ``SUPERRETINA_RUNTIME=ascend|local`` or the
CLI flag ``--runtime``.  The real SDK lives in ``$MX_SDK_HOME/python`` (added by its
``set_env.sh`` to PYTHONPATH; added here too when MX_SDK_HOME is set).
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from types import ModuleType

CHOICES = ("auto", "ascend", "local")
ENV_VAR = "SUPERRETINA_RUNTIME"


@dataclass(frozen=True)
class Sdk:
    name: str                      # "ascend" or "local"
    api: ModuleType                # StreamManagerApi module
    pb: ModuleType                 # MxpiDataType_pb2 module


class RuntimeUnavailable(RuntimeError):
    pass


def _ascend() -> Sdk:
    home = os.environ.get("MX_SDK_HOME")
    if home and os.path.join(home, "python") not in sys.path:
        sys.path.insert(0, os.path.join(home, "python"))
    try:
        api = importlib.import_module("StreamManagerApi")
        pb = importlib.import_module("MxpiDataType_pb2")
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"the MindX SDK is not importable ({exc}); source the SDK's set_env.sh "
            "(it sets MX_SDK_HOME and PYTHONPATH) or use --runtime local") from exc
    if getattr(api, "__file__", "") and "mxlocal" in api.__file__:
        raise RuntimeUnavailable("StreamManagerApi on sys.path is this project's local runtime, not the SDK")
    return Sdk("ascend", api, pb)


def _local() -> Sdk:
    from mxlocal import MxpiDataType_pb2, StreamManagerApi

    return Sdk("local", StreamManagerApi, MxpiDataType_pb2)


def load_sdk(choice: str | None = None) -> Sdk:
    """Import the runtime named by ``choice`` (or $SUPERRETINA_RUNTIME, default auto)."""
    choice = (choice or os.environ.get(ENV_VAR) or "auto").lower()
    if choice not in CHOICES:
        # RuntimeUnavailable, not ValueError: the CLI reports it as one line (a bad
        # $SUPERRETINA_RUNTIME gave a traceback).
        raise RuntimeUnavailable(f"runtime must be one of {', '.join(CHOICES)}, got {choice!r} (from --runtime or ${ENV_VAR})")
    if choice == "local":
        return _local()
    if choice == "ascend":
        return _ascend()
    try:
        return _ascend()
    except RuntimeUnavailable:
        return _local()
