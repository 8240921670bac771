"""A running stream: element instances connected by queues, one worker thread per element.

``Stream.send`` returns as soon as the buffer is queued at the appsrc; every element takes
buffers from its own FIFO inbox on its own thread, so order is preserved end to end and a
``Get`` waits on the appsink's result FIFO (or the unique-id map) for its result.
"""
from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass

from mxlocal import errors as E
from mxlocal import plugin_loader
from mxlocal.buffer import Buffer
from mxlocal.pipeline_config import StreamConfig, refuse_cycles
from mxlocal.plugin_base import ElementContext, PluginBase

log = logging.getLogger("mxlocal")

MODE_DEFAULT, MODE_NORMAL, MODE_UNIQUE_ID = 0, 1, 2  # SDK MXST_TRANSMISSION_*
_STOP = object()
JOIN_TIMEOUT_S = 10.0


@dataclass
class Result:
    """What an appsink hands to ``GetResult``/``GetProtobuf``.

    Attributes
    ----------
    error_code : int
        0, or the code of the pipeline error.
    data : bytes
        Buffer bytes (``b"{}"`` when empty), or the error text.
    buffer : Buffer
        The buffer itself: its metadata and the memory its pointers reference.
    """

    error_code: int
    data: bytes
    buffer: Buffer


