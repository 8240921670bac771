#!/usr/bin/env bash
# Regenerate MxpiDataType_pb2.py and MxpiDumpData_pb2.py from the .proto files next to this
# script. Pinned generator: grpcio-tools 1.62.3 (bundles protoc for protobuf 4.25.x), so the
# output runs on the pinned runtime protobuf==4.25.8.
#
# Usage: python/mxlocal/proto/generate.sh [OUTPUT_DIR]   (default: python/mxlocal)
# Honours $PYTHON (default: python) to pick the interpreter that has grpc_tools.
set -euo pipefail

proto_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out_dir="${1:-$(dirname "$proto_dir")}"
python_bin="${PYTHON:-python}"

want="1.62.3"
have="$("$python_bin" -c 'import importlib.metadata as m; print(m.version("grpcio-tools"))')"
if [[ "$have" != "$want" ]]; then
    echo "generate.sh: grpcio-tools $have found, $want required (pip install grpcio-tools==$want)" >&2
    exit 1
fi

cd "$proto_dir"  # relative proto paths keep the generated file names stable
"$python_bin" -m grpc_tools.protoc --proto_path=. --python_out="$out_dir" \
    MxpiDataType.proto MxpiDumpData.proto
