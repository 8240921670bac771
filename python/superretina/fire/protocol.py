"""The FIRE evaluation protocol as pure functions.

FIRE (Hernandez-Matas et al. 2017) holds image pairs ``Images/<C><NN>_1.jpg`` (reference) and
``Images/<C><NN>_2.jpg`` (query) with ten ground-truth control points per pair in
``Ground Truth/control_points_<C><NN>_1_2.txt`` (rows ``x_ref y_ref x_query y_query``,
full-resolution pixels). Categories: S (large overlap), P (small overlap), A (anatomical
change). ``control_points_P37_1_2.txt`` is wrong and excluded: 133 pairs, S 71 / P 48 / A 14.

Per pair the estimated homography (query -> reference) maps the ten query points; the pair's
error is the mean distance to the reference points. Failed: no homography or inlier rate
below 1e-6 (error counts as 1e6). Inaccurate: max distance > 50 px or median > 20 px.
Acceptable: the rest. AUC of a category: mean over t = 1..25 px of the fraction of its pairs
with error < t (strict). mAUC: plain mean of the category AUCs. Everything here follows the
reference evaluation (SuperRetina's test_on_FIRE and the MindX port) so that numbers on the
real FIRE are comparable with published ones.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from ..homography import transform_points

FAILED_ERROR = 1e6          # error of a failed pair (the reference's "big number")
MIN_INLIER_RATE = 1e-6      # below this the pair is failed
MAX_DIST_LIMIT = 50.0       # px: max distance above this -> inaccurate
MEDIAN_DIST_LIMIT = 20.0    # px: median distance above this -> inaccurate
AUC_THRESHOLDS = tuple(range(1, 26))
CATEGORIES = ("S", "P", "A")                    # report order of the reference
FULL_FIRE_COUNTS = {"S": 71, "P": 48, "A": 14}  # after excluding P37
EXCLUDED_PAIR = "P37"
SYNTH_MARKER = "synthetic.json"                 # written by superretina.fire.synth
IMAGE_EXTENSIONS = (".jpg", ".png", ".tif", ".tiff", ".jpeg")

_GT_NAME = re.compile(r"^control_points_([A-Za-z])(\d+)_1_2\.txt$")
_IMAGE_NAME = re.compile(r"^([A-Za-z])(\d+)_([12])\.(jpg|jpeg|png|tif|tiff)$", re.IGNORECASE)


# --------------------------------------------------------------------------- ground truth
def load_control_points(path: Union[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    """Read a FIRE ground-truth file.

    Parameters
    ----------
    path : str or Path
        ``control_points_<C><NN>_1_2.txt``: whitespace-separated rows
        ``x_ref y_ref x_query y_query`` (FIRE has 10 rows).

    Returns
    -------
    ref_pts, query_pts : ndarray of shape (N, 2), float64
        Reference and query positions in full-resolution pixels.

    Raises
    ------
    ValueError
        Empty file, a row without exactly four numbers, or a non-numeric / non-finite value;
        the message names the file and the line.
    FileNotFoundError
        The file does not exist.
    """
    path = Path(path)
    rows = []
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            parts = text.replace(",", " ").split()
            if len(parts) != 4:
                raise ValueError(f"{path}: line {lineno} has {len(parts)} columns, expected 4 "
                                 "(x_ref y_ref x_query y_query)")
            try:
                values = [float(p) for p in parts]
            except ValueError:
                raise ValueError(f"{path}: line {lineno} is not numeric: {text!r}") from None
            if not all(np.isfinite(values)):
                raise ValueError(f"{path}: line {lineno} has a non-finite value: {text!r}")
            rows.append(values)
    if not rows:
        raise ValueError(f"{path}: ground-truth file is empty")
    arr = np.asarray(rows, dtype=np.float64)
    return arr[:, 0:2].copy(), arr[:, 2:4].copy()


# --------------------------------------------------------------------------- one pair
@dataclass(frozen=True)
class PairError:
    """Control-point errors of one pair (pixels) and its protocol status.

    ``status`` is ``'failed'``, ``'inaccurate'`` or ``'acceptable'``; a failed pair has
    ``mean = median = max = 1e6``.
    """

    mean: float
    median: float
    max: float
    status: str


def pair_error(H_query_to_ref: Optional[np.ndarray], query_pts: np.ndarray, ref_pts: np.ndarray,
               inlier_rate: float, transform=None) -> PairError:
    """Score one pair by the FIRE protocol.

    Parameters
    ----------
    H_query_to_ref : ndarray of shape (3, 3) or None
        Estimated homography from query pixels to reference pixels; None = no homography.
    query_pts, ref_pts : array-like of shape (N, 2)
        Ground-truth positions in the query and the reference (full-resolution pixels).
    inlier_rate : float
        Inliers / matches of the estimate; below 1e-6 the pair is failed, as in the reference.
    transform : object with ``apply(points (N, 2)) -> (N, 2)``, optional
        The transform the method returned instead of the homography (e.g. a quadratic): the
        control points are mapped through it; the failure rules stay those of the homography.

    Returns
    -------
    PairError
        Mean, median and max distance between mapped query points and reference points.
        Non-finite distances (a point mapped to infinity) are clamped to 1e6 so that every
        number stays finite.
    """
    query_pts = np.asarray(query_pts, dtype=np.float64).reshape(-1, 2)
    ref_pts = np.asarray(ref_pts, dtype=np.float64).reshape(-1, 2)
    if query_pts.shape != ref_pts.shape or len(query_pts) == 0:
        raise ValueError(f"pair_error: query_pts {query_pts.shape} and ref_pts {ref_pts.shape} "
                         "must be the same non-empty (N, 2) shape")
    failed = (H_query_to_ref is None or inlier_rate is None or not np.isfinite(inlier_rate)
              or inlier_rate < MIN_INLIER_RATE)
    if not failed:
        H = np.asarray(H_query_to_ref, dtype=np.float64)
        if H.shape != (3, 3):
            raise ValueError(f"pair_error: homography must be 3x3, got {H.shape}")
        failed = not np.all(np.isfinite(H))
    if failed:
        return PairError(FAILED_ERROR, FAILED_ERROR, FAILED_ERROR, "failed")
    mapped = transform_points(H, query_pts) if transform is None else np.asarray(transform.apply(query_pts), np.float64)
    dist = np.linalg.norm(mapped - ref_pts, axis=1)
    dist = np.where(np.isfinite(dist), np.minimum(dist, FAILED_ERROR), FAILED_ERROR)
    mean, median, mx = float(dist.mean()), float(np.median(dist)), float(dist.max())
    status = "inaccurate" if (mx > MAX_DIST_LIMIT or median > MEDIAN_DIST_LIMIT) else "acceptable"
    return PairError(mean, median, mx, status)


# --------------------------------------------------------------------------- AUC / summary
def category_auc(mean_errors: Sequence[float], thresholds: Iterable[float] = AUC_THRESHOLDS) -> float:
    """Area under the success curve of one category.

    Parameters
    ----------
    mean_errors : sequence of float
        Mean control-point error of each pair of the category (1e6 for failed pairs).
    thresholds : iterable of float
        Success thresholds in pixels; the protocol uses 1, 2, ..., 25.

    Returns
    -------
    float
        Mean over the thresholds t of the fraction of pairs with error < t (strict).
    """
    errs = np.asarray(list(mean_errors), dtype=np.float64)
    ts = np.asarray(list(thresholds), dtype=np.float64)
    if errs.size == 0:
        raise ValueError("category_auc: no pairs")
    if ts.size == 0:
        raise ValueError("category_auc: no thresholds")
    return float(np.mean([(errs < t).mean() for t in ts]))


def success_curve(mean_errors: Sequence[float], thresholds: Iterable[float]) -> np.ndarray:
    """Fraction of pairs with error < t for each threshold t (float64 array)."""
    errs = np.asarray(list(mean_errors), dtype=np.float64)
    return np.asarray([(errs < t).mean() if errs.size else np.nan for t in thresholds])


@dataclass
class PairRow:
    """One evaluated pair as the summary needs it.

    ``status`` is a protocol status (``'failed'``, ``'inaccurate'``, ``'acceptable'``) or
    ``'error'`` (the pair could not be evaluated: missing/corrupt file); an error counts as
    failed, with error 1e6.
    """

    pair: str
    category: str
    mean_error: float
    status: str
    reason: str = ""


RowLike = Union[PairRow, Mapping]


def _as_row(r: RowLike) -> PairRow:
    if isinstance(r, PairRow):
        return r
    if isinstance(r, Mapping):
        try:
            return PairRow(pair=str(r["pair"]), category=str(r["category"]),
                           mean_error=float(r["mean_error"]), status=str(r["status"]),
                           reason=str(r.get("reason", "") or ""))
        except KeyError as e:
            raise ValueError(f"summarise: row lacks field {e.args[0]!r}: {dict(r)}") from None
    raise TypeError(f"summarise: rows must be PairRow or mappings, got {type(r).__name__}")


@dataclass
class Summary:
    """Protocol summary of a set of evaluated pairs.

    Attributes
    ----------
    n_pairs : int
    counts : dict category -> number of pairs (categories present only)
    auc : dict category -> AUC (categories present only)
    mauc : float
        Plain mean of ``auc`` over the categories present (S, P, A on the full FIRE).
    categories_present : list of str, in report order (S, P, A, then others)
    n_failed, n_inaccurate, n_acceptable : int
        ``n_failed`` includes pairs with status 'error'.
    failed_pct, inaccurate_pct, acceptable_pct : float
        Percentages over all pairs.
    errors : list of {'pair', 'reason'}
        Pairs that could not be evaluated.
    is_full_fire : bool
        True when the counts are exactly FIRE's S 71 / P 48 / A 14.
    note : str or None
        Says which categories are missing and that the set is not the full FIRE.
    method, pairs_per_second, seconds_per_pair :
        Filled in by the batch runner (None from ``summarise``).
    models : dict or None
        Pairs per transform model returned (homography / quadratic), from the batch runner.
    """

    n_pairs: int
    counts: dict
    auc: dict
    mauc: float
    categories_present: list
    n_failed: int
    n_inaccurate: int
    n_acceptable: int
    failed_pct: float
    inaccurate_pct: float
    acceptable_pct: float
    errors: list = field(default_factory=list)
    is_full_fire: bool = False
    note: Optional[str] = None
    method: Optional[str] = None
    pairs_per_second: Optional[float] = None
    seconds_per_pair: Optional[float] = None
    models: Optional[dict] = None

    def summary_lines(self) -> list[str]:
        """The reference's two report lines, e.g.

        ``Failed:0.00%, Inaccurate:1.50%, Acceptable:98.50%`` and
        ``S: 0.950, P: 0.554, A: 0.783, mAUC: 0.762``; an absent S/P/A prints ``P: n/a``
        (``note`` says so) and mAUC is then over the categories present.
        """
        line1 = (f"Failed:{self.failed_pct:.2f}%, Inaccurate:{self.inaccurate_pct:.2f}%, "
                 f"Acceptable:{self.acceptable_pct:.2f}%")
        shown = list(CATEGORIES) + [c for c in self.categories_present if c not in CATEGORIES]
        parts = [f"{c}: {self.auc[c]:.3f}" if c in self.auc else f"{c}: n/a" for c in shown]
        line2 = ", ".join(parts + [f"mAUC: {self.mauc:.3f}"])
        return [line1, line2]

    def set_line(self) -> str:
        """One line describing the set: pair counts per category, and whether it is FIRE."""
        counts = ", ".join(f"{c} {self.counts[c]}" for c in self.categories_present)
        if self.is_full_fire:
            return f"Set: {self.n_pairs} pairs ({counts}), the full FIRE protocol set."
        return (f"Set: {self.n_pairs} pairs ({counts}); not the full FIRE (133 pairs: S 71, P 48, "
                "A 14), so the numbers are not comparable with published FIRE results.")

    def to_dict(self) -> dict:
        """JSON-ready dict (includes the two summary lines)."""
        d = asdict(self)
        d["summary_lines"] = self.summary_lines()
        return d


def summarise(rows: Iterable[RowLike]) -> Summary:
    """Summarise evaluated pairs by the FIRE protocol.

    Parameters
    ----------
    rows : iterable of PairRow or mappings
        Each with ``pair``, ``category``, ``mean_error``, ``status`` (failed / inaccurate /
        acceptable / error) and optionally ``reason`` (e.g. rows of ``pairs.csv``).

    Returns
    -------
    Summary
    """
    rows = sorted((_as_row(r) for r in rows), key=lambda r: (r.category, r.pair))
    if not rows:
        raise ValueError("summarise: no evaluated pairs")
    n = len(rows)
    by_cat: dict[str, list[float]] = {}
    n_failed = n_inacc = 0
    errors = []
    for r in rows:
        if r.status not in ("failed", "inaccurate", "acceptable", "error"):
            raise ValueError(f"summarise: pair {r.pair} has unknown status {r.status!r}")
        failed = r.status in ("failed", "error")
        err = FAILED_ERROR if failed else r.mean_error
        by_cat.setdefault(r.category, []).append(err)
        n_failed += failed
        n_inacc += r.status == "inaccurate"
        if r.status == "error":
            errors.append({"pair": r.pair, "reason": r.reason})
    present = [c for c in CATEGORIES if c in by_cat] + sorted(c for c in by_cat if c not in CATEGORIES)
    auc = {c: category_auc(by_cat[c]) for c in present}
    counts = {c: len(by_cat[c]) for c in present}
    mauc = float(np.mean([auc[c] for c in present]))
    n_acc = n - n_failed - n_inacc
    is_full = counts == FULL_FIRE_COUNTS
    notes = []
    missing = [c for c in CATEGORIES if c not in by_cat]
    if missing:
        notes.append(f"category {', '.join(missing)} absent: mAUC is the mean over "
                     f"{', '.join(present)} only")
    if not is_full:
        notes.append("not the full FIRE set (S 71, P 48, A 14)")
    return Summary(
        n_pairs=n, counts=counts, auc=auc, mauc=mauc, categories_present=present,
        n_failed=n_failed, n_inaccurate=n_inacc, n_acceptable=n_acc,
        failed_pct=100.0 * n_failed / n, inaccurate_pct=100.0 * n_inacc / n,
        acceptable_pct=100.0 * n_acc / n, errors=errors, is_full_fire=is_full,
        note="; ".join(notes) if notes else None,
    )


# --------------------------------------------------------------------------- pair list
@dataclass(frozen=True)
class PairSpec:
    """One FIRE pair: name ``<C><NN>``, category letter and its three files."""

    name: str
    category: str
    query_path: Path
    refer_path: Path
    gt_path: Path


def is_synthetic_set(fire_dir: Union[str, Path]) -> bool:
    """True when the folder carries the generator's ``synthetic.json`` marker."""
    return (Path(fire_dir) / SYNTH_MARKER).is_file()


