"""Parse and validate ``.pipeline`` JSON (reference §3.1) into plain stream descriptions.

This module checks what can be checked from the JSON alone: syntax, the stream/element object
structure, ``stream_config.deviceId``, element names, ``factory``/``props`` types and the
``next`` links with their ``:N`` pad suffixes. What needs the element implementations (does
the factory exist, are the property values valid, does the element have that pad) is checked
by :mod:`mxlocal.stream` when it builds the stream.

Every problem raises :class:`mxlocal.errors.MxError` with the SDK's code and one line naming
the stream, the element and the problem.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from mxlocal import errors as E

MAX_STREAMS = 256          # SDK: at most 256 streams per CreateMultipleStreams
MAX_ELEMENTS = 5120        # SDK: at most 5120 plugins + config entries per pipeline
STREAM_CONFIG = "stream_config"

_APPSRC_NAME = re.compile(r"appsrc[0-9]*\Z")
_APPSINK_NAME = re.compile(r"appsink[0-9]*\Z")
_BAD_NAME_CHARS = re.compile(r"[\s:,\"'\\]")


@dataclass(frozen=True)
class Link:
    """One entry of an element's ``next``: the target element and the sink pad index.

    ``pad`` is ``None`` when the entry has no ``:N`` suffix (the SDK then uses pad 0).
    """

    target: str
    pad: int | None
    position: int  # index of the entry in the source's ``next`` list (the SDK's src pad order)


@dataclass
class ElementConfig:
    """One element as written in the pipeline.

    Attributes
    ----------
    name, factory : str
    props : dict[str, str]
        Property values as strings (numbers in the JSON are turned into their text).
    next : list[Link]
    upstream : list[str]
        Source elements by sink pad index (filled by :func:`parse_pipeline`).
    """

    name: str
    factory: str
    props: dict = field(default_factory=dict)
    next: list = field(default_factory=list)
    upstream: list = field(default_factory=list)


@dataclass
class StreamConfig:
    """One stream: its elements in the SDK's creation order.

    Attributes
    ----------
    name : str
    device_id : int | None
        ``stream_config.deviceId`` (``None`` when absent or empty).
    elements : dict[str, ElementConfig]
        By name, ordered as the SDK creates them: lexicographic, except that appsinks are
        ordered by their numeric suffix.
    base_dir : pathlib.Path | None
        Directory of the pipeline file (relative model paths resolve against it), or
        ``None`` for a pipeline given as bytes (they then resolve against the CWD).
    """

    name: str
    device_id: int | None
    elements: dict
    base_dir: Path | None = None

    def appsrc_names(self) -> list[str]:
        """appsrc element names in ``inPluginId`` order (lexicographic)."""
        return sorted(n for n, e in self.elements.items() if e.factory == "appsrc")

    def appsink_names(self) -> list[str]:
        """appsink element names in ``outPluginId`` order (numeric suffix)."""
        sinks = [n for n, e in self.elements.items() if e.factory == "appsink"]
        return sorted(sinks, key=lambda n: (_appsink_number(n), n))


def _appsink_number(name: str) -> int:
    digits = name[len("appsink"):]
    return int(digits) if digits.isdigit() else 0


def _element_sort_key(name: str):
    # SDK SortElement: appsinks compare by number, everything else by name. A total order that
    # agrees with it: appsinks sort among the other names at "appsink", ties by number.
    if name.startswith("appsink"):
        return ("appsink", _appsink_number(name), name)
    return (name, -1, name)


def _fail(code: int, stream: str, element: str | None, problem: str) -> E.MxError:
    where = f"stream '{stream}'" + (f" element '{element}'" if element else "")
    return E.MxError(code, f"{where}: {problem}")


def parse_pipeline(text: bytes | str, base_dir: Path | None = None) -> list[StreamConfig]:
    """Parse the pipeline JSON and validate its structure.

    Parameters
    ----------
    text : bytes | str
        The whole pipeline file content.
    base_dir : pathlib.Path | None
        Directory of the pipeline file, recorded on every stream.

    Returns
    -------
    list[StreamConfig]
        One per top-level key, in file order.

    Raises
    ------
    mxlocal.errors.MxError
        6005 syntax/structure, 1004 bad ``deviceId``, 6011 element name, 6014 ``factory``,
        6015 ``props``, 6006 bad ``next``/pad numbering, 6013 ``next`` to a missing element.
        (Loops in the data flow are refused by :func:`refuse_cycles` once the pads are checked.)
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise E.MxError(E.APP_ERR_STREAM_INVALID_CONFIG,
                            f"pipeline is not valid UTF-8 text ({exc.reason} at byte {exc.start})")
    if not text.strip():
        raise E.MxError(E.APP_ERR_COMM_INVALID_PARAM, "pipeline config is empty")
    try:
        root = json.loads(text)  # duplicate keys: the last one wins, as in the SDK
    except json.JSONDecodeError as exc:
        raise E.MxError(E.APP_ERR_STREAM_INVALID_CONFIG,
                        f"pipeline is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    if not isinstance(root, dict) or not root:
        raise E.MxError(E.APP_ERR_STREAM_INVALID_CONFIG,
                        "pipeline must be a non-empty JSON object of streams")
    if len(root) > MAX_STREAMS:
        raise E.MxError(E.APP_ERR_STREAM_INVALID_CONFIG,
                        f"pipeline has {len(root)} streams; at most {MAX_STREAMS} are allowed")
    n_entries = sum(len(v) for v in root.values() if isinstance(v, dict))
    if n_entries > MAX_ELEMENTS:
        raise E.MxError(E.APP_ERR_STREAM_INVALID_CONFIG,
                        f"pipeline has {n_entries} elements and configs; at most {MAX_ELEMENTS} are allowed")
    return [_parse_stream(name, body, base_dir) for name, body in root.items()]


def _parse_stream(name: str, body, base_dir: Path | None) -> StreamConfig:
    if not name or _BAD_NAME_CHARS.search(name):
        raise E.MxError(E.APP_ERR_STREAM_INVALID_CONFIG,
                        f"stream name {name!r} is empty or holds spaces, quotes, ':' or ','")
    if not isinstance(body, dict) or not body:
        raise _fail(E.APP_ERR_STREAM_INVALID_CONFIG, name, None,
                    "a stream must be a non-empty JSON object of elements")
    device_id = _parse_stream_config(name, body.get(STREAM_CONFIG, {}))

    elements = {}
    for elem_name in sorted((k for k in body if k != STREAM_CONFIG), key=_element_sort_key):
        elements[elem_name] = _parse_element(name, elem_name, body[elem_name])
    if not elements:
        raise _fail(E.APP_ERR_STREAM_INVALID_CONFIG, name, None, "the stream has no elements")
    _resolve_links(name, elements)
    return StreamConfig(name, device_id, elements, base_dir)


def _parse_stream_config(stream: str, cfg) -> int | None:
    if not isinstance(cfg, dict):
        raise _fail(E.APP_ERR_STREAM_INVALID_CONFIG, stream, None, "stream_config must be a JSON object")
    if "deviceId" not in cfg:
        return None
    value = cfg["deviceId"]
    # SDK GetStreamDeviceId: a string of decimal digits, canonical (no sign, no leading zeros).
    if not isinstance(value, str):
        raise _fail(E.APP_ERR_COMM_INVALID_PARAM, stream, None,
                    f"stream_config deviceId must be a string such as \"0\", got {json.dumps(value)}")
    if value == "":
        return None
    if not value.isdigit() or str(int(value)) != value:
        raise _fail(E.APP_ERR_COMM_INVALID_PARAM, stream, None,
                    f"stream_config deviceId {value!r} is invalid; it must be an integer >= 0 written as a string")
    return int(value)


def _parse_element(stream: str, name: str, body) -> ElementConfig:
    if _BAD_NAME_CHARS.search(name):
        raise _fail(E.APP_ERR_STREAM_ELEMENT_INVALID, stream, name,
                    "element names must not contain spaces, quotes, ':' or ','")
    if not isinstance(body, dict):
        raise _fail(E.APP_ERR_STREAM_INVALID_CONFIG, stream, name, "an element must be a JSON object")
    factory = body.get("factory")
    if not isinstance(factory, str) or not factory:
        raise _fail(E.APP_ERR_ELEMENT_INVALID_FACTORY, stream, name,
                    "missing \"factory\" (a plugin name string such as \"mxpi_tensorinfer\")")
    if factory == "appsrc" and not _APPSRC_NAME.match(name):
        raise _fail(E.APP_ERR_STREAM_ELEMENT_INVALID, stream, name,
                    "an appsrc element must be named appsrc<digits>, e.g. appsrc0")
    if factory == "appsink" and not _APPSINK_NAME.match(name):
        raise _fail(E.APP_ERR_STREAM_ELEMENT_INVALID, stream, name,
                    "an appsink element must be named appsink<digits>, e.g. appsink0")
    if "nextMeta" in body:
        raise _fail(E.APP_ERR_STREAM_INVALID_CONFIG, stream, name,
                    "\"nextMeta\" is not supported by the local runtime; use \"next\" and \"dataSource\"")

    props_obj = body.get("props", {})
    if not isinstance(props_obj, dict):
        raise _fail(E.APP_ERR_ELEMENT_INVALID_PROPERTIES, stream, name, "\"props\" must be a JSON object")
    props = {}
    for key, value in props_obj.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _fail(E.APP_ERR_ELEMENT_INVALID_PROPERTIES, stream, name,
                        f"property {key!r} must be a string, got {json.dumps(value)}")
        props[key] = value if isinstance(value, str) else json.dumps(value)

    return ElementConfig(name, factory, props, _parse_next(stream, name, body.get("next")))


def _parse_next(stream: str, name: str, value) -> list[Link]:
    if value is None:
        return []
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list) or not all(isinstance(v, str) for v in entries):
        raise _fail(E.APP_ERR_STREAM_INVALID_LINK, stream, name,
                    "\"next\" must be an element name or a list of element names")
    links = []
    for position, entry in enumerate(entries):
        target, pad = entry, None
        if entry.count(":") == 1:  # SDK GetNextElementName strips exactly one ":N"
            target, _, suffix = entry.partition(":")
            if not target or not suffix.isdigit():
                raise _fail(E.APP_ERR_STREAM_INVALID_LINK, stream, name,
                            f"next entry {entry!r} must be \"<element>\" or \"<element>:<pad number>\"")
            pad = int(suffix)
        if not target:
            raise _fail(E.APP_ERR_STREAM_INVALID_LINK, stream, name, "empty name in \"next\"")
        if target == name:
            raise _fail(E.APP_ERR_STREAM_INVALID_LINK, stream, name, "an element cannot link to itself")
        if any(link.target == target for link in links):
            raise _fail(E.APP_ERR_STREAM_INVALID_LINK, stream, name,
                        f"\"next\" lists {target!r} twice")
        links.append(Link(target, pad, position))
    return links


