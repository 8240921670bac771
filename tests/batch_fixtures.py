"""A small pair list from ../shared/data for the batch tests: real photographs resized to ~600 px,
plus a missing file and a corrupt file, and a fast configuration (384 px model input)."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2

from superretina.image_io import read_image

# 448 px, not 384: at 384 the same-eye pair example2 -> example1 (a third of its matches right,
# docs/evidence.md) is a coin flip for the robust estimator, whichever model (0.5.0: lowrank fails it,
# the published head passes; at 448 and 512 both register it)
FAST_CONFIG = "model:\n  image_width: 448\n  image_height: 448\nkeypoints:\n  max_keypoints: 500\n"
# The same eye, two exposures (example1/2, both orders), an unrelated eye against it, two bad rows.
ROWS = [("p1", "example1.jpg", "example2.jpg"), ("p2", "example2.jpg", "example1.jpg"),
        ("missing", "nothere.jpg", "example1.jpg"), ("corrupt", "bad.jpg", "example1.jpg"),
        ("unrelated", "chase.png", "example1.jpg")]


def make_inputs(folder: Path, shared_data: Path) -> None:
    """Write the resized photographs, the corrupt file and fast.yaml into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("example1", "example2"):
        im = read_image(shared_data / "pairs" / f"{name}.jpg")
        cv2.imwrite(str(folder / f"{name}.jpg"), cv2.resize(im, (570, 600), interpolation=cv2.INTER_AREA))
    im = read_image(shared_data / "fundus" / "chase_01L.png")
    cv2.imwrite(str(folder / "chase.png"), cv2.resize(im, (600, 576), interpolation=cv2.INTER_AREA))
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated JPEG")
    # 300 keypoints on ~600 px photographs leave ~20 matches supporting the transform, below the
    # evidence the confidence is calibrated to accept at the default budget (docs/confidence.md):
    # these tests are about the batch, not the decision, so only implausible transforms fail.
    (folder / "fast.yaml").write_text(FAST_CONFIG + "confidence:\n  min_confidence: 0.0\n")


def write_pairs(path: Path, rows=ROWS, extra: str | None = "patient") -> Path:
    """PAIRS.csv with id, query, refer (relative paths) and one carried-through column."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "query", "refer"] + ([extra] if extra else []))
        for i, (pid, q, r) in enumerate(rows):
            w.writerow([pid, q, r] + ([f"P{i % 2}"] if extra else []))
    return path


def read_summary(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
