"""The images of a series: files on the command line, a folder, or a CSV with an ``image``
column and optional ``visit`` / ``date`` / ``field`` columns (paths relative to the CSV)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm")   # .dcm: DICOM (image_io)
CSV_COLUMNS = ("image", "visit", "date", "field")


class SeriesInputError(ValueError):
    """A series input that cannot be used (one line naming the file or field)."""


@dataclass
class SeriesImage:
    """One photograph of the series: where it came from and its place in time / on the eye."""

    name: str
    path: Optional[Path] = None
    visit: Optional[str] = None
    date: Optional[str] = None
    field: Optional[str] = None

    def to_json(self) -> dict:
        return {"name": self.name, "path": None if self.path is None else str(self.path), "visit": self.visit,
                "date": self.date, "field": self.field}


def _visit_key(img: SeriesImage, k: int) -> tuple:
    """Visit order: numeric visit, then the visit text, then the date (ISO text sorts), then as given."""
    v = img.visit
    try:
        num = float(v) if v not in (None, "") else None
    except ValueError:
        num = None
    return (num is None, num if num is not None else 0.0, v or "", img.date or "", k)


def visit_order(images: Sequence[SeriesImage]) -> list[int]:
    """Indices of ``images`` earliest first (by ``visit``, then ``date``, then as given)."""
    return sorted(range(len(images)), key=lambda k: _visit_key(images[k], k))


def read_series_csv(path: Path) -> list[SeriesImage]:
    """Rows of a series CSV (``image`` required; ``visit``, ``date``, ``field`` optional)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SeriesInputError(f"{path}: cannot read the series CSV ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    cols = [c.strip() for c in (reader.fieldnames or [])]
    if "image" not in cols:
        raise SeriesInputError(f"{path}: a series CSV needs an 'image' column (found: {', '.join(cols) or 'none'})")
    out = []
    for n, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if not row.get("image"):
            raise SeriesInputError(f"{path}, line {n}: empty 'image'")
        p = Path(row["image"])
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            raise SeriesInputError(f"{path}, line {n}: {p}: no such image file")
        out.append(SeriesImage(p.stem, p, row.get("visit") or None, row.get("date") or None, row.get("field") or None))
    return out


def collect_images(items: Sequence[Union[str, Path, np.ndarray]]) -> tuple[list[SeriesImage], list]:
    """(descriptions, sources): a source is a path or an array, one per image.

    ``items``: image paths, arrays, :class:`SeriesImage` (path and visit data), one folder (its
    images, sorted by name) or one CSV.
    """
    items = list(items)
    if len(items) == 1 and isinstance(items[0], (str, Path)):
        p = Path(items[0])
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not files:
                raise SeriesInputError(f"{p}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            items = files
        elif p.suffix.lower() == ".csv":
            imgs = read_series_csv(p)
            return _unique(imgs), [im.path for im in imgs]
    for it in items:
        path = it.path if isinstance(it, SeriesImage) else None if isinstance(it, np.ndarray) else Path(it)
        if path is not None and not path.is_file():
            raise SeriesInputError(f"{path}: no such image file (a series takes image files, one folder or one CSV)")
    imgs, sources = [], []
    for k, it in enumerate(items):
        if isinstance(it, SeriesImage):           # a described image (e.g. a batch row with its visit)
            imgs.append(SeriesImage(it.name, it.path, it.visit, it.date, it.field))
            sources.append(it.path)
        elif isinstance(it, np.ndarray):
            imgs.append(SeriesImage(f"image{k}"))
            sources.append(it)
        else:
            imgs.append(SeriesImage(Path(it).stem, Path(it)))
            sources.append(it)
    return _unique(imgs), sources


def _unique(imgs: list[SeriesImage]) -> list[SeriesImage]:
    names: set = set()
    for im in imgs:         # names label files in aligned/: make them unique
        base, n = im.name, 1
        while im.name in names:
            n += 1
            im.name = f"{base}_{n}"
        names.add(im.name)
    return imgs
