"""Issue 20.2 and 20.4: only regular files are read, and their size is checked before reading.

A FIFO as a query, reference, config or pair list blocked forever (in ``batch`` Ctrl-C did not
stop it); ``--config /dev/zero`` and ``batch /dev/zero`` grew to several GB before a MemoryError;
a 3 GB sparse config was refused only after 3.2 GB RSS (700 MiB here, to spare the shared
machine). Each is now one line and exit 2 within the subprocess timeout (a hang fails the
test), and a sparse file is refused from its size: the run's peak memory stays small.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from superretina.batch.pairs import BatchInputError, read_pairs
from superretina.config import ConfigError, load_config
from superretina.image_io import ImageReadError, read_image
from tests.mxlocal_support import call_with_timeout
from tests.model_fixtures import PROJECT_ROOT, assert_one_line_error, cli_env, run_cli


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.fixture
def image(tmp_path):
    import cv2
    import numpy as np

    path = tmp_path / "eye.png"
    cv2.imwrite(str(path), np.full((64, 64, 3), 128, np.uint8))
    return path


def test_fifo_is_refused_by_every_reader(fifo):
    for fn, err in ((load_config, ConfigError), (read_pairs, BatchInputError), (read_image, ImageReadError)):
        with pytest.raises(err, match=r"pipe: is a FIFO \(named pipe\), expected a regular file"):
            call_with_timeout(fn, fifo, timeout=20)


def test_devices_are_refused_unread():
    for fn, err in ((load_config, ConfigError), (read_pairs, BatchInputError), (read_image, ImageReadError)):
        with pytest.raises(err, match="/dev/zero: is a character device"):
            call_with_timeout(fn, "/dev/zero", timeout=20)


def test_cli_fifo_query_refer_config_pairs_one_line(fifo, image, tmp_path):
    out = tmp_path / "new" / "pair"
    proc = run_cli(fifo, image, "--out", out, timeout=120)
    assert_one_line_error(proc, str(fifo), "FIFO")
    assert not (tmp_path / "new").exists()           # issue 20.9: a refused run leaves no --out behind
    assert_one_line_error(run_cli(image, fifo, "--out", out, timeout=120), str(fifo), "FIFO")
    assert_one_line_error(run_cli(image, image, "--config", fifo, "--out", out, timeout=60), str(fifo), "FIFO")
    assert_one_line_error(run_cli("batch", fifo, "--out", out, timeout=60), str(fifo), "FIFO")
    assert_one_line_error(run_cli(image, image, "--pipeline", fifo, "--out", out, timeout=60), str(fifo), "FIFO")
    assert not (tmp_path / "new").exists()


def _peak_rss_mib(*args) -> tuple[subprocess.CompletedProcess, float]:
    """Run the CLI in a child and return it with the child's peak resident memory (MiB)."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over execve, so a child of a large pytest
    # process would report the parent's peak.
    code = ("import runpy, sys; sys.argv = ['superretina'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('superretina.cli', run_name='__main__')\n"
            "finally:\n    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "    print('PEAK', hwm.split()[1], file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=PROJECT_ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    peak = int(lines.pop().split()[1]) / 1024
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, "\n".join(lines) + "\n"), peak


@pytest.mark.parametrize("kind", ["config", "pairs"])
def test_huge_sparse_files_are_refused_from_their_size(tmp_path, image, kind):
    big = tmp_path / ("big.yaml" if kind == "config" else "big.csv")
    with open(big, "wb") as f:
        f.truncate(700 << 20)                          # 700 MiB of holes: no disk used
    args = ((image, image, "--config", big, "--out", tmp_path / "o") if kind == "config"
            else ("batch", big, "--out", tmp_path / "o"))
    proc, peak = _peak_rss_mib(*args)
    print(f"peak RSS {peak:.0f} MiB")
    assert peak < 500, f"peak RSS {peak:.0f} MiB: the file was read before its size was checked"
    assert_one_line_error(proc, str(big), "700.0 MiB", "at most")
    assert not (tmp_path / "o").exists()


def test_cli_dev_zero_config_and_pairs(image, tmp_path):
    assert_one_line_error(run_cli(image, image, "--config", "/dev/zero", "--out", tmp_path / "o", timeout=60),
                          "/dev/zero", "character device")
    assert_one_line_error(run_cli("batch", "/dev/zero", "--out", tmp_path / "o", timeout=60),
                          "/dev/zero", "character device")
    assert not (tmp_path / "o").exists()


def test_file_growing_while_read_is_cut(tmp_path):
    """A regular file whose size is unknown up front (procfs reports 0) is still read to the limit only."""
    from superretina.files import FileTooLarge, read_regular

    path = tmp_path / "small.txt"
    path.write_bytes(b"x" * 100)
    assert read_regular(path, 100)[0] == b"x" * 100
    with pytest.raises(FileTooLarge):
        read_regular(path, 99)
    data, st = read_regular("/proc/self/status", 1 << 20)   # st_size 0, content read all the same
    assert st.st_size == 0 and b"Name:" in data
