"""Does a candidate default model pass the project's accuracy rule against the current default?

    python benchmarks/accuracy_rule.py --fire out/acc/fire_dev_default out/acc/fire_dev_fast \\
        --eye out/acc/eye_s0_default out/acc/eye_s0_fast --eye out/acc/eye_s1_default out/acc/eye_s1_fast

Each argument pair is two ``bash run.sh fire`` output folders (``pairs.csv``) of one set, the
current default first, made in one run (``benchmarks/fast_model_eval.sh``). The rule (issue 19):

* ``--fire`` (real FIRE pairs): mAUC and every category not below the base's by more than 0.01,
  and no pair's mean control-point error more than 2 px above the base's;
* ``--eye`` (held-out eye-model sets): no category (nor mAUC) below by more than 0.01, 0 failed.

Prints one table per set and PASS/FAIL per check; exits 0 when all pass, 1 otherwise, 2 on
bad input. ``--json`` writes the same numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from superretina.fire.evaluate import read_pairs_csv  # noqa: E402
from superretina.fire.protocol import summarise  # noqa: E402

AUC_DROP = 0.01   # largest allowed drop of mAUC / a category AUC
PAIR_WORSE_PX = 2.0  # largest allowed increase of one pair's mean error (real FIRE)


def load(folder: Path) -> tuple[dict, object]:
    """(rows by pair, FIRE-protocol summary) of a fire output folder."""
    if not (folder / "pairs.csv").is_file():
        raise SystemExit(f"error: {folder}: no pairs.csv (run `bash run.sh fire SET --out {folder}` first)")
    rows = {r["pair"]: r for r in read_pairs_csv(folder / "pairs.csv")}
    return rows, summarise(rows.values())


def check(kind: str, base_dir: Path, new_dir: Path) -> dict:
    """Numbers and verdicts of one set."""
    base_rows, base = load(base_dir)
    new_rows, new = load(new_dir)
    if set(base_rows) != set(new_rows):
        raise SystemExit(f"error: {base_dir} and {new_dir} hold different pairs "
                         f"({len(base_rows)} vs {len(new_rows)}); finish both runs first")
    keys = sorted(base.auc) + ["mAUC"]
    b = {**base.auc, "mAUC": base.mauc}
    n = {**new.auc, "mAUC": new.mauc}
    drops = {k: b[k] - n[k] for k in keys}
    checks = {"AUCs within 0.01": all(d <= AUC_DROP + 1e-12 for d in drops.values())}
    def error(row):  # a failed pair counts as infinitely far off
        return float("inf") if row["status"] in ("failed", "error") else float(row["mean_error"])

    worse = {p: error(new_rows[p]) - error(base_rows[p]) for p in base_rows}
    if kind == "fire":
        checks["no pair > 2 px worse"] = max(worse.values()) <= PAIR_WORSE_PX
    else:
        checks["0 failed"] = new.n_failed == 0
    return {"kind": kind, "base": str(base_dir), "new": str(new_dir), "pairs": len(base_rows),
            "base_auc": b, "new_auc": n, "base_failed": base.n_failed, "new_failed": new.n_failed,
            "worst_pair": max(worse, key=worse.get), "worst_pair_delta_px": max(worse.values()),
            "mean_error_delta_px": sum(worse.values()) / len(worse),
            "pairs_better": sum(d < 0 for d in worse.values()), "checks": checks,
            "pass": all(checks.values())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fire", nargs=2, type=Path, action="append", default=[], metavar=("BASE", "NEW"))
    ap.add_argument("--eye", nargs=2, type=Path, action="append", default=[], metavar=("BASE", "NEW"))
    ap.add_argument("--json", type=Path, help="write the numbers and verdicts here")
    args = ap.parse_args(argv)
    if not args.fire and not args.eye:
        ap.error("give at least one --fire or --eye pair of folders")
    results = [check("fire", *p) for p in args.fire] + [check("eye", *p) for p in args.eye]
    for r in results:
        print(f"\n{r['new']} vs {r['base']} ({r['kind']}, {r['pairs']} pairs)")
        print(f"  {'':8s}" + "".join(f"{k:>8s}" for k in r["base_auc"]) + f"{'failed':>8s}")
        for side in ("base", "new"):
            print(f"  {side:8s}" + "".join(f"{v:8.3f}" for v in r[f"{side}_auc"].values())
                  + f"{r[f'{side}_failed']:8d}")
        print(f"  mean error change {r['mean_error_delta_px']:+.2f} px; {r['pairs_better']} of {r['pairs']} pairs "
              f"better; worst pair {r['worst_pair']} {r['worst_pair_delta_px']:+.2f} px")
        for name, ok in r["checks"].items():
            print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    verdict = all(r["pass"] for r in results)
    print(f"\naccuracy rule: {'PASS' if verdict else 'FAIL'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"pass": verdict, "sets": results}, indent=2))
    return 0 if verdict else 1


if __name__ == "__main__":
    raise SystemExit(main())
