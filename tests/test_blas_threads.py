"""numpy's BLAS on one thread once a Registrar exists (superretina.blas_threads).

The limit is the process's and set once, so each case runs in a fresh interpreter.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from superretina.matching import ratio_match

ROOT = Path(__file__).resolve().parents[1]

# numpy's BLAS threads before and after the first Registrar, and the limit the module reports
# (OpenCV's wheel brings an OpenBLAS of its own, built for one thread: not looked at).
PROBE = """
import json
import numpy
from threadpoolctl import threadpool_info
from superretina.config import load_config
from superretina.registrar import Registrar
from superretina.blas_threads import limit_blas_threads
def blas():
    return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]})
before = blas()
Registrar(None, load_config())
print(json.dumps({"before": before, "after": blas(), "limit": limit_blas_threads()}))
"""


def probe(value: str | None) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    env.pop("SUPERRETINA_BLAS_THREADS", None)
    env.pop("OPENBLAS_NUM_THREADS", None)
    if value is not None:
        env["SUPERRETINA_BLAS_THREADS"] = value
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_first_registrar_puts_blas_on_one_thread():
    out, _ = probe(None)
    assert out["before"], "numpy's BLAS was not found by threadpoolctl"
    assert out["after"] == [1] and out["limit"] == 1


def test_zero_leaves_blas_as_it_was_and_a_count_is_applied():
    left, _ = probe("0")
    assert left["after"] == left["before"] and left["limit"] is None
    two, _ = probe("2")
    assert two["after"] == [2] and two["limit"] == 2


def test_bad_value_warns_naming_the_variable_and_uses_one_thread():
    out, err = probe("many")
    assert out["after"] == [1] and out["limit"] == 1
    assert "SUPERRETINA_BLAS_THREADS" in err and "'many'" in err


def test_matches_do_not_depend_on_the_blas_thread_count():
    """The claim behind the default: one thread gives the rows that several give."""
    rng = np.random.default_rng(3)
    base = rng.normal(size=(1200, 256)).astype(np.float32)
    q = base[:1000] + 0.3 * rng.normal(size=(1000, 256)).astype(np.float32)
    r = base[200:] + 0.3 * rng.normal(size=(1000, 256)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    with threadpool_limits(limits=1, user_api="blas"):
        one = ratio_match(q, r)
    with threadpool_limits(limits=2, user_api="blas"):
        two = ratio_match(q, r)
    assert len(one) > 100
    np.testing.assert_array_equal(one, two)
