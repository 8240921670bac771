"""Runtime selection: the real MindX SDK when it can be imported, the local runtime otherwise.

Both expose the same two modules, ``StreamManagerApi`` and ``MxpiDataType_pb2``; the driver
code is identical for both.  Force a choice with ``SUPERRETINA_RUNTIME=ascend|local`` or the
CLI flag ``--runtime``.  The real SDK is imported from ``$MX_SDK_HOME/python`` only (its
``set_env.sh`` sets MX_SDK_HOME); without it, ``auto`` means local.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

CHOICES = ("auto", "ascend", "local")   # --runtime and $SUPERRETINA_RUNTIME: the one list
ENV_VAR = "SUPERRETINA_RUNTIME"
SDK_MODULES = ("StreamManagerApi", "MxpiDataType_pb2")


@dataclass(frozen=True)
class Sdk:
    name: str                      # "ascend" or "local"
    api: ModuleType                # StreamManagerApi module
    pb: ModuleType                 # MxpiDataType_pb2 module


class RuntimeUnavailable(RuntimeError):
    pass


def sdk_python_dir() -> Path | None:
    """``$MX_SDK_HOME/python`` where the SDK is installed there, else None."""
    home = os.environ.get("MX_SDK_HOME")
    if not home:
        return None
    folder = Path(home).expanduser().resolve() / "python"
    return folder if (folder / "StreamManagerApi.py").is_file() else None


def _ascend() -> Sdk:
    """Import the SDK's modules from ``$MX_SDK_HOME/python`` and nowhere else.

    Importing ``StreamManagerApi`` by name would run whatever file of that name comes first on
    sys.path — the working directory's, under ``python -m`` — so the folder is named, put first,
    and each module must come from it.
    """
    folder = sdk_python_dir()
    if folder is None:
        raise RuntimeUnavailable(
            "the MindX SDK was not found: $MX_SDK_HOME/python/StreamManagerApi.py does not exist "
            f"(MX_SDK_HOME={os.environ.get('MX_SDK_HOME', '')!r}); source the SDK's set_env.sh or use --runtime local")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))   # the SDK's own _StreamManagerApi*.so is imported from there too
    modules = []
    for name in SDK_MODULES:
        loaded = sys.modules.get(name)
        try:
            module = loaded or importlib.import_module(name)
        except ImportError as exc:
            raise RuntimeUnavailable(f"{folder}: importing the MindX SDK's {name} failed ({exc})") from exc
        origin = Path(getattr(module, "__file__", "") or "").resolve()
        if origin.parent != folder:
            raise RuntimeUnavailable(f"{name} would be imported from {origin}, not from the SDK folder {folder}; "
                                     "refusing to run it (remove that file from the path or use --runtime local)")
        modules.append(module)
    return Sdk("ascend", *modules)


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
    if sdk_python_dir() is None:
        return _local()
    return _ascend()   # an SDK is installed: a problem importing it is worth an error, not a silent fallback
