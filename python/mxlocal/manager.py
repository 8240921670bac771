"""The stream registry behind ``StreamManagerApi`` (the SDK's ``MxStreamManager``).

Creates streams from pipeline JSON (all or nothing: a failed create leaves no stream of that
call behind), looks them up by name, stops and destroys them. Errors are logged to the
``mxlocal`` logger as one line naming stream, element and problem, and returned as SDK codes.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from mxlocal import errors as E
from mxlocal.pipeline_config import parse_pipeline
from mxlocal.stream import Stream

log = logging.getLogger("mxlocal")

MAX_PIPELINE_BYTES = 10 * 1024 * 1024  # SDK MAX_PIPELINE_STRING


class StreamManager:
    """Streams by name; thread-safe."""

    def __init__(self):
        self._streams: dict[str, Stream] = {}
        self._lock = threading.RLock()

    def get(self, name: str) -> Stream | None:
        with self._lock:
            return self._streams.get(name)

    def create(self, text: bytes, base_dir: Path | None = None) -> int:
        """Create and start every stream of a pipeline; 0 or the SDK code of the first problem."""
        if not text or len(text) >= MAX_PIPELINE_BYTES:
            return self._report(E.MxError(E.APP_ERR_COMM_INVALID_PARAM,
                                          "pipeline config is empty or larger than 10 MiB"))
        try:
            configs = parse_pipeline(text, base_dir)
        except E.MxError as exc:
            return self._report(exc)
        with self._lock:
            built: list[Stream] = []
            try:
                for config in configs:
                    if config.name in self._streams:
                        raise E.MxError(E.APP_ERR_STREAM_EXIST,
                                        f"stream '{config.name}' already exists; StopStream it first or use another name")
                    built.append(Stream(config))
            except E.MxError as exc:
                for stream in built:
                    stream.stop()
                return self._report(exc)
            for stream in built:
                stream.start()
                self._streams[stream.name] = stream
        log.info("created stream(s): %s", ", ".join(s.name for s in built))
        return E.APP_ERR_OK

    def create_from_file(self, path: str) -> int:
        """As :meth:`create` for a ``.pipeline`` file; relative model paths resolve against its folder."""
        file = Path(path)
        if not file.is_file():
            return self._report(E.MxError(E.APP_ERR_COMM_INVALID_PATH, f"pipeline file {path!r} does not exist"))
        try:
            text = file.read_bytes()
        except OSError as exc:
            return self._report(E.MxError(E.APP_ERR_COMM_INVALID_PATH, f"cannot read pipeline file {path!r}: {exc}"))
        base_dir = file.resolve().parent
        code = self.create(text, base_dir)
        return code

    def stop(self, name: str) -> int:
        """Stop and forget one stream (it may be created again); 6002 if there is none."""
        with self._lock:
            stream = self._streams.pop(name, None)
        if stream is None:
            return self._report(E.MxError(E.APP_ERR_STREAM_NOT_EXIST, f"StopStream: stream '{name}' does not exist"))
        stream.stop()
        return E.APP_ERR_OK

    def model_engine(self, name: str, element: str) -> dict | None:
        """The ``report()`` of the engine running an element's model (where it runs, asked of the
        engine); None when the stream, the element or its model is not there."""
        stream = self.get(name)
        runner = stream.runners.get(element) if stream is not None else None
        model = getattr(runner.plugin, "model", None) if runner is not None else None
        return model.report() if model is not None and hasattr(model, "report") else None

    def destroy_all(self) -> int:
        with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
        for stream in streams:
            stream.stop()
        return E.APP_ERR_OK

    @staticmethod
    def _report(exc: E.MxError) -> int:
        log.error("%s", exc)
        return exc.code
