#!/usr/bin/env bash
# Issue 19's accuracy rule for a candidate model against the current default, in one run:
# the 13 real FIRE development pairs and the two held-out eye-model sets (README commands),
# each registered by both pipelines taking turns set by set, then the demo on the candidate's
# pipeline, then benchmarks/accuracy_rule.py's verdict.
#   bash benchmarks/fast_model_eval.sh [OUT] [EYE_SET_SEED0] [EYE_SET_SEED1]
# The candidate is $CANDIDATE (default pipeline/superretina_fast.pipeline), the baseline
# $BASELINE (default pipeline/superretina.pipeline); the rows are named default and fast.
# Sets: ../shared/data/fire_dev, and eye-model sets made by
#   bash run.sh synth out/eye_heldout_s0 --from ../shared/data/fundus --held-out --pairs-per-image 3 --size 2912 --seed 0
#   (and --seed 1 into out/eye_heldout_s1).  Reruns resume (fire's pairs.csv).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-out/fast_eval}"
EYE0="${2:-out/eye_heldout_s0}"
EYE1="${3:-out/eye_heldout_s1}"
FIRE_DEV="${FIRE_DEV:-$ROOT/../shared/data/fire_dev}"
CANDIDATE="${CANDIDATE:-pipeline/superretina_fast.pipeline}"
BASELINE="${BASELINE:-pipeline/superretina.pipeline}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
export PYTHONPATH="$ROOT/python${PYTHONPATH:+:$PYTHONPATH}"
cli() { "$PY" -m superretina.cli "$@"; }

for set in fire_dev eye_s0 eye_s1; do
  case $set in fire_dev) dir=$FIRE_DEV ;; eye_s0) dir=$EYE0 ;; eye_s1) dir=$EYE1 ;; esac
  for model in default fast; do
    case $model in default) pipe=$BASELINE ;; fast) pipe=$CANDIDATE ;; esac
    echo "== $set $model ($pipe)"
    cli fire "$dir" --pipeline "$ROOT/$pipe" --out "$OUT/${set}_$model" --no-progress
  done
done
echo "== demo ($CANDIDATE)"
cli demo --pipeline "$ROOT/$CANDIDATE" --out "$OUT/demo_fast" | tail -3
"$PY" "$ROOT/benchmarks/accuracy_rule.py" --json "$OUT/accuracy_rule.json" \
  --fire "$OUT/fire_dev_default" "$OUT/fire_dev_fast" \
  --eye "$OUT/eye_s0_default" "$OUT/eye_s0_fast" --eye "$OUT/eye_s1_default" "$OUT/eye_s1_fast"