def _resolve_links(stream: str, elements: dict) -> None:
    """Check link targets and sink pad numbering; fill each element's ``upstream``.

    As the SDK's ``ReorderElements``/``LinkElements``: incoming links of an element are ordered
    by pad number (no suffix = 0), then by the position in the source's ``next``, and must use
    pads 0, 1, 2, ... exactly once each.
    """
    incoming: dict[str, list[tuple[int, int, str]]] = {name: [] for name in elements}
    for src in elements.values():
        for link in src.next:
            if link.target not in elements:
                raise _fail(E.APP_ERR_STREAM_ELEMENT_NOT_EXIST, stream, src.name,
                            f"\"next\" names {link.target!r}, which is not an element of this stream")
            pad = 0 if link.pad is None else link.pad
            incoming[link.target].append((pad, link.position, src.name))
    for name, links in incoming.items():
        links.sort()
        for expected, (pad, _, src) in enumerate(links):
            if pad != expected:
                raise _fail(E.APP_ERR_STREAM_INVALID_LINK, stream, src,
                            f"links into sink pad {pad} of {name!r}, but the next free pad is {expected};"
                            f" pads of an element must be numbered 0, 1, 2, ... (use \"{name}:{expected}\")")
        elements[name].upstream = [src for _, _, src in links]


def refuse_cycles(config: StreamConfig) -> None:
    """Refuse a data flow that loops back (6005, naming the loop).

    An element fed from its own downstream waits forever for the input that only its own
    output could bring: the stream would hang on the first buffer. Iterative depth-first
    search (pipelines may hold thousands of elements). Run by :class:`mxlocal.stream.Stream`
    after the pad checks (so a link the elements cannot make is still 6007, as in the SDK) and
    before any element is initialised (no model is loaded for a stream that would hang).
    """
    stream, elements = config.name, config.elements
    state = dict.fromkeys(elements, 0)  # 0 unseen, 1 on the current path, 2 done
    for root in elements:
        if state[root]:
            continue
        path, stack = [root], [iter(elements[root].next)]
        state[root] = 1
        while stack:
            link = next(stack[-1], None)
            if link is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            target = link.target
            if state[target] == 1:
                loop = path[path.index(target):] + [target]
                raise _fail(E.APP_ERR_STREAM_INVALID_CONFIG, stream, None,
                            f"the data flow loops back ({' -> '.join(loop)}); an element cannot be fed"
                            " from its own output, the stream would wait forever")
            if state[target] == 0:
                state[target] = 1
                path.append(target)
                stack.append(iter(elements[target].next))
