"""A pair's page in the report: ``pairs/<id>/view.html`` over the pictures it needs.

Written by the batch worker right after the pair's result.json, from the in-memory result and
the decoded photographs (nothing is read back from disk but the matches picture):

* ``view_reference.jpg``: the reference photograph;
* ``view_warped.jpg``: the query warped into the reference frame with the returned transform
  (registered pairs only; the same warp as ``Registration.transform.warp``);
* ``view_query.jpg``: the query photograph as taken;
* the matches picture: ``match_result.jpg`` itself at full size, or ``view_matches.jpg`` (scaled)
  when the run keeps thumbnails only.

With ``max_side`` (batch ``--thumbnails``) every picture is scaled so that its longest side is at
most ``max_side`` pixels and the page says so; otherwise they are at full resolution. Failed
pairs have no warped image: their page shows the two photographs and the matches picture.
"""
from __future__ import annotations

import html
from pathlib import Path

import cv2
import numpy as np

from ..viewer import Layer, write_viewer

VIEW_PAGE = "view.html"
REFERENCE, WARPED, QUERY, MATCHES = "view_reference.jpg", "view_warped.jpg", "view_query.jpg", "view_matches.jpg"
VIEW_FILES = (VIEW_PAGE, REFERENCE, WARPED, QUERY, MATCHES)
MATCHES_MIN_SIDE = 1280   # px: two photographs side by side stay legible even with --thumbnails
# JPEG quality: 90 at full resolution (as the other pictures); 80 when scaled (--thumbnails), which
# keeps a pair's view near 0.25 MB at 1736x1824 (benchmarks/pair_view_cost.py)
QUALITY_FULL, QUALITY_SCALED = 90, 80


def _scaled(image: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def _numbers(info: dict, reg) -> dict:
    """The info panel: status, counts, residuals (and confidence when the run records one)."""
    q = reg.quality
    numbers = {"status": reg.status}
    if reg.reason:
        numbers["reason"] = reg.reason
    if "confidence" in info:                      # recorded by runs that compute it
        numbers["confidence"] = info["confidence"]
    numbers.update({
        "transform": reg.transform.model if reg.transform is not None else "none",
        "median residual (px)": q.get("residual_median_px"),
        "within 3 / 5 / 10 px (%)": " / ".join(_pct(q.get(k)) for k in ("within_3px", "within_5px", "within_10px"))
        if q.get("within_3px") is not None else None,
        "inliers": q["num_inliers"], "matches": q["num_matches"], "inlier rate (%)": _pct(q["inlier_rate"]),
        "keypoints query / reference": f"{q['num_keypoints_query']} / {q['num_keypoints_refer']}",
        "query size (w × h)": f"{reg.query_size[1]} × {reg.query_size[0]}",
        "reference size (w × h)": f"{reg.refer_size[1]} × {reg.refer_size[0]}",
    })
    if reg.seconds:
        numbers["registration seconds (sum of stages)"] = round(sum(reg.seconds.values()), 3)
    numbers["package version"] = info.get("package_version")
    return numbers


def write_pair_view(folder: str | Path, info: dict, query: np.ndarray, refer: np.ndarray,
                    max_side: int | None = None, title: str | None = None) -> list[Path]:
    """Write the pair's view page and its pictures into ``folder`` (which holds its result.json).

    Parameters
    ----------
    folder : path-like
        The pair's folder; ``match_result.jpg`` there, when present, is the matches picture.
    info : dict
        The pair's result.json content.
    query, refer : ndarray (H, W) or (H, W, 3), uint8 or uint16
        The photographs as decoded (BGR).
    max_side : int, optional
        Longest side of the pictures (scaled down, area average); None: full resolution.
    title : str, optional
        Page title (default: the pair's id and status).

    Returns
    -------
    list of Path
        The written files, the page last.
    """
    from ..api import Registration
    from ..image_io import to_uint8
    from ..outputs import PARALLEL_MAX_PIXELS, save_jpeg
    from ..parallel import run_all

    folder = Path(folder)
    reg = Registration(info)
    refer8, query8 = to_uint8(refer), to_uint8(query)
    quality = QUALITY_FULL if max_side is None else QUALITY_SCALED

    def save(name: str, image: np.ndarray) -> Path:
        return save_jpeg(folder / name, _scaled(image, max_side), quality)

    warped = reg.registered and reg.transform is not None
    jobs = [lambda: save(REFERENCE, refer8), lambda: save(QUERY, query8)]
    if warped:  # the longest job first: run_all runs it in this thread
        jobs.insert(0, lambda: save(WARPED, reg.transform.warp(query8)))
    # side by side (OpenCV releases the GIL) within the bound write_outputs uses for its pictures
    small = refer.shape[0] * refer.shape[1] <= PARALLEL_MAX_PIXELS
    written = run_all(*jobs) if small else [job() for job in jobs]
    layers = [Layer("reference", REFERENCE)] + ([Layer("query, warped", WARPED)] if warped else []) \
        + [Layer("query photograph", QUERY, aligned=False)]

    matches = None
    if (folder / "match_result.jpg").is_file():
        matches = "match_result.jpg"
        if max_side is not None:          # the full-size picture goes with --thumbnails
            pic = cv2.imread(str(folder / matches))
            if pic is not None:
                written.append(save_jpeg(folder / MATCHES, _scaled(pic, max(max_side, MATCHES_MIN_SIDE)), quality))
                matches = MATCHES
    extra = []
    if matches:
        layers.append(Layer("matches", matches, aligned=False))
        extra.append(f'<p><a href="{matches}"><img id="matches" src="{matches}" alt="matches"></a><br>'
                     f'matches &mdash; <a href="{matches}">open</a></p>')
    scale_note = (f"pictures scaled to at most {max_side} px" if max_side
                  else "pictures at full resolution")
    extra.append(f'<p>{html.escape(scale_note)}; <a href="result.json">result.json</a> &middot; '
                 '<a href="../../index.html">report</a></p>')
    for name, key in (("query", "query"), ("reference", "refer")):
        if info.get(key):
            extra.append(f"<p><small>{name}: {html.escape(str(info[key]))}</small></p>")
    pid = info.get("id", folder.name)
    page = write_viewer(folder / VIEW_PAGE, layers, title or f"{pid}: {reg.status}", _numbers(info, reg),
                        extra_html="\n".join(extra),
                        # a failed pair opens on its matches picture: that is what there is to judge
                        start=len(layers) - 1 if matches and not warped else 0)
    return [*written, page]
