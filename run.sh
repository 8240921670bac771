#!/usr/bin/env bash
# The one entry point. First use creates .venv and installs the pinned dependencies.
#   bash run.sh QUERY REFER [--out DIR]   register a pair          bash run.sh        self-checking demo
#   bash run.sh fire|compare|synth ...    FIRE-protocol evaluation  bash run.sh test   the test suite
#   bash run.sh train|export|bench ...    training, pth2onnx, speed benchmark (install PyTorch on first use)
#   bash run.sh --help                    everything else
# Paths on the command line are the caller's: this script never changes folder except for the tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${SUPERRETINA_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

extras=""
case "${1:-}" in
  train|export|bench) extras="[train,dev]" ;;   # PyTorch and pytest only where needed
  test) extras="[train,dev,cluster]" ;;          # and Ray, for the tests of batch --engine ray
esac

pip_install() {  # quiet pip; drops its notes about find-links folders this machine's pip config names
  "$VENV/bin/python" -m pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; } >&2
}

if [ ! -x "$VENV/bin/python" ]; then
  echo "setting up $VENV (first run)..." >&2
  "$PYTHON" -m venv "$VENV"
  pip_install --upgrade pip
fi
stamp="$VENV/.installed${extras//[\[\],]/_}"
full="$VENV/.installed_train_dev_cluster_"   # the test set-up's install holds what every command needs
if [ -f "$full" ] && [ ! "$ROOT/pyproject.toml" -nt "$full" ]; then
  stamp="$full"
fi
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "installing dependencies${extras:+ $extras}..." >&2
  if ! pip_install -e "$ROOT$extras"; then
    echo "error: installing the dependencies failed (see pip's message above)" >&2
    exit 1
  fi
  touch "$stamp"
fi

if [ "${1:-}" = "test" ]; then
  shift
  cd "$ROOT"
  set +e
  "$VENV/bin/python" -m pytest -q "$@"
  rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
  fi
  exit "$rc"
fi
if [ "${1:-}" = "bench" ]; then  # the benchmark harness lives in the checkout, not in the package
  shift
  exec "$VENV/bin/python" "$ROOT/benchmarks/bench.py" "$@"
fi
# The console script, not `python -m`: a folder named like the package in the caller's
# working directory must not shadow the installed one.
export SUPERRETINA_PROG="bash run.sh"   # help and usage name the command as typed here
if [ "$#" -eq 0 ]; then
  set -- demo                                  # `bash run.sh` alone: the self-checking demo
fi
exec "$VENV/bin/superretina" "$@"
