"""A series' files: series.json, aligned/ (each image in the reference's frame, PNG and one
multi-page TIFF), montage.png (every image on the canvas of their union, feathered) and
flicker.html (the aligned visits, flipped or faded, with a difference view).

All are views of the in-memory :class:`~superretina.series.core.Series`; series.json is written
last, as the run's record.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from ..fire.fov import fov_mask
from ..image_io import to_uint8
from ..outputs import prepare_out, write_file
from ..transform import HomographyTransform, QuadraticTransform, warp_image

MONTAGE_MAX_SIDE = 4096     # the montage is scaled down to this side (a 7-field montage at FIRE size is ~6000 px)
FEATHER_POWER = 1.5         # weight = (distance to the field's edge) ^ power: wider seams fade more smoothly
SERIES_OUTPUTS = ("series.json", "montage.png", "flicker.html")


def _bgr(image: np.ndarray) -> np.ndarray:
    im = to_uint8(image)
    return cv2.cvtColor(im, cv2.COLOR_GRAY2BGR) if im.ndim == 2 else im


def file_stem(k: int, name: str) -> str:
    """``NN_name`` with only safe characters (the image's file name in aligned/)."""
    return f"{k:02d}_" + re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]


def into_canvas(t, x0: float, y0: float, s: float):
    """``t`` (image -> frame) followed by frame -> canvas pixel ``s * (f - (x0, y0))``."""
    if isinstance(t, HomographyTransform):
        A = np.array([[s, 0, -s * x0], [0, s, -s * y0], [0, 0, 1.0]])
        return HomographyTransform(A @ t.H)
    return QuadraticTransform(t.coeffs, t.query_centre, t.query_scale, s * (t.reference_centre - [x0, y0]),
                              t.reference_scale / s, t.domain)


def aligned_images(series, pixels: Sequence[np.ndarray]) -> dict:
    """{index: image (reference's height x width, BGR uint8)} for every image in the frame."""
    h, w = series.sizes[series.reference]
    return {k: warp_image(_bgr(pixels[k]), t, (w, h)) for k, t in enumerate(series.transforms) if t is not None}


def montage(series, pixels: Sequence[np.ndarray], max_side: int = MONTAGE_MAX_SIDE) -> np.ndarray:
    """All connected images on the canvas of their union, feathered (BGR uint8).

    Each image's weight falls to 0 at its field-of-view edge (distance transform of its
    ``fov_mask``), so overlaps blend without seams; the canvas is scaled to ``max_side``.
    """
    c = series.canvas()
    s = min(1.0, max_side / max(c["width"], c["height"]))
    W, H = int(round(c["width"] * s)), int(round(c["height"] * s))
    acc = np.zeros((H, W, 3), np.float32)
    wsum = np.zeros((H, W), np.float32)
    for k, t in enumerate(series.transforms):
        if t is None:
            continue
        img = _bgr(pixels[k])
        fov = fov_mask(img).astype(np.uint8)
        dist = cv2.distanceTransform(fov, cv2.DIST_L2, 5)
        weight = (dist / max(float(dist.max()), 1.0)) ** FEATHER_POWER
        tc = into_canvas(t, c["x0"], c["y0"], s)
        wimg = warp_image(img, tc, (W, H)).astype(np.float32)
        ww = warp_image(weight.astype(np.float32), tc, (W, H))
        acc += wimg * ww[..., None]
        wsum += ww
    out = acc / np.maximum(wsum, 1e-6)[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise OSError("could not encode a PNG")
    return buf.tobytes()


def write_tiff_stack(path: Path, images: Sequence[np.ndarray]) -> Path:
    """One multi-page TIFF (a page per image, same size) written through a temporary file."""
    tmp = path.with_name(f".{path.name}.tmp.tif")
    if not cv2.imwritemulti(str(tmp), list(images)):
        tmp.unlink(missing_ok=True)
        raise OSError(f"{path}: could not write the TIFF stack")
    tmp.replace(path)
    return path


def write_series(series, out: Path, pixels: Optional[Sequence[np.ndarray]]) -> list[Path]:
    """Write the series' files into ``out``; returns the written paths (series.json last)."""
    prepare_out(out)
    written: list[Path] = []
    d = series.to_json()
    if pixels is None:              # series.json alone: no picture of another run beside it
        for name in ("montage.png", "flicker.html"):
            if (out / name).is_symlink() or (out / name).is_file():
                (out / name).unlink()
        if (out / "aligned").is_dir() and not (out / "aligned").is_symlink():
            for old in (out / "aligned").iterdir():
                if old.is_file() or old.is_symlink():
                    old.unlink()
    else:
        aligned = aligned_images(series, pixels)
        folder = out / "aligned"
        folder.mkdir(exist_ok=True)
        for old in folder.iterdir():            # no picture of another run beside this one
            if old.is_file() or old.is_symlink():
                old.unlink()
        names = {}
        for k, img in aligned.items():
            names[k] = f"aligned/{file_stem(k, series.images[k].name)}.png"
            written.append(write_file(out / names[k], _png(img)))
        written.append(write_tiff_stack(folder / "aligned.tif", [aligned[k] for k in sorted(aligned)]))
        written.append(write_file(out / "montage.png", _png(montage(series, pixels))))
        written.append(_flicker(series, out / "flicker.html", names))
        d["files"] = {"aligned": {series.images[k].name: names[k] for k in sorted(aligned)},
                      "aligned_stack": "aligned/aligned.tif", "montage": "montage.png", "flicker": "flicker.html"}
    written.append(write_file(out / "series.json", json.dumps(d, indent=1).encode()))
    return written


def _flicker(series, path: Path, names: dict) -> Path:
    """flicker.html: the shared viewer over the aligned images in visit order (the reference
    compared with the next visit at first)."""
    from ..viewer import Layer, write_viewer

    order = [k for k in _visit_order(series) if k in names]
    layers = [Layer(_label(series, k), names[k]) for k in order]
    r = order.index(series.reference)
    other = r + 1 if r + 1 < len(order) else max(r - 1, 0)
    d = series.to_json()
    info = {"reference": d["reference"]["name"], "images in the frame": len(order),
            "unconnected": ", ".join(d["unconnected"]) or "none", "model": d["model_choice"]["returned"],
            "pairs registered": f"{d['pairs_registered']} of {d['pairs_all']}",
            "median match residual, chained (px)": d["refinement"].get("initial_median_px"),
            "median match residual, refined (px)": d["refinement"].get("refined_median_px")}
    extra = '<p><a href="montage.png">montage</a> · <a href="series.json">series.json</a></p>'
    return write_viewer(path, layers, _title(series), info, extra, pair=(r, other))


def _visit_order(series) -> list[int]:
    from .inputs import visit_order

    return visit_order(series.images)


def _label(series, k: int) -> str:
    im = series.images[k]
    extra = [x for x in (im.visit and f"visit {im.visit}", im.date, im.field and f"field {im.field}") if x]
    ref = " (reference)" if k == series.reference else ""
    return im.name + (f" — {', '.join(extra)}" if extra else "") + ref


def _title(series) -> str:
    return f"Series of {len(series.images)} images in the frame of {series.images[series.reference].name}"
