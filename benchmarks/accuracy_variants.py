"""Accuracy of every model variant by the FIRE protocol, on one synthetic FIRE-format set.

    python benchmarks/accuracy_variants.py        # fp32, model/superretina_*.xml, .cache/variants/*.{onnx,xml}
    python benchmarks/accuracy_variants.py --variant fp32=model/superretina.onnx \\
        --variant int8=.cache/variants/int8.onnx --set out/synth_heldout --jobs 1

Each variant runs through the application itself: a temporary copy of the pipeline file whose
mxpi_tensorinfer ``modelPath`` points at the variant, ``superretina.app.open_app(pipeline=...)``,
``superretina.fire.superretina.make_register_fn`` and ``superretina.fire.evaluate.evaluate``
(results per variant in ``--out``/<name>/pairs.csv, summary.json, success_curve.png).

The set: ``--set DIR`` (a FIRE-layout folder), else one is generated once and reused, with
``superretina.fire.synth`` from the held-out photographs of ``--from`` (the split of
``superretina.data_split``: never seen in training nor in int8 calibration).

Table: variant, mAUC and AUC per category S/P/A, failed %, mean |H - H_fp32| (the distance in
reference pixels between the images of each pair's query control points under the variant's and
under the first variant's homography, averaged over the pairs both registered; "agree" counts the
pairs within 1 px or both failed), seconds per pair (the evaluator's mean).
Acceptance rule for a faster variant to become the default (issue 5): mAUC within 0.005 of
fp32's and homographies that agree with fp32's, read as within 1 px (AGREE_PX) at the control
points on every pair. The bf16 model meets it on the seed-0 and seed-1 held-out sets with the
default post-processing (README, Speed).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python")]

from bench import homography_distance, pipeline_with_model  # noqa: E402
from superretina.config import DEFAULT_PIPELINE  # noqa: E402

AGREE_PX = 1.0


def held_out_set(out: Path, source: Path, size: int, pairs_per_image: int, seed: int) -> Path:
    """Generate (once) a synthetic FIRE-format set from the held-out photographs of ``source``."""
    from superretina.fire.synth import SYNTH_MARKER, make_synthetic_set
    from superretina.data_split import split

    marker = out / SYNTH_MARKER
    if marker.is_file():
        meta = json.loads(marker.read_text())
        if (meta.get("complete") and meta.get("size") == size and meta.get("seed") == seed
                and meta.get("pairs_per_image") == pairs_per_image):
            return out
    _, held = split(source)
    if not held:
        raise SystemExit(f"error: {source}: no held-out photographs (superretina/data_split.py HELD_OUT)")
    print(f"generating a synthetic set from {len(held)} held-out photographs into {out} ...", file=sys.stderr)
    make_synthetic_set(out, held, pairs_per_image=pairs_per_image, size=size, seed=seed, overwrite=True)
    return out


def evaluate_variant(name: str, model: Path, pairs, out: Path, jobs: int, pipeline: Path, config) -> dict:
    from superretina.app import open_app
    from superretina.fire.evaluate import evaluate, read_pairs_csv
    from superretina.fire.superretina import make_register_fn

    with tempfile.TemporaryDirectory() as tmp:
        pipe = pipeline_with_model(model, Path(tmp) / f"{name}.pipeline", pipeline)
        with open_app(config, pipe) as app:
            summary = evaluate(pairs, make_register_fn(app), out / name, jobs=jobs, restart=True,
                               progress=True, method=name, verbose=False)
    rows = {r["pair"]: r for r in read_pairs_csv(out / name / "pairs.csv")}
    return {"name": name, "model": str(model), "summary": summary, "rows": rows}


def compare_homographies(base: dict, other: dict, pairs) -> dict:
    from superretina.fire.protocol import load_control_points

    dists, agree = [], 0
    for spec in pairs:
        a, b = base["rows"].get(spec.name), other["rows"].get(spec.name)
        Ha = None if a is None else a["homography"]
        Hb = None if b is None else b["homography"]
        if Ha is None and Hb is None:
            agree += 1
            continue
        if Ha is None or Hb is None:
            continue
        _, query_pts = load_control_points(spec.gt_path)
        d = homography_distance(Ha, Hb, query_pts)
        dists.append(d)
        agree += d <= AGREE_PX
    return {"mean_px": float(np.mean(dists)) if dists else float("nan"),
            "max_px": float(np.max(dists)) if dists else float("nan"),
            "agree": agree, "n": len(pairs)}


def format_table(results: list[dict], diffs: list[dict]) -> str:
    head = (f"{'variant':12s} {'mAUC':>6s} {'S':>6s} {'P':>6s} {'A':>6s} {'failed%':>8s} "
            f"{'|dH| mean':>10s} {'max':>8s} {'agree':>8s} {'s/pair':>7s}")
    lines = [head, "-" * len(head)]
    for res, d in zip(results, diffs):
        s = res["summary"]
        auc = [s.auc.get(c) for c in "SPA"]
        aucs = " ".join(f"{v:6.3f}" if v is not None else f"{'n/a':>6s}" for v in auc)
        spp = f"{s.seconds_per_pair:7.2f}" if s.seconds_per_pair else f"{'-':>7s}"
        if d is None:
            dh = f"{'(base)':>10s} {'':>8s} {'':>8s}"
        else:
            dh = f"{d['mean_px']:10.3f} {d['max_px']:8.2f} {d['agree']:>4d}/{d['n']:<3d}"
        lines.append(f"{res['name']:12s} {s.mauc:6.3f} {aucs} {s.failed_pct:8.2f} {dh} {spp}")
    return "\n".join(lines)


def parse_variant(text: str) -> tuple[str, Path]:
    if "=" in text:
        name, path = text.split("=", 1)
    else:
        name, path = Path(text).stem, text
    return name, Path(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", type=parse_variant, metavar="NAME=PATH",
                    help="a model to evaluate (repeatable; the first is the fp32 base). Default: "
                         "fp32=<the pipeline's model>, the shipped model/superretina_*.xml and every .onnx/.xml in "
                         "--variants-dir")
    ap.add_argument("--variants-dir", type=Path, default=ROOT / ".cache" / "variants",
                    help="folder of shipped variants picked up by default (default .cache/variants)")
    ap.add_argument("--set", type=Path, help="FIRE-layout folder (default: generated from held-out images)")
    ap.add_argument("--from", dest="source", type=Path, default=ROOT.parent / "shared" / "data" / "fundus",
                    help="photographs for the generated set (held-out split used; default ../shared/data/fundus)")
    ap.add_argument("--size", type=int, default=2912, help="side of the generated images (default 2912, FIRE)")
    ap.add_argument("--pairs-per-image", type=int, default=3, help="pairs per held-out photograph (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    ap.add_argument("--max-pairs", type=int, help="evaluate only N pairs, taken in turn from S, P, A (quick look)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "accuracy_variants", help="results folder")
    ap.add_argument("--jobs", type=int, default=1, help="pairs in flight per variant (default 1)")
    ap.add_argument("--pipeline", type=Path, default=DEFAULT_PIPELINE, help="pipeline file to copy per variant")
    ap.add_argument("--config", type=Path, help="registration parameters YAML")
    ap.add_argument("--json", type=Path, help="also write the table's numbers here")
    args = ap.parse_args(argv)

    from bench import default_model
    from superretina.fire.protocol import list_pairs

    shipped = sorted(ROOT.joinpath("model").glob("superretina_*.xml"))  # e.g. the bf16 default
    extra = sorted(p for ext in ("*.onnx", "*.xml") for p in args.variants_dir.glob(ext))
    variants = args.variant or [("fp32", default_model(args.pipeline))] + [(p.stem, p) for p in shipped + extra]
    for name, path in variants:
        if not path.is_file():
            print(f"error: variant {name}: {path} not found", file=sys.stderr)
            return 2
    fire_dir = args.set or held_out_set(ROOT / ".cache" / f"synth_heldout_{args.size}", args.source, args.size,
                                        args.pairs_per_image, args.seed)
    pairs = list_pairs(fire_dir)
    if args.max_pairs and args.max_pairs < len(pairs):
        # Round-robin over the categories, so that a quick look still has S, P and A pairs.
        by_cat = {c: [p for p in pairs if p.category == c] for c in sorted({p.category for p in pairs})}
        picked = []
        while len(picked) < args.max_pairs:
            for c in by_cat:
                if by_cat[c] and len(picked) < args.max_pairs:
                    picked.append(by_cat[c].pop(0))
        pairs = sorted(picked, key=lambda p: p.name)
    print(f"set: {fire_dir} ({len(pairs)} pairs); variants: {', '.join(n for n, _ in variants)}", file=sys.stderr)
    results = [evaluate_variant(name, path, pairs, args.out, args.jobs, args.pipeline, args.config)
               for name, path in variants]
    diffs = [None] + [compare_homographies(results[0], r, pairs) for r in results[1:]]
    print(format_table(results, diffs))
    base = results[0]["summary"].mauc
    for res, d in zip(results[1:], diffs[1:]):
        ok = abs(res["summary"].mauc - base) <= 0.005 and d["agree"] == d["n"]
        print(f"{res['name']}: mAUC {res['summary'].mauc - base:+.4f} vs {results[0]['name']}, "
              f"{d['agree']}/{d['n']} homographies agree within {AGREE_PX:g} px → "
              f"{'meets' if ok else 'does not meet'} the acceptance rule")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([{"name": r["name"], "model": r["model"], "summary": r["summary"].to_dict(),
                                          "vs_base": d} for r, d in zip(results, diffs)], indent=1))
    print(f"results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
