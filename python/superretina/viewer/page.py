"""Write the viewer page: layers, title and numbers go into one JSON blob inside ``template.html``.

Everything the caller gives (labels, paths, info) reaches the page as JSON data and is put into
the document with ``textContent``/attributes by the script, never parsed as HTML; only
``extra_html`` is inserted as HTML (the caller's own markup, e.g. a link or a picture).
"""
from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence
from urllib.parse import quote

_TEMPLATE = Path(__file__).with_name("template.html")


class ViewerError(ValueError):
    """Layers the page cannot show (none aligned, a path that is not relative, a bad pair)."""


@dataclass(frozen=True)
class Layer:
    """One image of the viewer.

    Parameters
    ----------
    label : str
        Shown on the layer's button and over the image.
    src : str
        The image file's path relative to the page's folder, '/'-separated (percent-encoded by
        the writer, so spaces and '#' are fine).
    aligned : bool
        True for images in the common frame (same pixel grid as the other aligned layers): they
        take part in flicker, fade, checkerboard and difference. False for an image shown on its
        own only (e.g. the query photograph before warping).
    """

    label: str
    src: str
    aligned: bool = True


def _check_src(src: str) -> str:
    p = PurePosixPath(src)
    if not src or p.is_absolute() or ":" in src.split("/")[0] or "\\" in src or ".." in p.parts:
        raise ViewerError(f"layer src {src!r}: expected a path relative to the page's folder, inside it")
    return quote(src, safe="/")


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def render_viewer(layers: Sequence[Layer], title: str, info: Mapping | None = None, extra_html: str = "",
                  pair: tuple[int, int] | None = None, start: int | None = None) -> str:
    """The page's HTML text (see :func:`write_viewer`)."""
    layers = list(layers)
    aligned = [i for i, layer in enumerate(layers) if layer.aligned]
    if not aligned:
        raise ViewerError("the viewer needs at least one aligned layer")
    if pair is None:
        pair = (aligned[0], aligned[1 % len(aligned)])
    if len(pair) != 2 or any(not (0 <= i < len(layers)) or not layers[i].aligned for i in pair):
        raise ViewerError(f"pair {pair!r}: expected two indices of aligned layers ({aligned})")
    start = pair[0] if start is None else start
    if not (0 <= start < len(layers)):
        raise ViewerError(f"start {start!r}: expected the index of a layer (0 to {len(layers) - 1})")
    data = {"title": str(title),
            "layers": [{"label": str(layer.label), "src": _check_src(layer.src), "aligned": bool(layer.aligned)}
                       for layer in layers],
            "pair": [int(pair[0]), int(pair[1])], "start": int(start),
            "info": [[str(k), _fmt(v)] for k, v in (info or {}).items()]}
    # '<' as \u003c: no '</script>' or '<!--' can end or change the script element
    blob = json.dumps(data).replace("<", "\\u003c")
    parts = {"__TITLE__": html.escape(str(title)), "__EXTRA__": extra_html, "__DATA__": blob}
    # one pass: a placeholder's name inside a title or the extra HTML is not filled in again
    return re.sub("__(TITLE|EXTRA|DATA)__", lambda m: parts[m.group(0)], _TEMPLATE.read_text(encoding="utf-8"))


def write_viewer(path: str | Path, layers: Sequence[Layer], title: str, info: Mapping | None = None,
                 extra_html: str = "", pair: tuple[int, int] | None = None, start: int | None = None) -> Path:
    """Write a viewer page over ``layers`` to ``path``; returns ``path``.

    Parameters
    ----------
    path : path-like
        The HTML file; the layers' ``src`` are relative to its folder.
    layers : sequence of Layer
        In order: the arrow keys and the flicker step through the aligned ones in this order.
    title : str
        Page title and heading.
    info : mapping, optional
        Numbers for the info panel, ``{label: value}`` (floats shown with 4 significant digits,
        None as empty).
    extra_html : str
        Trusted HTML put under the info panel (links, a picture); not escaped.
    pair : (int, int), optional
        Indices of the two aligned layers that fade, checkerboard and difference compare at
        first (the page lets the user choose others); default the first two aligned layers.
    start : int, optional
        Index of the layer shown when the page opens (default ``pair[0]``).

    Raises
    ------
    ViewerError
        No aligned layer, a ``src`` that is absolute or leaves the page's folder, a bad ``pair``
        or ``start``.
    """
    from ..outputs import write_file

    text = render_viewer(layers, title, info, extra_html, pair, start)
    return write_file(Path(path), text.encode("utf-8"))


def write_pair_viewer(path: str | Path, reference: Layer, moving: Layer, title: str, info: Mapping | None = None,
                      extra_html: str = "", others: Sequence[Layer] = (), start: int | None = None) -> Path:
    """Two aligned images compared (``reference`` first), plus ``others`` shown on their own.

    The convenience for a registered pair: ``reference`` the reference photograph, ``moving`` the
    query warped into it, ``others`` e.g. ``Layer('query', 'query.jpg', aligned=False)``.
    """
    return write_viewer(path, [reference, moving, *others], title, info, extra_html, pair=(0, 1), start=start)
