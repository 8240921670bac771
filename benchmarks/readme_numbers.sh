#!/usr/bin/env bash
# Re-creates every number in the README's result tables and in model/README.md
# (about 40 minutes on a 2-core machine; needs ../shared/data for the held-out photographs).
set -euo pipefail
cd "$(dirname "$0")/.."
# README results: the transform models and SIFT on the held-out eye-model sets (seed 0 and 1).
for seed in 0 1; do
    bash run.sh synth "out/eye_heldout_s$seed" --from ../shared/data/fundus --held-out --pairs-per-image 3 \
        --size 2912 --seed "$seed" --overwrite
    bash run.sh compare "out/eye_heldout_s$seed" --out "out/eye_heldout_compare_s$seed" --restart
done
.venv/bin/python benchmarks/real_pair_models.py
# docs/evidence.md: the earlier studies, on the homography-geometry sets.
bash run.sh synth out/heldout_synth --from ../shared/data/fundus --held-out --pairs-per-image 3 \
    --size 2912 --seed 0 --geometry homography --overwrite
bash run.sh synth out/heldout_synth_s1 --from ../shared/data/fundus --held-out --pairs-per-image 3 \
    --size 2912 --seed 1 --geometry homography --overwrite
bash run.sh compare out/heldout_synth --out out/heldout_compare --restart
# Both shipped models on both sets (mAUC, |H - H_fp32|; fp32 is the base of the acceptance rule),
# with the default post-processing, without subpixel keypoints, and with the reference's
# estimator alone (LMEDS, whole-pixel keypoints): the "Homography refinement" table.
printf 'keypoints:\n  subpixel: false\n' > out/refine_only.yaml
printf 'keypoints:\n  subpixel: false\nhomography:\n  refine_scale: 0.0\n' > out/lmeds_only.yaml
for set in heldout_synth heldout_synth_s1; do
    for post in default refine_only lmeds_only; do
        config=(); [ "$post" = default ] || config=(--config "out/$post.yaml")
        .venv/bin/python benchmarks/accuracy_variants.py --variant fp32=model/superretina.onnx \
            --variant bf16=model/superretina_bf16.xml --set "out/$set" --out "out/accuracy_${post}_$set" \
            --json "out/accuracy_${post}_$set.json" "${config[@]}"
    done
    .venv/bin/python benchmarks/compare_runs.py "out/$set" "out/accuracy_lmeds_only_$set/fp32" "out/accuracy_default_$set/fp32"
done
# Speed: both shipped models against PyTorch eager on the same weights, per stage.
bash run.sh bench --runs 5 --model model/superretina_bf16.xml --model model/superretina.onnx --json out/bench.json
.venv/bin/python benchmarks/bench_postprocess.py --runs 9
# Batch throughput with 1 and 2 pairs in flight, per model.
.venv/bin/python benchmarks/throughput.py --pairs 6 --rounds 2 --model model/superretina_bf16.xml
.venv/bin/python benchmarks/throughput.py --pairs 6 --rounds 2 --model model/superretina.onnx
# The real example pair: share of matches that agree with SIFT's homography.
.venv/bin/python benchmarks/real_pair.py