class ResultQueue:
    """Unbounded blocking FIFO of one appsink (the SDK's ``BlockingQueue``)."""

    def __init__(self):
        self._items = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def push(self, item: Result) -> None:
        with self._cond:
            if not self._closed:
                self._items.append(item)
                self._cond.notify()

    def pop(self, timeout_s: float | None) -> Result | None:
        """Next result, waiting up to ``timeout_s`` (``None``: forever); ``None`` on timeout/close."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while not self._items and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()


class UniqueResults:
    """Results by unique id for ``SendDataWithUniqueId``/``GetResultWithUniqueId``."""

    def __init__(self):
        self._items: dict[int, Result] = {}
        self._waiting: set[int] = set()  # ids sent and not yet collected or given up
        self._cond = threading.Condition()
        self._closed = False

    def expect(self, uid: int) -> None:
        with self._cond:
            self._waiting.add(uid)

    def push(self, uid: int, item: Result) -> None:
        with self._cond:
            if uid in self._waiting and not self._closed:  # a late result of a timed-out id is dropped
                self._items[uid] = item
                self._cond.notify_all()

    def pop(self, uid: int, timeout_s: float) -> Result | None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if uid not in self._waiting:
                return None
            while uid not in self._items and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._waiting.discard(uid)
            return self._items.pop(uid, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()


class ElementRunner:
    """One element: its plugin, its inbox (items are ``(pad, buffer)``), its worker thread."""

    def __init__(self, stream_name: str, plugin: PluginBase, n_pads: int):
        self.plugin = plugin
        self.n_pads = n_pads
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.outputs: list[tuple["ElementRunner", int]] = []
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"mxlocal:{stream_name}:{plugin.name}")

    def push(self, pad: int, buffer) -> None:
        self.inbox.put((pad, buffer))

    def _emit(self, buffers) -> None:
        for buffer in buffers or ():
            # fan-out: copy for the other branches before the first consumer can touch the buffer
            copies = [buffer] + [buffer.branch() for _ in self.outputs[1:]]
            for (runner, pad), copy in zip(self.outputs, copies):
                runner.push(pad, copy)

    def _run(self) -> None:
        pending = [collections.deque() for _ in range(max(self.n_pads, 1))]
        plugin = self.plugin
        while True:
            deadline = plugin.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                pad, buffer = self.inbox.get(timeout=timeout)
            except queue.Empty:
                if not self.stopping.is_set():
                    self._emit(self._guard(plugin.on_timeout, []))
                continue
            if buffer is _STOP:
                return
            if self.stopping.is_set():
                continue  # the SDK drops data still in flight when a stream is destroyed
            pending[pad].append(buffer)
            while all(pending):  # one buffer from every sink pad, as the SDK's Process(vector)
                inputs = [p.popleft() for p in pending]
                if not plugin.handles_errors and any(b.has_errors() for b in inputs):
                    first = inputs[0]
                    for other in inputs[1:]:
                        first.errors.update(other.errors)
                    self._emit([first])
                    continue
                self._emit(self._guard(lambda: plugin.process(inputs), inputs))

    def _guard(self, call, inputs):
        """Run a plugin hook; an unexpected exception becomes error info on the inputs."""
        try:
            return call()
        except Exception as exc:  # keep the stream alive and the Get side unblocked
            log.exception("%s: unexpected failure", self.plugin.where())
            if not inputs:
                return []
            inputs[0].add_error(self.plugin.name, E.APP_ERR_COMM_FAILURE,
                                f"{self.plugin.name} failed: {type(exc).__name__}: {exc}")
            return [inputs[0]]

    def stop(self) -> None:
        """Ask the worker to exit; buffers still queued are dropped."""
        self.stopping.set()
        self.inbox.put((0, _STOP))


class Stream:
    """A created stream: elements built, linked and initialised; nothing runs until :meth:`start`.

    Raises (from the constructor)
    -----------------------------
    mxlocal.errors.MxError
        6014 unknown factory, 6015 bad properties or element init failure, 6007 a link the
        elements cannot make, 6016 an element left unlinked, 6005 a data flow that loops back.
    """

    def __init__(self, config: StreamConfig):
        self.name = config.name
        self.config = config
        self.runners: dict[str, ElementRunner] = {}
        self.appsrc_names = config.appsrc_names()
        self.appsink_names = config.appsink_names()
        self.results = [ResultQueue() for _ in self.appsink_names]
        self.unique_results = UniqueResults()
        self._mode = MODE_DEFAULT
        self._lock = threading.Lock()  # send order and the mode latch (SDK sendDataMutex_)
        self._next_uid = 0
        self._started = False
        self._stopped = False
        plugins = self._instantiate()
        try:
            self._connect(plugins)
        except Exception:
            self._deinit(plugins.values())
            raise

    # ---- construction -------------------------------------------------------------------------
    def _instantiate(self) -> dict[str, PluginBase]:
        # Same phases as the SDK: create every element with its properties (6014/6015), then
        # link (6007), then look for unlinked pads (6016), then start the plugins (init).
        classes, values = {}, {}
        for name, elem in self.config.elements.items():
            try:
                classes[name] = plugin_loader.load_factory(elem.factory)
            except E.MxError as exc:
                raise E.MxError(exc.code, f"stream '{self.name}' element '{name}': {exc.message}") from None
            values[name] = classes[name].validate_properties(self.name, name, elem.props)
            if ("deviceId" in classes[name].declared_properties() and "deviceId" not in elem.props
                    and self.config.device_id is not None):
                values[name]["deviceId"] = self.config.device_id  # plugins default to stream_config's
        for unlinked_pass in (False, True):
            for name, elem in self.config.elements.items():
                self._check_pads(classes[name], name, elem, unlinked_pass)
        refuse_cycles(self.config)  # 6005: an element fed from its own output would wait forever
        plugins: dict[str, PluginBase] = {}
        name = ""
        try:
            for name, elem in self.config.elements.items():
                context = ElementContext(self.name, list(elem.upstream), self.config.base_dir,
                                         self.config.device_id)
                plugin = classes[name](name, values[name], context)
                if elem.factory == "appsink":
                    index = self.appsink_names.index(name)
                    plugin.deliver = lambda buf, index=index: self._deliver(index, buf)
                plugins[name] = plugin
                plugin.init()
        except E.MxError:
            self._deinit(plugins.values())
            raise
        except Exception as exc:
            self._deinit(plugins.values())
            raise E.MxError(E.APP_ERR_ELEMENT_INVALID_PROPERTIES,
                            f"stream '{self.name}' element '{name}': init failed: {type(exc).__name__}: {exc}") from exc
        return plugins

    def _check_pads(self, cls, name: str, elem, unlinked_pass: bool) -> None:
        where = f"stream '{self.name}' element '{name}' ({elem.factory})"
        if unlinked_pass:
            if cls.sink_pads != 0 and not elem.upstream:
                raise E.MxError(E.APP_ERR_ELEMENT_PAD_UNLINKED,
                                f"{where}: input pad is not linked; no element has it in \"next\"")
            if cls.has_src_pad and not elem.next:
                raise E.MxError(E.APP_ERR_ELEMENT_PAD_UNLINKED,
                                f"{where}: output pad is not linked; add \"next\"")
            return
        if elem.next and not cls.has_src_pad:
            raise E.MxError(E.APP_ERR_STREAM_LINK_FAILED,
                            f"{where}: has no output pad, so it cannot link to {elem.next[0].target!r}")
        if cls.sink_pads == 0 and elem.upstream:
            raise E.MxError(E.APP_ERR_STREAM_LINK_FAILED,
                            f"{where}: has no input pad, but {elem.upstream[0]!r} links into it")
        if cls.sink_pads is not None and len(elem.upstream) > cls.sink_pads:
            raise E.MxError(E.APP_ERR_STREAM_LINK_FAILED,
                            f"{where}: has {cls.sink_pads} input pad(s) but {len(elem.upstream)} elements link into it")

    def _connect(self, plugins: dict) -> None:
        for name, plugin in plugins.items():
            elem = self.config.elements[name]
            self.runners[name] = ElementRunner(self.name, plugin, len(elem.upstream))
        for name, elem in self.config.elements.items():
            for link in elem.next:
                pad = self.config.elements[link.target].upstream.index(name)
                self.runners[name].outputs.append((self.runners[link.target], pad))

    @staticmethod
    def _deinit(plugins) -> None:
        for plugin in plugins:
            try:
                plugin.deinit()
            except Exception:  # releasing is best effort
                log.exception("%s: deinit failed", plugin.where())

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        for runner in self.runners.values():
            runner.thread.start()
        self._started = True

    def stop(self) -> None:
        """Stop the element threads (joined), drop data in flight and wake blocked getters."""
        if self._stopped:
            return
        self._stopped = True
        for q in self.results:
            q.close()
        self.unique_results.close()
        if self._started:
            for runner in self.runners.values():
                runner.stop()
            for runner in self.runners.values():
                runner.thread.join(JOIN_TIMEOUT_S)  # an element busy in a model run finishes it first
                if runner.thread.is_alive():
                    log.warning("%s: worker did not stop within %.0f s", runner.plugin.where(), JOIN_TIMEOUT_S)
        self._deinit(r.plugin for r in self.runners.values())

    # ---- sending -------------------------------------------------------------------------------
    def appsrc_by_index(self, index: int) -> str | None:
        return self.appsrc_names[index] if 0 <= index < len(self.appsrc_names) else None

    def appsrc_by_name(self, name: str) -> str | None:
        return name if name in self.appsrc_names else None

    def send(self, appsrc: str, buffer: Buffer, mode: int) -> int:
        """Latch/check the transmission mode and queue ``buffer`` at ``appsrc``; 0 or 6008."""
        with self._lock:
            code = self._latch(mode)
            if code:
                return code
            if mode == MODE_UNIQUE_ID:
                uid = self._next_uid
                self._next_uid += 1
                buffer.extra["unique_id"] = uid
                self.unique_results.expect(uid)
            self.runners[appsrc].push(0, buffer)
        return 0

    def _latch(self, mode: int) -> int:
        if self._mode == MODE_DEFAULT:
            self._mode = mode
        elif self._mode != mode:
            log.error("stream '%s': cannot mix SendData/SendProtobuf with SendDataWithUniqueId;"
                      " use the same send function as the first call [%d]", self.name,
                      E.APP_ERR_STREAM_TRANS_MODE_NOT_MATCHED)
            return E.APP_ERR_STREAM_TRANS_MODE_NOT_MATCHED
        return 0

    @property
    def mode(self) -> int:
        return self._mode

    @property
    def stopped(self) -> bool:
        return self._stopped

    # ---- receiving -----------------------------------------------------------------------------
    def _deliver(self, sink_index: int, buffer: Buffer) -> None:
        if buffer.has_errors():
            code, data = buffer.error_output()
        else:
            code, data = 0, bytes(buffer.data) or b"{}"  # SDK GenerateOutputData: empty -> "{}"
        result = Result(code, data, buffer)
        if self._mode == MODE_UNIQUE_ID:
            uid = buffer.extra.get("unique_id")
            if uid is None:
                log.warning("stream '%s': result without unique id dropped (an element did not keep it)", self.name)
                return
            self.unique_results.push(uid, result)
        else:
            self.results[sink_index].push(result)
