"""Distributions at the top of the report, as inline SVG (no image files, no script, no network).

Each plot is a histogram of one numeric column of the run's rows with its count, median and
90th percentile written under it. A long tail is folded into the last bar (marked "≥") so that
one slow or badly registered pair does not squash the rest into one bar.
"""
from __future__ import annotations

import html

import numpy as np

WIDTH, HEIGHT, BINS = 380, 150, 24
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 34, 10, 20, 34


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def histogram_svg(values, title: str, fixed_range: tuple[float, float] | None = None, colour: str = "#2a5db0") -> str:
    """One histogram as an ``<svg>`` element (text escaped).

    Parameters
    ----------
    values : array-like (N,) of float
        Non-finite values are dropped; with none left the plot says so.
    title : str
        Label of the quantity, with its unit.
    fixed_range : (float, float), optional
        The x range (e.g. (0, 1) for a probability); default 0 (or the minimum, when negative) to
        the maximum, or to 1.25 × the 95th percentile with the rest in the last bar when the
        maximum is beyond 3 × the 95th percentile.
    """
    v = np.asarray([float(x) for x in values], np.float64)
    v = v[np.isfinite(v)]
    t = html.escape(title)
    svg = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}">',
           f'<text x="{_PAD_L}" y="13" font-size="12" font-weight="600">{t}</text>']
    if not len(v):
        svg.append(f'<text x="{_PAD_L}" y="{HEIGHT // 2}" font-size="12" fill="#777">no values in this run</text></svg>')
        return "".join(svg)
    folded = False
    if fixed_range is not None:
        lo, hi = fixed_range
    else:
        lo, hi = min(0.0, float(v.min())), float(v.max())
        p95 = float(np.percentile(v, 95))
        if len(v) >= 20 and p95 > lo and hi > lo + 3 * (p95 - lo):
            hi, folded = lo + 1.25 * (p95 - lo), True
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(np.clip(v, lo, hi), bins=BINS, range=(lo, hi))
    pw, ph = WIDTH - _PAD_L - _PAD_R, HEIGHT - _PAD_T - _PAD_B
    bw, top = pw / BINS, max(int(counts.max()), 1)
    for i, c in enumerate(counts):
        if not c:
            continue
        h = ph * c / top
        x, y = _PAD_L + i * bw, _PAD_T + ph - h
        svg.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bw - 1, 1):.1f}" height="{h:.1f}" fill="{colour}">'
                   f'<title>{_num(edges[i])} – {_num(edges[i + 1])}: {int(c)}</title></rect>')
    base = _PAD_T + ph
    svg.append(f'<line x1="{_PAD_L}" y1="{base}" x2="{WIDTH - _PAD_R}" y2="{base}" stroke="#444"/>')
    svg.append(f'<text x="{_PAD_L - 4}" y="{_PAD_T + 9}" font-size="10" text-anchor="end">{top}</text>')
    svg.append(f'<text x="{_PAD_L - 4}" y="{base}" font-size="10" text-anchor="end">0</text>')
    for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        label = _num(lo + frac * (hi - lo))
        if frac == 1.0 and folded:
            label = "≥ " + label
        svg.append(f'<text x="{_PAD_L + frac * pw:.1f}" y="{base + 12}" font-size="10" text-anchor="{anchor}">{label}</text>')
    med, p90 = float(np.median(v)), float(np.percentile(v, 90))
    svg.append(f'<text x="{_PAD_L}" y="{HEIGHT - 6}" font-size="11" fill="#333">n = {len(v)}, median {_num(med)}, '
               f'90th percentile {_num(p90)}, max {_num(float(v.max()))}</text></svg>')
    return "".join(svg)


def _floats(rows: list[dict], column: str) -> list[float]:
    out = []
    for r in rows:
        try:
            x = float(r.get(column, ""))
        except (TypeError, ValueError):
            continue
        if x < 1e6:              # FIRE's 1e6 "failed" error is not a distance
            out.append(x)
    return out


def report_plots(rows: list[dict], kind: str, header: list[str]) -> str:
    """The report's plots for a batch or fire run's rows, as HTML (inline SVG elements).

    Confidence only when the rows have that column (runs that compute it); residuals of the
    registered pairs (batch: median residual of the final matches under the returned transform;
    fire: mean error against the ground truth); time of every processed pair.
    """
    ok = [r for r in rows if r.get("status") in ("registered", "acceptable", "inaccurate")]
    plots = []
    if "confidence" in header:
        plots.append(histogram_svg(_floats(rows, "confidence"), "confidence (all pairs)", (0.0, 1.0), "#7a4cb0"))
    if kind == "fire":
        plots.append(histogram_svg(_floats(rows, "mean_error"), "mean error against ground truth (px)", None, "#b05a2a"))
    else:
        plots.append(histogram_svg(_floats(ok, "residual_median_px"), "median residual, registered pairs (px)",
                                   None, "#b05a2a"))
    plots.append(histogram_svg(_floats(rows, "seconds"), "seconds per pair", None, "#2a8a5d"))
    return "\n".join(plots)
