#!/usr/bin/env bash
# Re-creates every number in the README's result tables and in model/README.md
# (about 25 minutes on a 2-core machine; needs ../shared/data for the held-out photographs).
set -euo pipefail
cd "$(dirname "$0")/.."
# Accuracy: SuperRetina (default model) vs SIFT on a synthetic FIRE-format set of held-out images.
bash run.sh synth out/heldout_synth --from ../shared/data/fundus --held-out --pairs-per-image 3 \
    --size 2912 --seed 0 --overwrite
bash run.sh compare out/heldout_synth --out out/heldout_compare --restart
# Accuracy of the shipped variants against the default (mAUC, |H - H_fp32|).
.venv/bin/python benchmarks/accuracy_variants.py --variant fp32=model/superretina.onnx \
    --variant bf16=model/superretina_bf16.xml --set out/heldout_synth --out out/accuracy_variants \
    --json out/accuracy_variants.json
# Speed: both shipped models against PyTorch eager on the same weights, per stage.
bash run.sh bench --runs 5 --model model/superretina.onnx --model model/superretina_bf16.xml --json out/bench.json
.venv/bin/python benchmarks/bench_postprocess.py --runs 9
# Batch throughput with 1 and 2 pairs in flight, per model.
.venv/bin/python benchmarks/throughput.py --pairs 6 --rounds 2
.venv/bin/python benchmarks/throughput.py --pairs 6 --rounds 2 --model model/superretina_bf16.xml
# The real example pair: share of matches that agree with SIFT's homography.
.venv/bin/python benchmarks/real_pair.py
