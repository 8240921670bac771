"""Register a series of one eye into one frame: :func:`register_series` -> :class:`Series`.

    import superretina
    s = superretina.register_series(["v1.jpg", "v2.jpg", "v3.jpg"])    # or a folder, or a CSV
    s.reference                    # index of the frame's image
    s.transforms[2].apply(pts)     # image 2 pixels (N, 2) -> frame pixels; .inverse: back
    s.map_points(2, 0, pts)        # image 2 -> frame -> image 0
    s.save("out/eye1")             # series.json, aligned/, montage.png, flicker.html

Steps: which pairs (``graph``), each registered with the pair API (a :class:`~superretina.Session`),
the frame and first transforms along the strongest paths (``frame``), one joint robust
refinement (``refine``). An image that no registered pair links to the reference's component
is reported in ``unconnected`` with no transform, never forced in.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from ..api import ImageLike, Registration, Session, _image
from ..parallel import in_flight
from ..transform import HomographyTransform, transform_from_json
from . import frame as frame_mod
from . import graph
from .inputs import SeriesImage, SeriesInputError, collect_images, visit_order
from .refine import EdgeMatches, refine

SERIES_VERSION = 1


@dataclass
class SeriesPair:
    """One registered (or failed) pair of the series: image ``query`` mapped onto image ``refer``."""

    query: int
    refer: int
    registration: Registration
    weight: float
    used_matches: int = 0
    residual_px: Optional[dict] = None     # median residual in refer pixels: direct / initial / refined

    def to_json(self) -> dict:
        r = self.registration
        return {"query": self.query, "refer": self.refer, "status": r.status, "reason": r.reason,
                "weight": round(self.weight, 6), "num_inliers": r.quality["num_inliers"],
                "used_matches": self.used_matches, "transform_model": r.transform.model if r.transform else None,
                "residual_median_px": self.residual_px}


class Series:
    """Images of one eye in one frame (the reference's pixels).

    Attributes
    ----------
    images : list of SeriesImage
    sizes : list of (height, width)
    reference : int
    transforms : list of HomographyTransform / QuadraticTransform / None
        Image pixels (N, 2) -> frame pixels (``.apply``) and back (``.inverse``); None for an
        unconnected image.
    pairs : list of SeriesPair
    unconnected : list of int
    model_choice : dict (requested, returned, reason, held_out_score)
    """

    def __init__(self, images, sizes, reference, transforms, pairs, model_choice, refine_cost, seconds,
                 provenance=None, pixels=None, config=None):
        self.images: list[SeriesImage] = images
        self.sizes: list[tuple[int, int]] = sizes
        self.reference: int = reference
        self.transforms = transforms
        self.pairs: list[SeriesPair] = pairs
        self.model_choice = model_choice
        self.refine_cost = refine_cost
        self.seconds = seconds
        self.provenance = provenance or {}
        self._pixels = pixels
        self._config = config
        self._extra: dict = {}

    @property
    def unconnected(self) -> list[int]:
        return [i for i, t in enumerate(self.transforms) if t is None]

    def map_points(self, i: int, j: int, pts) -> np.ndarray:
        """Image ``i``'s pixels (N, 2) -> frame -> image ``j``'s pixels (N, 2); NaN where not invertible."""
        if self.transforms[i] is None or self.transforms[j] is None:
            raise ValueError(f"image {self.images[i if self.transforms[i] is None else j].name} is not in the frame")
        return self.transforms[j].inverse(self.transforms[i].apply(np.asarray(pts, np.float64).reshape(-1, 2)))

    def canvas(self) -> dict:
        """Bounding box (frame pixels) of every connected image's outline: x0, y0, width, height."""
        pts = []
        for t, (h, w) in zip(self.transforms, self.sizes):
            if t is None:
                continue
            s = np.linspace(0, 1, 17)
            border = np.concatenate([np.stack([s * (w - 1), 0 * s], 1), np.stack([s * (w - 1), 0 * s + h - 1], 1),
                                     np.stack([0 * s, s * (h - 1)], 1), np.stack([0 * s + w - 1, s * (h - 1)], 1)])
            m = t.apply(border)
            pts.append(m[np.isfinite(m).all(axis=1)])
        p = np.concatenate(pts)
        x0, y0 = np.floor(p.min(axis=0))
        x1, y1 = np.ceil(p.max(axis=0))
        return {"x0": int(x0), "y0": int(y0), "width": int(x1 - x0 + 1), "height": int(y1 - y0 + 1)}

    def annotate(self, key: str, value) -> None:
        """Add an entry to series.json (e.g. errors against a known ground truth)."""
        if key in self.to_json():
            raise KeyError(f"{key!r} is a series.json entry of the series itself")
        self._extra[key] = json.loads(json.dumps(value))

    def to_json(self) -> dict:
        h, w = self.sizes[self.reference]
        images = []
        for k, (im, t, (ih, iw)) in enumerate(zip(self.images, self.transforms, self.sizes)):
            images.append({"index": k, **im.to_json(), "size": {"height": ih, "width": iw},
                           "status": "unconnected" if t is None else "in frame",
                           "transform": None if t is None else t.to_json()})
        n = len(self.images)
        return {"series_version": SERIES_VERSION,
                "direction": "image -> frame (the reference's pixels), original pixels",
                "reference": {"index": self.reference, "name": self.images[self.reference].name},
                "frame": {"width": w, "height": h}, "canvas": self.canvas(),
                "model_choice": self.model_choice, "images": images,
                "unconnected": [self.images[i].name for i in self.unconnected],
                "pairs": [p.to_json() for p in self.pairs],
                "pairs_registered": len(self.pairs), "pairs_all": n * (n - 1) // 2,
                "refinement": self.refine_cost, "seconds": self.seconds, **self.provenance, **self._extra}

    def save(self, folder: Union[str, Path], pictures: bool = True) -> list[Path]:
        """Write series.json, aligned/ (PNG per image and a TIFF stack), montage.png and
        flicker.html into ``folder`` (the pictures only for a series made in this process, and
        only with ``pictures``: False writes series.json alone)."""
        from .outputs import write_series

        return write_series(self, Path(folder), self._pixels if pictures else None)

    def summary(self) -> str:
        """A few terminal lines: the frame, the images in it, the pairs and residuals."""
        d = self.to_json()
        inn = len(self.images) - len(self.unconnected)
        lines = [f"series: {len(self.images)} images, {inn} in the frame of {d['reference']['name']} "
                 f"({d['frame']['width']}x{d['frame']['height']}), model {d['model_choice']['returned']}"
                 + (f" ({d['model_choice']['reason']})" if d["model_choice"].get("reason") else ""),
                 f"pairs registered: {d['pairs_registered']} of {d['pairs_all']} possible "
                 f"({sum(p.registration.registered for p in self.pairs)} succeeded)"]
        if d["refinement"]:
            lines.append(f"match residual in the frame (median): chained {d['refinement'].get('initial_median_px')} px, "
                         f"jointly refined {d['refinement'].get('refined_median_px')} px")
        if self.unconnected:
            lines.append("unconnected (no registered pair joins them to the frame): " + ", ".join(d["unconnected"]))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Series({len(self.images)} images, reference {self.images[self.reference].name}, "
                f"{len(self.unconnected)} unconnected, {len(self.pairs)} pairs)")


def load_series(path: Union[str, Path]) -> dict:
    """A saved series.json with each image's ``transform`` as a transform object (None when unconnected)."""
    path = Path(path)
    if path.is_dir():
        path = path / "series.json"
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SeriesInputError(f"{path}: cannot read series.json ({exc})") from None
    for im in d.get("images", []):
        im["transform"] = None if im.get("transform") is None else transform_from_json(im["transform"])
    return d


def _resolve_reference(reference, images: Sequence[SeriesImage]) -> Optional[int]:
    if reference is None:
        return None
    if isinstance(reference, (int, np.integer)) and not isinstance(reference, bool):
        if not 0 <= int(reference) < len(images):
            raise SeriesInputError(f"reference: index {reference} outside 0..{len(images) - 1}")
        return int(reference)
    ref = str(reference)
    for k, im in enumerate(images):
        if ref in (im.name, str(im.path)) or (im.path is not None and Path(ref).name == im.path.name):
            return k
    raise SeriesInputError(f"reference: {ref!r} is not one of the series' images")


def _edge_matches(p: SeriesPair, tol_px: float, cap: int) -> EdgeMatches:
    """The pair's matches within ``tol_px`` of its returned transform (at most ``cap``, evenly
    spread over the list) as an edge. Not only the estimator's inliers: on small-overlap pairs
    those are a handful (12 of 228 on FIRE P30), too few to constrain a quadratic in the frame."""
    m, t = p.registration.matches, p.registration.transform
    d = np.linalg.norm(t.apply(m.query_xy) - m.refer_xy, axis=1) if len(m) else np.zeros(0)
    keep = np.isfinite(d) & (d < tol_px)
    q, r = m.query_xy[keep], m.refer_xy[keep]
    if len(q) > cap:
        pick = np.linspace(0, len(q) - 1, cap).round().astype(int)
        q, r = q[pick], r[pick]
    p.used_matches = int(len(q))
    return EdgeMatches(p.query, p.refer, q, r, p.weight)


def _median_residual(t_i, t_j, xi: np.ndarray, xj: np.ndarray) -> Optional[float]:
    if t_i is None or t_j is None or len(xi) == 0:
        return None
    d = np.linalg.norm(t_j.inverse(t_i.apply(xi)) - xj, axis=1)
    d = d[np.isfinite(d)]
    return round(float(np.median(d)), 4) if len(d) else None


def register_series(images: Sequence[ImageLike], reference: Union[int, str, None] = None, *,
                    config: Union[str, Path, Mapping, None] = None, pipeline=None, runtime=None,
                    session: Optional[Session] = None, progress=None, jobs: int = 2) -> Series:
    """Register ``images`` (paths, arrays, one folder or one CSV) of one eye into one frame.

    Parameters
    ----------
    images : sequence
        See :func:`superretina.series.inputs.collect_images`.
    reference : int or str, optional
        The frame's image (index, name or path); default the image that best connects the others.
    config, pipeline, runtime : as :class:`superretina.Session` (ignored when ``session`` is given).
    session : Session, optional
        An open session to register the pairs with.
    progress : callable(str), optional
        Called with a line per registered pair.
    jobs : int
        Pairs in flight at once (default 2; 1: one by one). The series is the same either way.
    """
    descs, sources = collect_images(images)
    if len(descs) < 2:
        raise SeriesInputError("a series needs at least 2 images")
    ref_given = _resolve_reference(reference, descs)
    own = session is None
    session = Session(config, pipeline, runtime) if own else session
    try:
        return _register(descs, sources, ref_given, session, progress, jobs)
    finally:
        if own:
            session.close()


def _register(descs, sources, ref_given, session: Session, progress, jobs: int) -> Series:
    cfg = session.config
    scfg, tcfg = cfg["series"], cfg["transform"]
    t0 = time.perf_counter()
    limit = cfg["input"]["max_pixels"]
    pixels = []
    for d, s in zip(descs, sources):
        img, _ = _image(s, d.name, limit)
        pixels.append(img)
    sizes = [tuple(int(v) for v in p.shape[:2]) for p in pixels]
    n = len(descs)
    sim = graph.similarity_matrix([graph.thumbnail(p) for p in pixels])
    order = visit_order(descs)
    todo = graph.initial_pairs(order, sim, scfg["all_pairs_max"], scfg["time_neighbours"], scfg["similar_pairs"])
    if ref_given is not None:           # a reference given: make sure it is tried against its most similar image
        best = int(np.argmax(np.where(np.arange(n) == ref_given, -np.inf, sim[ref_given])))
        todo = sorted(set(todo) | {graph._key(ref_given, best)})
    tried: set = set()
    pairs: list[SeriesPair] = []
    t_pairs = time.perf_counter()
    rounds = 0

    def register_pair(qr):
        q, r = qr
        return session.register(pixels[q], pixels[r], paths=(descs[q].path, descs[r].path))

    while todo:
        tried.update(todo)
        # The later visit is the query (mapped onto the earlier one), as a user would register it.
        qr = [(b, a) if order.index(a) < order.index(b) else (a, b) for a, b in todo]
        # Up to ``jobs`` pairs in flight (one session: the stream keeps each caller's results
        # apart); handed back in the round's order, so the series is the one-by-one series.
        for (q, r), reg in zip(qr, in_flight(register_pair, qr, jobs)):
            pairs.append(SeriesPair(q, r, reg, graph.edge_weight(reg.to_json())))
            if progress:
                progress(f"pair {descs[q].name} -> {descs[r].name}: {reg.status}"
                         + (f" ({reg.quality['num_inliers']} inliers)" if reg.registered else f" ({reg.reason})"))
        if n <= scfg["all_pairs_max"] or rounds >= scfg["fill_rounds"]:
            break
        rounds += 1
        ok = [(p.query, p.refer) for p in pairs if p.registration.registered]
        todo = graph.fill_pairs(n, tried, ok, sim, scfg["min_degree"])
    t_reg = time.perf_counter() - t_pairs
    good = [p for p in pairs if p.registration.registered and p.weight > 0]
    wedges = [(p.query, p.refer, p.weight) for p in good]
    if wedges:
        ref = frame_mod.choose_reference(n, wedges, ref_given)
        H0 = frame_mod.initial_homographies(n, ref, wedges, {(p.query, p.refer): p.registration.homography for p in good})
    else:
        ref = 0 if ref_given is None else ref_given
        H0 = [np.eye(3) if k == ref else None for k in range(n)]
    rh, rw = sizes[ref]
    model_px = max(rw / cfg["model"]["image_width"], rh / cfg["model"]["image_height"])   # frame px per model px
    scale_px = scfg["loss_scale"] * model_px
    edges = [_edge_matches(p, scfg["match_tolerance"] * max(sizes[p.refer][1] / cfg["model"]["image_width"],
                                                           sizes[p.refer][0] / cfg["model"]["image_height"]),
                           scfg["max_matches_per_pair"]) for p in good]
    t_ref = time.perf_counter()
    res = refine(sizes, ref, H0, [e for e in edges if H0[e.i] is not None and H0[e.j] is not None],
                 tcfg["model"], scale_px, tcfg["auto_gain"], tcfg["min_matches"])
    t_ref = time.perf_counter() - t_ref
    init = [None if H is None else HomographyTransform(H) for H in H0]
    for p, e in zip(good, edges):
        p.residual_px = {"direct": _median_residual(p.registration.transform, HomographyTransform(np.eye(3)), e.xi, e.xj),
                         "initial": _median_residual(init[e.i], init[e.j], e.xi, e.xj),
                         "refined": _median_residual(res.transforms[e.i], res.transforms[e.j], e.xi, e.xj)}
    choice = {"requested": res.requested, "returned": res.model, "reason": res.reason,
              "held_out_score": {k: round(float(v), 4) for k, v in res.held_out.items()}}
    seconds = {"pairs": round(t_reg, 3), "refine": round(t_ref, 3), "total": round(time.perf_counter() - t0, 3)}
    cost = {**res.cost, "loss": "cauchy", "scale_px": round(scale_px, 4),
            "match_tolerance_px": round(scfg["match_tolerance"] * model_px, 4)}
    return Series(descs, sizes, ref, res.transforms, pairs, choice, cost, seconds,
                  dict(session.provenance), pixels, cfg)
