"""Synthetic series of one eye with exact correspondences between every two views.

``bash run.sh synth OUT --from IMAGES --series visits|fields --views N`` writes, per source
photograph, one folder ``OUT/<source>/`` with ``views/NN.jpg``, ``series.csv`` (``image``,
``visit``, ``field``: the input of ``bash run.sh series``) and ``truth.json``: the eye model and
each view's :class:`~superretina.fire.eye_model.Visit`, so that the true map from view i to view
j is closed form (``true_map``), plus, for every two views that overlap, their overlap and ten
ground-truth control points (FIRE's convention: ``x_j, y_j`` in view j, ``x_i, y_i`` in view i).

Two kinds, rendered from the eye model of ``synth`` (spherical retina, nodal point inside the
globe; the source photograph is the unturned eye's 45-degree view):

- ``visits`` (longitudinal): N visits of one field with small gaze changes (0-4 degrees), roll,
  zoom and shift, and a photometric change per visit (exposure, colour balance, illumination,
  texture, lower resolution) plus lesions that accumulate over the visits (a few more
  exudate- and haemorrhage-like blobs each visit);
- ``fields`` (a one-visit montage): the ETDRS pattern of 7 fields, a central field and six
  around it 60 degrees apart, each a narrower camera (zoom ``FIELD_ZOOM``: a 30-degree field, as
  ETDRS's) turned by ``FIELD_GAZE_DEG`` towards its direction; scaled so that every field stays
  inside the source's 45-degree photograph (ETDRS's own fields spread further). N != 7 takes
  the first N fields.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from .eye_model import EyeModel, EyePairGeometry, Visit
from .synth import (CANVAS_FILL, EYE_MODEL, N_CONTROL_POINTS, _in_aperture, _write_jpeg, aperture_mask,
                    apply_appearance, place_on_canvas, sample_appearance)

KINDS = ("visits", "fields")
FIELD_ZOOM = 1.5              # 45 / 1.5 = a 30-degree field
FIELD_GAZE_DEG = 9.0          # peripheral fields' turn from the central one
VISIT_GAZE_DEG = (0.0, 4.0)
MIN_TRUTH_OVERLAP = 0.05      # pairs overlapping less get no control points (nothing to register)
TRUTH_VERSION = 1


def series_visits(rng: np.random.Generator, kind: str, n: int, size: int) -> list[tuple[Visit, Optional[str]]]:
    """(visit, field label) of each view."""
    out = []
    if kind == "visits":
        for _ in range(n):
            out.append((Visit(float(rng.uniform(*VISIT_GAZE_DEG)), float(rng.uniform(0, 360)),
                              float(rng.uniform(-5, 5)), float(rng.uniform(0.95, 1.05)),
                              tuple(float(v) for v in rng.uniform(-1, 1, 2) * 0.03 * size)), None))
        return out
    for k in range(n):
        gaze, direction = (0.0, 0.0) if k % 7 == 0 else (FIELD_GAZE_DEG, 60.0 * (k % 7 - 1))
        out.append((Visit(gaze + float(rng.uniform(-0.5, 0.5)), direction + float(rng.uniform(-5, 5)),
                          float(rng.uniform(-3, 3)), FIELD_ZOOM * float(rng.uniform(0.98, 1.02)),
                          tuple(float(v) for v in rng.uniform(-1, 1, 2) * 0.01 * size)), f"F{k % 7 + 1}"))
    return out


def true_map(eye: EyeModel, a: Visit, b: Visit, pts: np.ndarray) -> np.ndarray:
    """View ``a``'s pixels (N, 2) -> view ``b``'s pixels (N, 2): the exact correspondence."""
    return b.retina_to_pixels(eye, a.pixels_to_retina(eye, np.asarray(pts, np.float64).reshape(-1, 2)))


def _visible(eye: EyeModel, v: Visit, placement, pts: np.ndarray) -> np.ndarray:
    """View pixels (N, 2) inside the aperture and on the source's fundus."""
    canvas = eye.retina_to_canvas(v.pixels_to_retina(eye, pts))
    return _in_aperture(pts, eye.size, margin=0.02 * eye.size) & placement.canvas_fov(canvas)


def _grid(size: int, n: int) -> np.ndarray:
    g = (np.arange(n) + 0.5) * size / n - 0.5
    xx, yy = np.meshgrid(g, g)
    return np.stack([xx.ravel(), yy.ravel()], 1)


