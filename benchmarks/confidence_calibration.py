"""Calibrate the registration's confidence (superretina.confidence) and check its decision.

One command (docs/confidence.md)::

    nice -n 5 .venv/bin/python benchmarks/confidence_calibration.py --eye-set out/eye_heldout

registers every calibration pair once with ``confidence.min_confidence: 0`` (only implausible
transforms fail, so every result's evidence is recorded), writes one row per pair to
``--rows`` (CSV), fits the logistic model of ``confidence.features`` (L2-regularised, classes
weighted equally), writes ``python/superretina/confidence_model.py`` and prints the separation
table at the default threshold. ``--fit-only`` refits from an existing rows file.

Sets (all built here, deterministic):

- ``different``: the different-subject pairs of ``benchmarks/confidence_sets/different_subjects.csv``
  (``--make-list`` rebuilds it from ../shared/data/fundus with ``--seed``); every one is wrong;
- ``degenerate``: gradients against shifted copies, flat images, noise (:func:`degenerate_pairs`);
- ``fire_dev``: the 13 real FIRE pairs of ../shared/data/fire_dev (ground truth);
- ``eye``: an eye-model set made by ``bash run.sh synth OUT --from ../shared/data/fundus --held-out
  --pairs-per-image 3 --size 2912 --seed 0`` (ground truth; ``--eye-set``, several allowed);
- ``fire_dev_shifted``, ``eye_shifted``: wrong results of the fire_dev and eye pairs: each one's
  homography moved by 15, 30 and 60 model pixels (and turned slightly), scored on the same matches (:func:`shifted_row`);
- ``real``: the same-eye pair of ../shared/data/pairs (no ground truth: must be registered).

A result is *right* when the mean control-point error under the returned transform is at most
``confidence.RIGHT_PX`` model pixels (reference pixels / the reference's pixel scale); every
different-subject and degenerate result is wrong. Time: ~3 s a pair on this 2-core machine
(about 15 minutes for the ~300 pairs, plus ~15 minutes to make one eye-model set).
"""
from __future__ import annotations

import argparse
import copy
import csv
import datetime
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python")]

from superretina import confidence as conf  # noqa: E402
from superretina.image_io import read_image  # noqa: E402
from superretina.transform import HomographyTransform, TransformChoice  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
LIST = ROOT / "benchmarks" / "confidence_sets" / "different_subjects.csv"
MODEL_FILE = ROOT / "python" / "superretina" / "confidence_model.py"
ROWS = ROOT / "benchmarks" / "results" / "confidence_calibration.csv"
FEATURES = ("log_support", "log_first_support")
SHIFTS = [(15.0, 0.0), (30.0, 0.02), (60.0, -0.03)]   # (model px, radians): wrong results of right pairs
KNOWN_BAD = ("drive_02.png", "drive_17.png")    # issue 17: registered with 10 rim inliers before
EVIDENCE = [f for f in conf.Evidence.__dataclass_fields__]
COLUMNS = ["set", "pair", "query", "refer", "label", "status", "reason", "model", "error_model_px",
           "right", *EVIDENCE, "implausible", "seconds"]


# --------------------------------------------------------------------------- sets
def subject(name: str) -> str:
    """The person a fundus/ photograph shows: DRIVE and extra images one each (by file),
    CHASE_DB1 ``chase_NNL/R`` both eyes of subject NN."""
    stem = Path(name).stem
    return stem[:-1] if stem.startswith("chase_") else stem


