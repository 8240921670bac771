"""The README's series pictures from a `bash run.sh series` output folder.

    bash run.sh series ../shared/data/fire_dev/Images/P30_1.jpg ../shared/data/fire_dev/Images/P30_2.jpg \
        ../shared/data/fire_dev/Images/P31_2.jpg --out out/series_P30_P31
    PYTHONPATH=python:. .venv/bin/python benchmarks/series_pictures.py out/series_P30_P31 docs/images

Writes ``series_flicker.png`` (a headless-Chromium screenshot of flicker.html in its fade view)
and ``series_montage.png`` (montage.png scaled down), both small, palette-quantised PNGs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from tests.headless_chromium import Chromium


def small_png(image: np.ndarray, path: Path, side: int, colours: int = 96) -> Path:
    """``image`` scaled to ``side`` px wide, k-means palette of ``colours`` (a few hundred KB at most)."""
    s = side / image.shape[1]
    im = cv2.resize(image, (side, int(round(image.shape[0] * s))), interpolation=cv2.INTER_AREA)
    Z = im.reshape(-1, 3).astype(np.float32)
    _, labels, centres = cv2.kmeans(Z, colours, None, (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0),
                                    1, cv2.KMEANS_PP_CENTERS)
    q = centres.astype(np.uint8)[labels.ravel()].reshape(im.shape)
    cv2.imwrite(str(path), q, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def main(folder: str, dest: str) -> int:
    folder, dest = Path(folder), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with Chromium(width=1100, height=700) as b:
        b.open((folder / "flicker.html").resolve().as_uri())
        b.wait_for("document.body.dataset.ready === '1'")
        b.evaluate("SR_VIEWER.setMode('fade'); document.getElementById('fade').value = 50;"
                   " document.getElementById('fade').dispatchEvent(new Event('input'))")
        shot = b.screenshot(dest / "series_flicker_full.png")
    small_png(cv2.imread(str(shot)), dest / "series_flicker.png", 760)
    shot.unlink()
    small_png(cv2.imread(str(folder / "montage.png")), dest / "series_montage.png", 520)
    for p in ("series_flicker.png", "series_montage.png"):
        print(f"wrote {dest / p} ({(dest / p).stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
