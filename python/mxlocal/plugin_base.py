"""Base class of the local runtime's stream elements (one subclass per MindX factory).

A plugin module ``plugins/<factory>.py`` defines one subclass of :class:`PluginBase` whose
``factory`` equals the file name. The runtime validates the pipeline ``props`` against
:attr:`PluginBase.properties` (bad name/value -> SDK code 6015), calls :meth:`init` once when
the stream is created, then :meth:`process` for every set of input buffers on the element's own
worker thread, and :meth:`deinit` when the stream stops.

Minimal element::

    from mxlocal.plugin_base import PluginBase, Prop

    class Passthrough(PluginBase):
        factory = "my_passthrough"
        properties = {"gain": Prop("float", 1.0, minimum=0.0)}

        def process(self, buffers):
            return [buffers[0]]
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from mxlocal import errors as E
from mxlocal.buffer import Buffer

log = logging.getLogger("mxlocal")

_INT_KINDS = ("int", "uint")


@dataclass(frozen=True)
class Prop:
    """Declaration of one element property.

    Parameters
    ----------
    kind : {"string", "int", "uint", "float", "bool"}
    default : object
        Value used when the pipeline does not set the property.
    minimum, maximum : number, optional
        Inclusive range for numeric kinds.
    choices : tuple[str, ...], optional
        Allowed values for strings.
    required : bool
        The pipeline must set it (non-empty).
    """

    kind: str
    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    required: bool = False

    def parse(self, text: str):
        """Convert the pipeline string to a value; raise ``ValueError`` naming the rule broken."""
        text = text.strip() if self.kind != "string" else text
        if self.kind == "string":
            if self.required and not text:
                raise ValueError("must not be empty")
            if self.choices and text not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}")
            return text
        if self.kind == "bool":
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("must be true/false or 1/0")
        try:
            value = int(text, 10) if self.kind in _INT_KINDS else float(text)
        except ValueError:
            raise ValueError(f"must be {'an integer' if self.kind in _INT_KINDS else 'a number'}") from None
        low = 0 if self.kind == "uint" and self.minimum is None else self.minimum
        if low is not None and value < low or self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be in [{low}, {self.maximum}]")
        return value


# Properties every mxpi_* plugin has (reference §3.1 "Common plugin properties").
COMMON_PROPERTIES = {
    "status": Prop("uint", 0, maximum=1),
    "deviceId": Prop("int", 0, minimum=0, maximum=1024),
    "dataSource": Prop("string", "auto"),
}


@dataclass
class ElementContext:
    """What an element knows about its place in the stream.

    Attributes
    ----------
    stream : str
        Stream name.
    upstream : list[str]
        Source element names by sink pad index.
    base_dir : pathlib.Path | None
        Pipeline file directory (``None``: pipeline given as bytes; use the CWD).
    device_id : int | None
        ``stream_config.deviceId``.
    """

    stream: str
    upstream: list = field(default_factory=list)
    base_dir: Path | None = None
    device_id: int | None = None


class PluginBase:
    """One stream element. Subclasses set the class attributes and override the hooks.

    Class attributes
    ----------------
    factory : str
        Factory name, equal to the plugin file name.
    properties : dict[str, Prop]
        Declared properties (merged with :data:`COMMON_PROPERTIES` when ``common_properties``).
    ignored_properties : frozenset[str]
        Names accepted and ignored (GStreamer knobs with no meaning here, e.g. ``blocksize``).
    sink_pads : int | None
        Number of sink pads: 0 (source), a fixed count, or ``None`` for "one or more".
    has_src_pad : bool
        False for sinks (``appsink``).
    handles_errors : bool
        False: the runtime forwards a buffer that already carries error info without calling
        :meth:`process` (what SDK plugins do). True: :meth:`process` sees it.
    """

    factory = ""
    properties: dict = {}
    common_properties = True
    ignored_properties: frozenset = frozenset()
    sink_pads: int | None = 1
    has_src_pad = True
    handles_errors = False

    def __init__(self, name: str, props: dict, context: ElementContext):
        self.name = name
        self.props = props
        self.context = context

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def declared_properties(cls) -> dict:
        merged = dict(COMMON_PROPERTIES) if cls.common_properties else {}
        merged.update(cls.properties)
        return merged

    @classmethod
    def validate_properties(cls, stream: str, name: str, raw: dict) -> dict:
        """Turn the pipeline ``props`` into typed values, defaults filled in.

        Raises
        ------
        mxlocal.errors.MxError
            6015 for an unknown property, a bad value or a missing required one.
        """
        declared = cls.declared_properties()
        where = f"stream '{stream}' element '{name}' ({cls.factory})"
        values = {}
        for key, text in raw.items():
            if key in cls.ignored_properties:
                continue
            prop = declared.get(key)
            if prop is None:
                known = ", ".join(sorted(declared)) or "none"
                raise E.MxError(E.APP_ERR_ELEMENT_INVALID_PROPERTIES,
                                f"{where}: unknown property {key!r} (known: {known})")
            try:
                values[key] = prop.parse(text)
            except ValueError as exc:
                raise E.MxError(E.APP_ERR_ELEMENT_INVALID_PROPERTIES,
                                f"{where}: property {key}={text!r} {exc}") from None
        for key, prop in declared.items():
            if key not in values:
                if prop.required:
                    raise E.MxError(E.APP_ERR_ELEMENT_INVALID_PROPERTIES,
                                    f"{where}: required property {key!r} is missing")
                values[key] = prop.default
        return values

    def where(self) -> str:
        """``"stream 's' element 'e'"`` for messages."""
        return f"stream '{self.context.stream}' element '{self.name}'"

    def config_error(self, problem: str, code: int = E.APP_ERR_ELEMENT_INVALID_PROPERTIES) -> E.MxError:
        """An :class:`MxError` for a create-time problem of this element."""
        return E.MxError(code, f"{self.where()}: {problem}")

    # ---- hooks ---------------------------------------------------------------------------------
    def init(self) -> None:
        """Load resources (models, ...). Raise :class:`MxError` to fail stream creation."""

    def process(self, buffers: list) -> list:
        """Handle one buffer per sink pad; return the buffers to push downstream, in order.

        Only the first input buffer normally travels on (the SDK forwards ``mxpiBuffer[0]``).
        Failures are reported by attaching error info to the forwarded buffer
        (:meth:`forward_error`), not by raising.
        """
        return [buffers[0]]

    def next_deadline(self) -> float | None:
        """``time.monotonic()`` at which :meth:`on_timeout` wants to run, or ``None``."""
        return None

    def on_timeout(self) -> list:
        """Called when :meth:`next_deadline` passes with no new input; returns buffers to push."""
        return []

    def deinit(self) -> None:
        """Release resources."""

    # ---- helpers -------------------------------------------------------------------------------
    def data_sources(self) -> list[str]:
        """Metadata keys to read, one per sink pad: ``dataSource`` or the upstream names."""
        value = (self.props.get("dataSource") or "auto").strip()
        if value in ("", "auto"):
            return list(self.context.upstream)
        return [part.strip() for part in value.split(",") if part.strip()]

    def forward_error(self, buffer: Buffer, code: int, message: str) -> list:
        """Attach error info from this element to ``buffer`` and forward it (SDK pattern)."""
        log.warning("%s: [%d] %s", self.where(), code, message)
        buffer.add_error(self.name, code, message)
        return [buffer]
