"""Find the element class of a factory name: ``<plugin dir>/<factory>.py``.

Search order: the folders in ``$MXLOCAL_PLUGIN_PATH`` (``os.pathsep``-separated, first match
wins, so a user module can replace a built-in one), then the project's ``plugins/`` folder
(``mxlocal/plugins`` links to it).
A user adds an element by dropping a module there, the way the SDK finds plugin libraries on
``GST_PLUGIN_PATH``. Modules are imported by file path, so ``plugins/`` needs no
``__init__.py`` and its names never shadow installed packages.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
import threading
from pathlib import Path

from mxlocal import errors as E
from mxlocal.plugin_base import PluginBase

ENV_PLUGIN_PATH = "MXLOCAL_PLUGIN_PATH"
# The project's top-level plugins/, linked as mxlocal/plugins so that a wheel carries it too.
BUILTIN_PLUGIN_DIR = Path(__file__).resolve().parent / "plugins"

_FACTORY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_cache: dict[Path, type] = {}
_lock = threading.Lock()

# Factories of the real SDK that this runtime does not implement: named in the error so the
# user knows the pipeline is fine for Ascend but needs an element module here.
KNOWN_SDK_FACTORIES = frozenset({
    "mxpi_objectpostprocessor", "mxpi_classpostprocessor", "mxpi_imagecrop", "mxpi_modelinfer",
    "mxpi_videodecoder", "mxpi_videoencoder", "mxpi_rtspsrc", "mxpi_parallel2serial",
    "mxpi_distributor", "mxpi_synchronize", "mxpi_skipframe", "mxpi_motsimplesort",
    "mxpi_opencvosd", "mxpi_object2osdinstances", "mxpi_channelselector", "mxpi_imagenormalize",
    "mxpi_semanticsegpostprocessor", "mxpi_textgenerationpostprocessor", "mxpi_bufferstablizer",
    "mxpi_featurematch", "mxpi_facealignment", "mxpi_picturedivision", "mxpi_roigenerator",
    "mxpi_nmsoverlapedroi", "mxpi_selectedframe", "mxpi_stackframe", "mxpi_trackidreplaceclassname",
    "mxpi_warpperspective", "mxpi_qualitydetection", "mxpi_objectselector", "mxpi_dataserialize",
    "mxpi_dumpdata", "mxpi_loaddata", "mxpi_sampleplugin", "tee", "fakesink", "filesink",
})


def plugin_dirs() -> list[Path]:
    """Folders searched for ``<factory>.py``, in order."""
    dirs = [Path(p) for p in os.environ.get(ENV_PLUGIN_PATH, "").split(os.pathsep) if p.strip()]
    dirs.append(BUILTIN_PLUGIN_DIR)
    return dirs


def load_factory(factory: str) -> type:
    """Return the :class:`PluginBase` subclass implementing ``factory``.

    Raises
    ------
    mxlocal.errors.MxError
        6014 when no module defines it (or the module fails to import).
    """
    if not _FACTORY_NAME.match(factory):
        raise E.MxError(E.APP_ERR_ELEMENT_INVALID_FACTORY, f"factory name {factory!r} is not valid")
    for folder in plugin_dirs():
        path = folder / f"{factory}.py"
        if path.is_file():
            return _load_module_class(path.resolve(), factory)
    searched = ", ".join(str(d) for d in plugin_dirs())
    hint = (" (a MindX SDK plugin the local runtime does not implement)"
            if factory in KNOWN_SDK_FACTORIES else "")
    raise E.MxError(E.APP_ERR_ELEMENT_INVALID_FACTORY,
                    f"unknown factory {factory!r}{hint}: no {factory}.py in {searched};"
                    f" add one there or in ${ENV_PLUGIN_PATH}")


def _load_module_class(path: Path, factory: str) -> type:
    with _lock:
        if path in _cache:
            return _cache[path]
        module_name = f"mxlocal_plugins.{factory}_{abs(hash(str(path))):x}"
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except Exception as exc:  # a broken user module must not crash the caller
            sys.modules.pop(module_name, None)
            raise E.MxError(E.APP_ERR_ELEMENT_INVALID_FACTORY,
                            f"factory {factory!r}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
        classes = [obj for obj in vars(module).values()
                   if isinstance(obj, type) and issubclass(obj, PluginBase)
                   and obj is not PluginBase and obj.factory == factory]
        if len(classes) != 1:
            raise E.MxError(E.APP_ERR_ELEMENT_INVALID_FACTORY,
                            f"factory {factory!r}: {path} must define exactly one PluginBase subclass"
                            f" with factory = {factory!r} (found {len(classes)})")
        _cache[path] = classes[0]
        return classes[0]
