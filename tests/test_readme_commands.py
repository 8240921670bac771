"""Every command of the README runs as written (issue 20, item 13).

Each line of the README's fenced ``bash`` blocks and each ``python`` block runs, in README order,
in one user folder holding the files the README names (visit2/visit1 as JPEG and DICOM, my.yaml,
pairs.csv). ``bash run.sh`` and the checkout placeholder ``/path/to/superretina/run.sh`` are this
checkout's run.sh; ``superretina`` is the console script. Both run this checkout's code from a
stand-in environment ($SUPERRETINA_VENV), so run.sh never installs anything here.

A command that cannot run on this machine or would take minutes is in ``SKIP`` with the reason;
a new README command is run without any change here, and an entry of ``SKIP`` that no longer
matches a README command fails the test (no stale skips).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from superretina.demo import make_pair

ROOT = Path(__file__).resolve().parents[1]
CHECKOUT_PLACEHOLDER = "/path/to/superretina/run.sh"

# regular expression (searched in the command) -> why it is not run by this test
SKIP = {
    r"^bash run\.sh test\b": "the test suite itself",
    r"\bfire /data/FIRE\b": "needs the real FIRE set, which cannot be downloaded here",
    r"\b(fire|compare) SET\b": "needs a FIRE-format set (SET: the real FIRE or a synth set of 2912-px pairs)",
    r"\bfire \.\./shared/data/fire_dev\b": "needs ../shared/data (the FIRE development split), which a user's folder has not "
                                        "(tests/test_fire_evaluate.py runs fire)",
    r"\bsynth\b": "renders 2912x2912 pairs from an eye model: minutes (tests/test_fire_synth.py covers synth)",
    r"\bcompare out/eye_heldout\b": "needs the synth set of the line before (minutes)",
    r"Ascend|onnx2om|--runtime ascend|\bexport model/superretina(_lowrank2?)?\.pth\b":
        "needs an Ascend machine with CANN and the MindX SDK (and the training checkpoint)",
}


def readme_blocks(language: str) -> list[str]:
    """The README's fenced blocks of ``language``, in order."""
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def readme_commands() -> list[str]:
    """Every command line of the README's bash blocks (continuation lines joined)."""
    commands = []
    for block in readme_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
    return commands


def skip_reason(command: str) -> str | None:
    return next((why for pattern, why in SKIP.items() if re.search(pattern, command)), None)


def _dicom(path: Path, bgr: np.ndarray, uid: str) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, uid, "OP"
    ds.Rows, ds.Columns = bgr.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(bgr[:, :, ::-1]).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def user(tmp_path_factory, retina_bgr):
    """(folder, environment): the README's files, and run.sh / superretina running this checkout."""
    folder = tmp_path_factory.mktemp("readme_user")
    refer = cv2.resize(retina_bgr, (512, 512), interpolation=cv2.INTER_AREA)
    query, _, _ = make_pair(refer)
    # a third visit for the series example: shifted and a little brighter
    visit3 = cv2.warpAffine(refer, np.float32([[1, 0, 9], [0, 1, -6]]), (512, 512), borderMode=cv2.BORDER_CONSTANT)
    cv2.imwrite(str(folder / "visit3.jpg"), cv2.convertScaleAbs(visit3, alpha=1.1, beta=5))
    for stem, image in (("visit2", query), ("visit1", refer)):
        cv2.imwrite(str(folder / f"{stem}.jpg"), image)
        (folder / "P001").mkdir(exist_ok=True)
        cv2.imwrite(str(folder / "P001" / f"{stem}.jpg"), image)
        _dicom(folder / f"{stem}.dcm", image, f"1.2.3.{len(stem)}.{stem[-1]}")
    (folder / "my.yaml").write_text("matching:\n  knn_thresh: 0.9\n")
    (folder / "pairs.csv").write_text("id,query,refer,patient,visit\nP001_v2,P001/visit2.jpg,P001/visit1.jpg,P001,2\n")
    # A stand-in for run.sh's .venv: its console script runs this checkout's code; the install
    # stamps are newer than pyproject.toml, so run.sh installs nothing.
    venv = tmp_path_factory.mktemp("venv")
    (venv / "bin").mkdir()
    (venv / "bin" / "python").symlink_to(sys.executable)
    script = venv / "bin" / "superretina"
    script.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT / "python"}" exec "{sys.executable}" -m superretina.cli "$@"\n')
    script.chmod(0o755)
    for stamp in (".installed", ".installed_train_dev_cluster_"):
        (venv / stamp).touch()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MX_SDK_HOME", "SUPERRETINA_RUNTIME",
                                                              "SUPERRETINA_PROG")}
    env.update(SUPERRETINA_VENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return folder, env


def test_skip_list_names_only_readme_commands():
    commands = readme_commands()
    assert len(commands) >= 10, commands
    for pattern in SKIP:
        assert any(re.search(pattern, c) for c in commands), f"SKIP entry {pattern!r} matches no README command"


def test_every_readme_command_and_python_block_runs(user):
    folder, env = user
    ran, failures = [], []
    for command in readme_commands():
        if skip_reason(command):
            continue
        line = command.replace(CHECKOUT_PLACEHOLDER, str(ROOT / "run.sh"))
        line = re.sub(r"^bash run\.sh\b", f"bash {ROOT / 'run.sh'}", line)
        proc = subprocess.run(["bash", "-c", line], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        ran.append(command)
        if proc.returncode != 0 or "Traceback" in proc.stderr:
            failures.append(f"{command}: rc {proc.returncode}\n{proc.stdout[-800:]}\n{proc.stderr[-1500:]}")
    for i, code in enumerate(readme_blocks("python")):
        script = folder / f"readme_example_{i}.py"
        script.write_text(code)
        proc = subprocess.run([sys.executable, script.name], cwd=folder, capture_output=True, text=True, timeout=300,
                              env={**env, "PYTHONPATH": str(ROOT / "python")})
        ran.append(f"python block {i}")
        if proc.returncode != 0:
            failures.append(f"python block {i}: rc {proc.returncode}\n{proc.stderr[-1500:]}")
    assert not failures, "\n\n".join(failures)
    # What the commands were meant to leave behind.
    assert (folder / "superretina_demo" / "result.json").is_file()                    # bash run.sh: the demo
    assert (folder / "results" / "eye7" / "result.json").is_file()
    assert (folder / "visit2_to_visit1" / "transform_skimage.json").is_file()
    assert (folder / "field.mha").is_file() and (folder / "cohort" / "index.html").is_file()
    assert (folder / "out" / "visit2" / "result.json").is_file()                       # the Session example
    assert (folder / "eye1" / "series.json").is_file() and (folder / "eye1_python" / "flicker.html").is_file()
    assert len(ran) >= 10, ran