def make_list(count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` different-subject pairs (query, reference), drawn with ``seed``.

    DRIVE-DRIVE, CHASE-CHASE (other subjects), DRIVE-CHASE and extra-CHASE; the ``extra``
    images (origin not stated) are never paired with DRIVE or with each other, since they may
    show the same people.
    """
    names = sorted(p.name for p in (DATA / "fundus").glob("*.png") if p.stem.count("_") == 1)
    def allowed(a: str, b: str) -> bool:
        ka, kb = a.split("_")[0], b.split("_")[0]
        if subject(a) == subject(b):
            return False
        return {ka, kb} in ({"drive"}, {"chase"}, {"drive", "chase"}, {"extra", "chase"})
    cands = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if allowed(a, b)]
    rng = np.random.default_rng(seed)
    picked = [cands[i] for i in rng.choice(len(cands), count, replace=False)]
    pairs = [(b, a) if rng.random() < 0.5 else (a, b) for a, b in picked]
    if KNOWN_BAD not in pairs:
        pairs.append(KNOWN_BAD)
    return pairs


def read_list() -> list[tuple[str, str]]:
    with open(LIST, newline="") as f:
        return [(r["query"], r["refer"]) for r in csv.DictReader(line for line in f if not line.startswith("#"))]


def degenerate_pairs(seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, query, reference) uint8 images with nothing to register: smooth gradients against
    shifted copies (no structure to fix a shift), flat images, noise against other noise and
    against a fundus photograph."""
    rng = np.random.default_rng(seed)
    h, w = 584, 565
    yy, xx = np.mgrid[0:h + 80, 0:w + 80].astype(np.float32)
    out = []
    for i, (ax, ay) in enumerate([(1, 0), (0, 1), (1, 1), (1, -0.5)]):
        g = ax * xx + ay * yy
        g = ((g - g.min()) / (g.max() - g.min()) * 220 + 20).astype(np.uint8)
        dx, dy = rng.integers(10, 60, 2)
        out.append((f"gradient{i}_shift{dx}x{dy}", g[dy:dy + h, dx:dx + w].copy(), g[:h, :w].copy()))
    radial = np.hypot(xx - w / 2, yy - h / 2)
    radial = (255 * np.clip(1 - radial / radial.max(), 0, 1)).astype(np.uint8)
    out.append(("radial_shift", radial[30:30 + h, 20:20 + w].copy(), radial[:h, :w].copy()))
    fundus = read_image(DATA / "fundus" / "drive_05.png", 1 << 30)
    for v in (0, 128, 255):
        out.append((f"flat{v}", np.full((h, w), v, np.uint8), np.full((h, w), v, np.uint8)))
    out.append(("flat128_vs_fundus", np.full((h, w), 128, np.uint8), fundus))
    for i in range(3):
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        b = rng.integers(0, 256, (h, w), dtype=np.uint8)
        out.append((f"noise{i}", a, b))
    blurred = [(rng.normal(128, 40, (h, w)).clip(0, 255)).astype(np.uint8) for _ in range(2)]
    import cv2
    blurred = [cv2.GaussianBlur(b, (0, 0), 3) for b in blurred]
    out.append(("smooth_noise", blurred[0], blurred[1]))
    out.append(("noise_vs_fundus", rng.integers(0, 256, fundus.shape, dtype=np.uint8), fundus))
    return out


# --------------------------------------------------------------------------- registering
def run_pair(reg, query, refer, gt=None, shifted: list | None = None) -> dict:
    """Register and describe one pair; ``gt``: (query_pts, refer_pts) control points or None;
    ``shifted``: a list that gets the rows of :func:`shifted_row` (wrong results of the pair)."""
    t0 = time.perf_counter()
    res = reg.register_images(query, refer)
    if shifted is not None:
        for k, (d, a) in enumerate(SHIFTS):
            row = shifted_row(res, d, a)
            if row is not None:
                shifted.append(row)
    row = {"status": res.status, "reason": res.reason or "", "seconds": f"{time.perf_counter() - t0:.2f}"}
    t = res.transform if res.transform is not None else (res.rejected[1] if res.rejected else None)
    row["model"] = "" if t is None else t.model
    if res.assessment is not None:
        row.update(res.assessment.evidence.to_json(), implausible=res.assessment.implausible or "")
    if gt is not None and t is not None:
        err = np.linalg.norm(t.transform.apply(gt[0]) - gt[1], axis=1).mean() / res.refer.pixel_scale
        row["error_model_px"] = f"{err:.3f}"
    return row


def shifted_row(res, shift_model_px: float, angle: float) -> dict | None:
    """The evidence of a wrong result of the same pair: its homography moved by ``shift_model_px``
    model pixels and turned by ``angle`` radians about the reference's centre (same matches)."""
    H = res.H if res.H is not None else (res.rejected[0] if res.rejected else None)
    if H is None:
        return None
    (hr, wr), px = res.refer_size[:2], res.refer.pixel_scale
    c, s = np.cos(angle), np.sin(angle)
    cx, cy = wr / 2, hr / 2
    R = np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0, 0, 1]])
    move = np.array([[1, 0, shift_model_px * px * 0.8], [0, 1, shift_model_px * px * 0.6], [0, 0, 1]])
    wrong = copy.copy(res)
    wrong.H = move @ R @ H
    wrong.transform = TransformChoice(HomographyTransform(wrong.H), "homography")
    a = conf.assess(wrong, res_model_hw(res))
    return {"status": "failed" if a.failure(0.0) else "registered", "reason": a.failure(0.0) or "",
            "model": "homography", **a.evidence.to_json(), "implausible": a.implausible or "", "seconds": "0"}


def res_model_hw(res) -> tuple[int, int]:
    """The model frame of a result: the reference's pixel scale is its size over the frame's."""
    (hr, wr), px = res.refer_size[:2], res.refer.pixel_scale
    return int(round(hr / px)), int(round(wr / px))


def collect(eye_sets: list[Path], rows_path: Path, only: set | None = None,
            fov_margin: int | None = None, model: str | None = None, config: Path | None = None,
            pipeline: Path | None = None) -> list[dict]:
    """Register the sets (``only``: just these, the other sets' rows kept from ``rows_path``)."""
    from superretina.app import open_app
    from superretina.fire.protocol import list_pairs, load_control_points

    rows: list[dict] = []
    if only and rows_path.is_file():
        with open(rows_path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["set"].removesuffix("_shifted") not in only]
    want = (lambda name: not only or name in only)

    def add(set_name, pair, qname, rname, label, row):
        row.update(set=set_name, pair=pair, query=qname, refer=rname, label=label)
        if set_name in ("different", "degenerate") or set_name.endswith("_shifted"):
            row["right"] = 0
        elif "error_model_px" in row:
            row["right"] = int(float(row["error_model_px"]) <= conf.RIGHT_PX)
        rows.append(row)
        e = row.get("error_model_px", "-")
        print(f"{set_name:10} {pair:28} {row['status']:10} support {row.get('support', '-')}/"
              f"{row.get('first_support', '-')} cov {row.get('coverage', '-')} err {e}", flush=True)

    from superretina.config import load_config, read_settings

    if config:
        load_config(config)   # checked here, so that a bad value names the file
    # the file's own keys only: a whole configuration here would set every key and hide the
    # pipeline's own settings (--model int8's keypoint threshold)
    overrides: dict = read_settings(config) if config else {}
    overrides["confidence"] = {**overrides.get("confidence", {}), "min_confidence": 0.0}
    if fov_margin is not None:
        overrides.setdefault("keypoints", {})["fov_margin"] = fov_margin
    with open_app(overrides, pipeline, runtime="local", model=model) as app:
        reg = app.registrar
        limit = app.config["input"]["max_pixels"]
        for name, q, r in degenerate_pairs() if want("degenerate") else []:
            add("degenerate", name, name, name, "wrong", run_pair(reg, q, r))
        for fire_dir, set_name in [(DATA / "fire_dev", "fire_dev")] + [(p, "eye") for p in eye_sets]:
            if not want(set_name):
                continue
            for spec in list_pairs(fire_dir):
                ref_pts, query_pts = load_control_points(spec.gt_path)
                q, r = read_image(spec.query_path, limit), read_image(spec.refer_path, limit)
                pair = spec.name if set_name == "fire_dev" else f"{Path(fire_dir).name}/{spec.name}"
                wrong: list = []
                add(set_name, pair, spec.query_path.name, spec.refer_path.name, "right",
                    run_pair(reg, q, r, (query_pts, ref_pts), wrong))
                for (d, _), row in zip(SHIFTS, wrong):
                    add(f"{set_name}_shifted", f"{pair}+{d:g}px", spec.query_path.name, spec.refer_path.name,
                        "wrong", row)
        pq, pr = DATA / "pairs" / "example2.jpg", DATA / "pairs" / "example1.jpg"
        if want("real"):
            add("real", "example2->example1", pq.name, pr.name, "right",
                run_pair(reg, read_image(pq, limit), read_image(pr, limit)))
        for qn, rn in read_list() if want("different") else []:
            q, r = read_image(DATA / "fundus" / qn, limit), read_image(DATA / "fundus" / rn, limit)
            add("different", f"{Path(qn).stem}->{Path(rn).stem}", qn, rn, "wrong", run_pair(reg, q, r))
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    with open(rows_path, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return rows


# --------------------------------------------------------------------------- fitting
def _evidence(row: dict) -> conf.Evidence | None:
    if row.get("support", "") == "":
        return None
    kw = {}
    for k in EVIDENCE:
        v = row[k]
        counts = ("matches", "support", "first_matches", "first_support", "keypoints")
        kw[k] = None if v in ("", "None") else (int(v) if k in counts else float(v))
    return conf.Evidence(**kw)


def _features(e: conf.Evidence, names) -> np.ndarray:
    old = conf.confidence_model.FEATURES
    conf.confidence_model.FEATURES = tuple(names)
    try:
        return conf.features(e)
    finally:
        conf.confidence_model.FEATURES = old


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 50) -> tuple[np.ndarray, float]:
    """Weighted L2 logistic regression by Newton's method; classes weighted to equal totals.

    Returns (coefficients (F,), intercept). The features are standardised inside, so that the
    penalty treats them alike, and the coefficients returned apply to the raw features.
    """
    mu, sd = X.mean(0), X.std(0) + 1e-9
    Z = np.hstack([np.ones((len(X), 1)), (X - mu) / sd])
    wts = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1)) * len(y)
    beta = np.zeros(Z.shape[1])
    pen = np.full(Z.shape[1], l2)
    pen[0] = 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(Z @ beta, -50, 50)))
        g = Z.T @ (wts * (p - y)) + pen * beta
        Hm = (Z * (wts * p * (1 - p))[:, None]).T @ Z + np.diag(pen)
        step = np.linalg.solve(Hm, g)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    coef = beta[1:] / sd
    return coef, float(beta[0] - (coef * mu).sum())


def write_model(coef, intercept, names, rows, command: str) -> None:
    n_right = sum(1 for r in rows if r.get("right") == "1" or r.get("right") == 1)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    sets = {}
    for r in rows:
        sets[r["set"]] = sets.get(r["set"], 0) + 1
    about = textwrap.fill(
        f"Written by `{command}` on {datetime.date.today()} at commit {commit}, from {len(rows)} pairs "
        f"({', '.join(f'{k} {v}' for k, v in sets.items())}; {n_right} right results). confidence = "
        "1 / (1 + exp(-(INTERCEPT + COEFFICIENTS . features))), features as confidence.features.", 100)
    MODEL_FILE.write_text(
        '"""Coefficients of the confidence model (superretina.confidence): GENERATED, do not edit.\n\n'
        f'{about}\n"""\n'
        f"FEATURES = {tuple(names)!r}\n"
        f"COEFFICIENTS = ({', '.join(f'{c:.6g}' for c in coef)},)\n"
        f"INTERCEPT = {intercept:.6g}\n")


def table(rows: list[dict], coef, intercept, names, threshold: float) -> str:
    """Markdown separation table: per set, registered counts at ``threshold`` and confidence ranges."""
    lines = ["| set | pairs | right | registered | registered and wrong | confidence of right (min) | "
             "confidence of wrong (max) |", "|---|---|---|---|---|---|---|"]
    for s in dict.fromkeys(r["set"] for r in rows):
        rs = [r for r in rows if r["set"] == s]
        cs, right, reg, bad = [], [], 0, 0
        for r in rs:
            e = _evidence(r)
            c = 0.0 if e is None or conf.implausibility(e) else float(
                1 / (1 + np.exp(-(intercept + _features(e, names) @ coef))))
            ok = c >= threshold and r["status"] == "registered"
            is_right = str(r.get("right", "")) == "1" or (s == "real")
            reg += ok
            bad += ok and not is_right
            cs.append((c, is_right))
        cr = [c for c, ok in cs if ok]
        cw = [c for c, ok in cs if not ok]
        lines.append(f"| {s} | {len(rs)} | {len(cr)} | {reg} | {bad} | "
                     f"{min(cr):.3f} | " if cr else f"| {s} | {len(rs)} | 0 | {reg} | {bad} | - | ")
        lines[-1] += f"{max(cw):.3f} |" if cw else "- |"
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eye-set", type=Path, action="append", default=[],
                    help="an eye-model set made by `bash run.sh synth ... --held-out` (repeatable)")
    ap.add_argument("--rows", type=Path, default=ROWS, help=f"rows CSV (default {ROWS.relative_to(ROOT)})")
    ap.add_argument("--only", help="register only these sets (comma-separated: degenerate, fire_dev, eye, real, "
                    "different), keeping the other sets' rows of --rows")
    ap.add_argument("--fov-margin", type=int, help="keypoints.fov_margin for the registrations (default: the "
                    "config's; -1: no field-of-view mask, for the ablation in docs/confidence.md)")
    ap.add_argument("--model", help="a shipped model by name (default: the default pipeline's), to check "
                    "the coefficients with another network (e.g. int8, with --no-write)")
    ap.add_argument("--pipeline", type=Path, help="a pipeline file instead of --model (e.g. an IR not shipped)")
    ap.add_argument("--config", type=Path, help="registration parameters YAML laid over the default (e.g. another "
                    "keypoints.nms_thresh), for the registrations")
    ap.add_argument("--fit-only", action="store_true", help="refit from --rows without registering")
    ap.add_argument("--make-list", action="store_true", help="rebuild the different-subject list and stop")
    ap.add_argument("--count", type=int, default=240, help="different-subject pairs of --make-list")
    ap.add_argument("--seed", type=int, default=0, help="seed of --make-list")
    ap.add_argument("--threshold", type=float, default=0.5, help="confidence.min_confidence to tabulate")
    # 0.03: with the lowrank model (0.5.0) a linear gradient against its shifted copy keeps 28/21
    # supporting matches, which 0.1 put at 0.517; 0.03 keeps every wrong row below 0.34 (docs/confidence.md)
    ap.add_argument("--l2", type=float, default=0.03, help="L2 penalty of the standardised coefficients")
    ap.add_argument("--features", default=",".join(FEATURES),
                    help=f"comma-separated inputs of the model, among those of confidence.features (default "
                         f"{','.join(FEATURES)})")
    ap.add_argument("--no-write", action="store_true", help="do not rewrite confidence_model.py")
    ap.add_argument("--shipped", action="store_true", help="tabulate the shipped coefficients (confidence_model.py) "
                    "on the rows instead of a refit (implies --no-write): does the model in use still separate them?")
    args = ap.parse_args(argv)
    if args.make_list:
        LIST.parent.mkdir(parents=True, exist_ok=True)
        with open(LIST, "w", newline="") as f:
            f.write(f"# different-subject pairs: benchmarks/confidence_calibration.py --make-list "
                    f"--count {args.count} --seed {args.seed}\n")
        with open(LIST, "a", newline="") as f:
            w = csv.writer(f)
            w.writerow(["query", "refer"])
            w.writerows(make_list(args.count, args.seed))
        print(f"wrote {LIST}")
        return 0
    if args.fit_only:
        with open(args.rows, newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        t0 = time.perf_counter()
        rows = collect(args.eye_set, args.rows, set(args.only.split(",")) if args.only else None, args.fov_margin,
                       args.model, args.config, args.pipeline)
        rows = [{k: str(v) for k, v in r.items()} for r in rows]
        print(f"registered {len(rows)} pairs in {time.perf_counter() - t0:.0f} s; rows in {args.rows}")
    fit = [(r, _evidence(r)) for r in rows if r["set"] != "real"]
    fit = [(r, e) for r, e in fit if e is not None and conf.implausibility(e) is None and r.get("right", "") != ""]
    if args.shipped:
        from superretina import confidence_model as shipped

        names, coef, intercept = shipped.FEATURES, np.array(shipped.COEFFICIENTS), shipped.INTERCEPT
        print("the shipped coefficients (confidence_model.py):", names, coef, intercept)
    else:
        names = tuple(args.features.split(","))
        X = np.array([_features(e, names) for _, e in fit])
        y = np.array([int(r["right"]) for r, _ in fit], float)
        coef, intercept = fit_logistic(X, y, args.l2)
        print("features", names, "coefficients", np.round(coef, 4), "intercept", round(intercept, 4))
    print(table(rows, coef, intercept, names, args.threshold))
    if not args.no_write and not args.shipped:
        write_model(coef, intercept, names, rows, "benchmarks/confidence_calibration.py " + " ".join(
            a for a in (argv if argv is not None else sys.argv[1:])))
        print(f"wrote {MODEL_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