def pair_truth(rng: np.random.Generator, eye: EyeModel, placement, vi: Visit, vj: Visit) -> tuple[float, np.ndarray]:
    """(overlap, control points (K, 4) x_j y_j x_i y_i) of views i and j.

    Overlap: the share of view j's visible fundus that view i also shows (as ``synth``'s).
    """
    g = _grid(eye.size, 96)
    in_j = _visible(eye, vj, placement, g)
    gi = true_map(eye, vj, vi, g)
    both = in_j & np.isfinite(gi).all(axis=1)
    both[both] = _visible(eye, vi, placement, gi[both])
    overlap = float(both.sum() / max(1, in_j.sum()))
    if overlap < MIN_TRUTH_OVERLAP:
        return overlap, np.zeros((0, 4))
    cand = g[both]
    # Farthest-point sampling from a random start: points spread over the overlap.
    pick = [int(rng.integers(len(cand)))]
    d = np.linalg.norm(cand - cand[pick[0]], axis=1)
    while len(pick) < min(N_CONTROL_POINTS, len(cand)):
        pick.append(int(np.argmax(d)))
        d = np.minimum(d, np.linalg.norm(cand - cand[pick[-1]], axis=1))
    pj = cand[pick]
    pi = true_map(eye, vj, vi, pj)
    return overlap, np.concatenate([pj, pi], axis=1)


def make_series(out_dir: Path, image: np.ndarray, kind: str, n: int, size: int, seed: int, index: int = 0,
                source_name: str = "") -> dict:
    """Render one series into ``out_dir``; returns the truth record (also written as truth.json)."""
    if kind not in KINDS:
        raise ValueError(f"series kind must be one of {', '.join(KINDS)}, got {kind!r}")
    rng = np.random.default_rng([seed, index, 7])
    placement = place_on_canvas(image, size)
    eye = EyeModel(int(size), EYE_MODEL["nodal_offset"], EYE_MODEL["fov_deg"], CANVAS_FILL * size)
    views = series_visits(rng, kind, n, size)
    (out_dir / "views").mkdir(parents=True, exist_ok=True)
    aperture = aperture_mask(size)
    fov_u8 = placement.fov.astype(np.uint8) * 255
    S = placement.image_to_canvas
    records = []
    for k, (v, fld) in enumerate(views):
        geom = EyePairGeometry(eye, v, v)
        clean = geom.render_reference(placement.image, S, cv2.INTER_CUBIC)
        vis = (geom.render_reference(fov_u8, S) >= 128).astype(np.float32) * aperture
        prm = sample_appearance(rng, "S", k > 0, size)
        if kind == "visits":            # lesions accumulate over the visits
            prm["n_exudates"], prm["n_haemorrhages"] = 2 * k, k
        img, lesions = apply_appearance(rng, clean, vis, prm)
        name = f"views/{k:02d}.jpg"
        _write_jpeg(out_dir / name, img, prm["jpeg_quality"])
        records.append({"image": name, "visit": k + 1 if kind == "visits" else 1, "field": fld,
                        "camera": v.to_dict(), "appearance": {**prm, "lesions": lesions}})
    pairs = []
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            overlap, cps = pair_truth(rng, eye, placement, views[i][0], views[j][0])
            if j < i:
                pairs.append({"query": i, "refer": j, "overlap": overlap,
                              "control_points": np.round(cps, 4).tolist()})
    truth = {"truth_version": TRUTH_VERSION, "kind": kind, "size": size, "seed": seed, "source": source_name,
             "eye": eye.to_dict(), "views": records,
             "convention": "control_points rows: x_refer y_refer x_query y_query (FIRE's order); "
                           "true map: Visit.retina_to_pixels(eye, Visit.pixels_to_retina(eye, p))",
             "pairs": pairs}
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", "visit", "field"])
    for r in records:
        w.writerow([r["image"], r["visit"], r["field"] or ""])
    (out_dir / "series.csv").write_text(buf.getvalue())
    return truth


def load_truth(folder: Path) -> tuple[EyeModel, list[Visit], dict]:
    """(eye, visits, truth dict) of a folder written by :func:`make_series`."""
    t = json.loads((Path(folder) / "truth.json").read_text())
    e = t["eye"]
    eye = EyeModel(int(e["size"]), float(e["nodal_offset"]), float(e["fov_deg"]), float(e["fov_span_px"]))
    return eye, [Visit.from_dict(v["camera"]) for v in t["views"]], t

