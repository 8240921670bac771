#!/usr/bin/env bash
# Convert the static SuperRetina ONNX export to an Ascend .om model with ATC (CANN toolkit).
#
#   bash model/onnx2om.sh [ONNX] [OUT_PREFIX] [SOC_VERSION]
#   bash model/onnx2om.sh model/superretina_static.onnx model/superretina Ascend310B1
#
# ONNX defaults to model/superretina_static.onnx ((2,1,768,768), opset 11: make it with
#   python -m superretina.model.export model/superretina_lowrank.pth model/superretina_static.onnx --static;
#   the default model; model/superretina.pth is the published head, --model bf16 on the local runtime).
# SOC_VERSION is the chip: Ascend310, Ascend310B1, Ascend310P3, Ascend910B... (`npu-smi info` tells).
# Writes OUT_PREFIX.om, which pipeline/superretina_ascend.pipeline loads.
set -euo pipefail
onnx=${1:-model/superretina_static.onnx}
out=${2:-model/superretina}
soc=${3:-Ascend310}
if ! command -v atc >/dev/null 2>&1; then
  echo "error: atc not found. Source the CANN toolkit first: . /usr/local/Ascend/ascend-toolkit/set_env.sh" >&2
  exit 2
fi
if [ ! -f "$onnx" ]; then
  echo "error: $onnx not found (export it with --static, see the header of this script)" >&2
  exit 2
fi
atc --framework=5 --model="$onnx" --output="$out" --soc_version="$soc" \
    --input_shape="input:2,1,768,768" --output_type=FP32
echo "wrote ${out}.om"
