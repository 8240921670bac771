"""Issue 14.4 / 14.7: every setting is type- and range-checked when the file is loaded.

Each bad value ends in one ConfigError line naming the file, the key, the value and what is
allowed (the CLI prints it and exits 2); the fuzz test throws random types and values at every
key and random byte damage at the whole file.
"""
from __future__ import annotations

import collections
import random

import numpy as np
import pytest
import yaml

from superretina.config import DEFAULT_CONFIG, RULES, ConfigError, check_value, load_config
from superretina.homography import estimate_homography
from superretina.keypoints import detect
from tests.model_fixtures import assert_one_line_error, run_cli

# The values (and the model sizes the network cannot take): key, value, fragment of "allowed".
CASES = {
    "nms_thresh-negative": ("keypoints", "nms_thresh", -1, "> 0"),
    "reproj-negative-ransac": ("homography", "reproj_threshold", -5, "> 0"),
    "nms_size-negative": ("keypoints", "nms_size", -1, ">= 0"),
    "nms_size-huge": ("keypoints", "nms_size", 100000, "<= 64"),
    "min_matches-negative": ("homography", "min_matches", -1, ">= 4"),
    "width-16": ("model", "image_width", 16, ">= 32"),
    "width-not-multiple": ("model", "image_width", 100, "multiple of 16"),
    "height-huge": ("model", "image_height", 16384, "<= 2048"),
    "tiles-zero": ("outputs", "checkerboard_tiles", 0, ">= 1"),
    "knn-nan": ("matching", "knn_thresh", float("nan"), "> 0"),
    "max_pixels-tiny": ("input", "max_pixels", 10, ">= 1000000"),
}


def _write(tmp_path, name: str, data) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_out_of_range_setting_is_one_line_naming_key_value_and_range(case, tmp_path):
    section, key, value, allowed = CASES[case]
    data = {section: {key: value}}
    if key == "reproj_threshold":
        data[section]["method"] = "RANSAC"
    path = _write(tmp_path, case, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {section}.{key} must be ") and "\n" not in message
    assert f"got {value!r}" in message and allowed in message, message


def test_cli_exits_2_with_the_settings_line(tmp_path):
    # Settings are checked before the images are read or the model is loaded: no model needed.
    path = _write(tmp_path, "bad", {"keypoints": {"nms_thresh": -1}})
    proc = run_cli("no_such_query.png", "no_such_refer.png", "--out", tmp_path / "out", "--config", path)
    assert_one_line_error(proc, f"{path}: keypoints.nms_thresh must be", "got -1")
    assert not (tmp_path / "out").exists()


def test_non_utf8_config_is_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("keypoints:\n  nms_size: 10  # r\xe9glage\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text"):
        load_config(path)
    proc = run_cli("q.png", "r.png", "--out", tmp_path / "out", "--config", path)
    assert_one_line_error(proc, "latin1.yaml: not UTF-8 text")


def test_every_default_key_has_a_rule_and_passes_it():
    cfg = load_config()
    leaves = {}

    def walk(node, prefix=""):
        for k, v in node.items():
            walk(v, f"{prefix}{k}.") if isinstance(v, dict) else leaves.setdefault(f"{prefix}{k}", v)

    walk(cfg)
    assert set(leaves) == set(RULES)
    for key, value in leaves.items():
        assert check_value(RULES[key], value, "default", key) == value


# -- fuzz ------------------------------------------------------------------------------------
def _random_value(rng: random.Random, rule):
    kind = rng.randrange(12)
    if kind == 0:
        return rng.choice([True, False])
    if kind == 1:
        return rng.choice([None, [], {}, [1, 2], {"a": 1}, "", "ten", "LMEDS", "model", "none", "RANSAC"])
    if kind == 2:
        return rng.choice([float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 10 ** 30, -(10 ** 30)])
    if kind in (3, 4, 5) and rule.kind in ("int", "float"):  # near and beyond the range ends
        lo, hi = rule.lo, rule.hi
        value = rng.choice([lo, hi, lo - 1, hi + 1, (lo + hi) / 2, lo + 1, hi - 1, -lo, 2 * hi])
        return int(value) if rule.kind == "int" and rng.random() < 0.7 else float(value)
    if kind in (3, 4, 5) and rule.kind == "choice":
        return rng.choice(list(rule.choices) + [c.lower() for c in rule.choices] + ["MAGSAC", "Full"])
    if kind in (6, 7):
        return rng.randint(-100, 5000)
    if kind in (8, 9):
        return rng.uniform(-2, 2)
    return rng.choice([0, 1, -1, 0.5, 16, 32, 768, 770, 4, 3])


def _exercise(cfg: dict) -> None:
    """Run the steps the checked keys feed, on a small map and a few matches (must not raise)."""
    k, h = cfg["keypoints"], cfg["homography"]
    det = np.random.default_rng(0).random((96, 96)).astype(np.float32)
    detect(det, k["nms_size"], k["nms_thresh"], min(k["border"], 40))
    rng = np.random.default_rng(1)
    q = rng.random((40, 2)) * 500
    r = q + rng.normal(0, 1, q.shape)
    thresh = None if h["method"].upper() == "LMEDS" else h["reproj_threshold"]
    estimate_homography(q, r, h["method"], thresh, h["min_matches"], refine_scale=h["refine_scale"])


def test_fuzz_settings_loader(tmp_path):
    """Random types and values for every key, single and several at once: a checked config or one line."""
    rng = random.Random(1414)
    keys = sorted(RULES)
    outcomes = collections.Counter()
    for i in range(600):
        chosen = rng.sample(keys, 1 if i % 3 else rng.randint(2, 5))
        data = {}
        for key in chosen:
            *section, leaf = key.split(".")
            node = data
            for s in section:
                node = node.setdefault(s, {})
            node[leaf] = _random_value(rng, RULES[key])
        path = tmp_path / "fuzz.yaml"
        path.write_text(yaml.safe_dump(data))
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            message = str(exc)
            assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 400, message
            outcomes["one-line error"] += 1
            continue
        for key in keys:  # accepted: every value is within its rule
            section, _, leaf = key.rpartition(".")
            value = cfg[section][leaf] if section else cfg[leaf]
            check_value(RULES[key], value, "fuzz", key)
        _exercise(cfg)
        outcomes["accepted and ran"] += 1
    print(f"\nsettings fuzz (seed 1414): 600 configs, {dict(outcomes)}")
    assert outcomes["accepted and ran"] > 30 and outcomes["one-line error"] > 300


def test_fuzz_damaged_config_files(tmp_path):
    """Byte damage of configs/default.yaml (flips, cuts, insertions): a config or one line, never a traceback."""
    rng = random.Random(7)
    original = DEFAULT_CONFIG.read_bytes()
    junk = [b"\xff", b"\x00", b":", b"-", b"[", b"{", b"*a", b"&a", b"!!python/object:os.system", b"\n  ", b"'", b"1e9"]
    outcomes = collections.Counter()
    for _ in range(400):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            op = rng.randrange(3)
            if op == 0:
                data[pos] = rng.randrange(256)
            elif op == 1:
                del data[pos:pos + rng.randint(1, 40)]
            else:
                data[pos:pos] = rng.choice(junk)
        path = tmp_path / "damaged.yaml"
        path.write_bytes(bytes(data))
        try:
            load_config(path)
            outcomes["accepted"] += 1
        except ConfigError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(f"{path}: "), str(exc)
            outcomes["one-line error"] += 1
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError):
        load_config(deep)
    print(f"\ndamaged-config fuzz (seed 7): 400 files, {dict(outcomes)}")