def _find_image(images: Path, stem: str) -> Path:
    # FIRE ships .jpg; accept other formats only when the .jpg is absent.
    for ext in IMAGE_EXTENSIONS:
        p = images / f"{stem}{ext}"
        if p.is_file():
            return p
    return images / f"{stem}.jpg"   # missing: the runner reports it as an error for the pair


def list_pairs(fire_dir: Union[str, Path], exclude_p37: bool = True) -> list[PairSpec]:
    """List the pairs of a FIRE-layout folder, sorted by name.

    Pairs come from ``Ground Truth/control_points_<C><NN>_1_2.txt`` (query ``<C><NN>_2``,
    reference ``<C><NN>_1`` in ``Images/``, ``.jpg``, else ``.png``/``.tif``/``.tiff``/
    ``.jpeg``). A pair whose two images exist but whose ground-truth file is missing is listed
    too (with the missing ``gt_path``) so that the runner reports it as an error rather than
    silently dropping it; on the real FIRE every image pair has its file, so the list is the
    reference's.

    Parameters
    ----------
    fire_dir : str or Path
        Folder with ``Images/`` and ``Ground Truth/``.
    exclude_p37 : bool
        Drop P37, whose ground truth is known to be wrong. Applied only to sets without the
        generator's ``synthetic.json`` marker (the real FIRE): in a synthetic set P37 is a
        pair like any other.

    Raises
    ------
    FileNotFoundError
        The folder, ``Images/`` or ``Ground Truth/`` is missing.
    ValueError
        No pairs found.
    """
    fire_dir = Path(fire_dir)
    images, gt = fire_dir / "Images", fire_dir / "Ground Truth"
    if not fire_dir.is_dir():
        raise FileNotFoundError(f"{fire_dir}: FIRE folder not found")
    for sub in (images, gt):
        if not sub.is_dir():
            raise FileNotFoundError(f"{fire_dir}: not a FIRE-layout folder, missing '{sub.name}/'")
    found: dict[str, Path] = {}          # pair name -> ground-truth path
    for p in gt.iterdir():
        m = _GT_NAME.match(p.name)
        if m:
            found[f"{m.group(1).upper()}{m.group(2)}"] = p
    sides: dict[str, set] = {}
    for p in images.iterdir():
        m = _IMAGE_NAME.match(p.name)
        if m:
            sides.setdefault(f"{m.group(1).upper()}{m.group(2)}", set()).add(m.group(3))
    for stem, s in sides.items():
        if s == {"1", "2"} and stem not in found:
            found[stem] = gt / f"control_points_{stem}_1_2.txt"
    if exclude_p37 and not is_synthetic_set(fire_dir):
        found.pop(EXCLUDED_PAIR, None)
    if not found:
        raise ValueError(f"{fire_dir}: no pairs found in 'Ground Truth/' "
                         "(expected control_points_<C><NN>_1_2.txt)")
    out = []
    for name in sorted(found):
        out.append(PairSpec(name=name, category=name[0],
                            query_path=_find_image(images, f"{name}_2"),
                            refer_path=_find_image(images, f"{name}_1"),
                            gt_path=found[name]))
    return out
