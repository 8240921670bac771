"""Which images train and which are held out for validation (fixed, so numbers are comparable).

Held out, following ../shared/data/README.md: every CHASE image of two subjects and ten others.
"""
from __future__ import annotations

from pathlib import Path

HELD_OUT = frozenset(
    ["chase_13L", "chase_13R", "chase_14L", "chase_14R"]
    + [f"drive_{i:02d}" for i in (1, 2, 3, 4, 5)]
    + [f"extra_{i:02d}" for i in (41, 42, 43, 44, 45)]
)


def fundus_images(folder: Path) -> list[Path]:
    """Photographs in a folder (masks ``*_vessels.png``/``*_fov.png`` excluded), sorted."""
    exts = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
    return sorted(
        p for p in Path(folder).iterdir()
        if p.suffix.lower() in exts and not p.stem.endswith(("_vessels", "_fov"))
    )


def split(folder: Path) -> tuple[list[Path], list[Path]]:
    """(training images, held-out images) of a folder laid out like ../shared/data/fundus."""
    images = fundus_images(folder)
    train = [p for p in images if p.stem not in HELD_OUT]
    held = [p for p in images if p.stem in HELD_OUT]
    return train, held
