"""The report's distributions (superretina.report.plots): inline SVG histograms with their numbers."""
import re

from superretina.report.plots import BINS, histogram_svg, report_plots


def _bars(svg: str) -> list[tuple[str, int]]:
    """(bin range text, count) of every drawn bar."""
    return [(m.group(1), int(m.group(2))) for m in re.finditer(r"<title>([^<]*): (\d+)</title>", svg)]


def test_counts_per_bin_and_summary_line():
    svg = histogram_svg([0.1, 0.1, 0.1, 1.9, 1.9, float("nan")], "error (px)", fixed_range=(0.0, 2.0))
    bars = _bars(svg)
    assert bars == [("0.0833 – 0.167", 3), ("1.83 – 1.92", 2)]        # 24 bins of 1/12 px
    assert "n = 5, median 0.1," in svg and "max 1.9" in svg          # the NaN is dropped
    assert svg.startswith("<svg") and svg.endswith("</svg>")


def test_a_long_tail_is_folded_into_the_last_bar():
    values = [1.0 + 0.01 * i for i in range(40)] + [1000.0]
    svg = histogram_svg(values, "seconds per pair")
    bars = _bars(svg)
    assert sum(c for _, c in bars) == 41 and bars[-1][1] >= 1
    assert "≥ " in svg and "max 1000" in svg
    assert len(bars) > 3                                              # the bulk is spread, not one bar
    plain = histogram_svg(values[:40], "seconds per pair")
    assert "≥" not in plain and len(_bars(plain)) <= BINS


def test_text_is_escaped_and_no_values_is_said():
    svg = histogram_svg([], "<script>alert(1)</script>")
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "no values in this run" in svg


def test_report_plots_follow_the_columns_of_the_run():
    rows = [{"status": "registered", "residual_median_px": "1.5", "seconds": "2.0", "confidence": "0.9"},
            {"status": "failed", "residual_median_px": "40", "seconds": "3.0", "confidence": "0.1"},
            {"status": "error", "residual_median_px": "", "seconds": "0.01", "confidence": ""}]
    without = report_plots(rows, "batch", ["id", "status", "residual_median_px", "seconds"])
    assert without.count("<svg") == 2 and "confidence" not in without
    assert "n = 1, median 1.5" in without and "n = 3, median 2," in without   # residuals of registered pairs only
    withc = report_plots(rows, "batch", ["id", "status", "confidence", "residual_median_px", "seconds"])
    assert withc.count("<svg") == 3 and "confidence (all pairs)" in withc and "n = 2, median 0.5" in withc
    fire = report_plots([{"status": "acceptable", "mean_error": "2.5", "seconds": "1"},
                         {"status": "failed", "mean_error": "1000000.0", "seconds": "1"}], "fire", ["pair", "status"])
    assert "mean error against ground truth" in fire and "n = 1, median 2.5" in fire
