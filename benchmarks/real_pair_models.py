"""Residuals of a real pair's final matches under the homography and under the quadratic.

Registers QUERY onto REFER with the default model and configuration, then prints, for the
homography and for the robust quadratic fitted to the same final matches (whether or not
``choose_transform`` keeps it), the share of matches within 3 / 5 / 10 px and the median
residual of those within 10 px, and what ``transform.model`` quadratic and auto return and why.

Usage:  python benchmarks/real_pair_models.py [QUERY REFER]
        (default: ../shared/data/pairs/example2.jpg onto example1.jpg)
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python")]

from superretina.app import open_app  # noqa: E402
from superretina.transform import HomographyTransform, residual_stats, robust_quadratic  # noqa: E402


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    data = ROOT.parent / "shared" / "data" / "pairs"
    query, refer = (Path(a) for a in argv[:2]) if len(argv) >= 2 else (data / "example2.jpg", data / "example1.jpg")
    with open_app(runtime="local") as app:
        reg = app.registrar
        res = reg.register_files(query, refer)
        print(f"{query.name} -> {refer.name}: {res.status}" + (f" ({res.reason})" if res.reason else ""))
        if res.status != "registered":
            return 1
        st = res.final
        q, r = res.final_query_xy[st.matches[:, 0]], res.refer.xy[st.matches[:, 1]]
        scale = (reg.cfg["homography"]["refine_scale"] or 3.0) * res.refer.pixel_scale
        quad, _ = robust_quadratic(q, r, res.H, scale)
        print(f"{len(q)} final matches; LMEDS inlier rate {st.homography.inlier_rate:.3f}")
        for name, t in (("homography", HomographyTransform(res.H)), ("quadratic (fitted)", quad)):
            s = residual_stats(t, q, r)
            print(f"  {name:<20} median {s['median_px']:.2f} px (of those within 10 px); within 3/5/10 px "
                  f"{100 * s['within_3px']:.1f} / {100 * s['within_5px']:.1f} / {100 * s['within_10px']:.1f} %")
        for m in ("quadratic", "auto"):
            c = reg.choose_transform(res, m)
            print(f"  transform.model {m}: returns {c.model}" + (f" ({c.reason})" if c.reason else "")
                  + (f"; held-out score (Cauchy loss) {c.held_out}" if c.held_out and not c.reason else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
