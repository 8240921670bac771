"""Registration parameters: configs/default.yaml, overlaid by the pipeline's own settings (a
``NAME.yaml`` beside ``NAME.pipeline``: what its model needs, e.g. the int8 network's keypoint
threshold) and then by a user's YAML file.

Every setting is checked when the file is loaded, its type and its range, so that a bad value
is one error line naming the file, the key, the value and what is allowed, e.g.
``my.yaml: keypoints.nms_size must be an integer from 0 to 64, got -3`` (the CLI prints it and
exits 2), never a traceback or a silently wrong result later. The allowed ranges are in
:data:`RULES`; ``configs/default.yaml`` documents what each key does.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from .resources import DEFAULT_CONFIG, DEFAULT_PIPELINE  # noqa: F401  (DEFAULT_PIPELINE: re-exported)

MAX_CONFIG_BYTES = 1 << 20  # a parameters file is a few hundred bytes; refuse anything huge


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    """Type and range of one setting.

    ``kind`` is ``bool``, ``int``, ``float`` or ``choice``; numbers lie in ``[lo, hi]`` (an end
    is open when ``lo_open``/``hi_open``), integers are a multiple of ``multiple``; a choice is
    one of ``choices`` (compared case-insensitively).
    """

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    multiple: int = 1
    choices: tuple = ()

    def allowed(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        what = {"int": "an integer", "float": "a number"}[self.kind]
        if self.multiple > 1:
            what = f"a positive multiple of {self.multiple}"
        lo = f"> {self.lo}" if self.lo_open else f">= {self.lo}"
        hi = f"< {self.hi}" if self.hi_open else f"<= {self.hi}"
        return f"{what} {lo} and {hi}"


# Network input side: multiples of 16 (four 2x poolings, then the descriptor head's own stride),
# at least 32 (the descriptor map is side/8 - 2 cells), at most 2048 (~3.5 GB of activations
# per image at the half-width network; 768 is the trained size).
_SIDE = Rule("int", 32, 2048, multiple=16)
RULES: dict[str, Rule] = {
    "model.image_width": _SIDE,
    "model.image_height": _SIDE,
    "keypoints.nms_size": Rule("int", 0, 64),            # max-pool window 2*r+1; 100000 allocated 37 GiB
    "keypoints.nms_thresh": Rule("float", 0, 1, lo_open=True, hi_open=True),  # detector scores are in (0, 1)
    "keypoints.border": Rule("int", 0, 64),
    "keypoints.max_keypoints": Rule("int", 0, 100_000),  # 0 = all
    "keypoints.subpixel": Rule("bool"),
    "keypoints.fov_margin": Rule("int", -1, 64),         # model pixels; -1 = no field-of-view mask
    "matching.knn_thresh": Rule("float", 0, 1, lo_open=True),
    # Enhancement and descriptor variants (A-category study; defaults = the reference's).
    "enhance.clahe_clip": Rule("float", 0, 40, lo_open=True),   # OpenCV: <= 0 turns the clip off
    "enhance.clahe_tiles": Rule("int", 1, 64),
    "enhance.gamma": Rule("float", 0.2, 5),
    "enhance.flatten": Rule("float", 0, 0.5),           # sigma / shorter side; 0 = off
    "enhance.channel": Rule("choice", choices=("green", "luminance")),
    "descriptors.interpolation": Rule("choice", choices=("bilinear", "bicubic")),
    "descriptors.pool": Rule("float", 0, 16),           # model pixels; 0 = at the keypoint
    "descriptors.normalise": Rule("choice", choices=("l2", "root", "centred")),
    "homography.method": Rule("choice", choices=("LMEDS", "RANSAC", "USAC_MAGSAC")),
    "homography.reproj_threshold": Rule("float", 0, 1000, lo_open=True),  # pixels; <= 0 gave 0 inliers
    "homography.fallback": Rule("choice", choices=("none", "LMEDS", "RANSAC", "USAC_MAGSAC")),
    "homography.min_matches": Rule("int", 4, 100_000),   # a homography needs 4 point pairs
    "homography.refine_scale": Rule("float", 0, 1000),   # 0 = off
    "transform.model": Rule("choice", choices=("homography", "quadratic", "auto")),
    "transform.min_matches": Rule("int", 12, 100_000),   # 12 parameters: fewer matches cannot fit it
    "transform.auto_gain": Rule("float", 0, 1, hi_open=True),
    "transform.extrapolation": Rule("choice", choices=("hull", "overlap", "held_out", "none")),
    "guided.iterations": Rule("int", 0, 10),             # 0 = off; each pass is ~10-30 ms
    "guided.radius": Rule("float", 0, 64, lo_open=True),  # model pixels; beyond ~64 it is global matching
    "guided.ratio": Rule("float", 0, 1, lo_open=True),
    "guided.min_gain": Rule("float", 0, 10),
    "guided.max_inliers": Rule("int", 0, 100_000),       # 0 = always
    "patch_refine.half": Rule("int", 0, 32),             # 0 = off
    "patch_refine.search": Rule("int", 1, 16),
    "patch_refine.min_ncc": Rule("float", -1, 1),
    "patch_refine.min_curvature": Rule("float", 0, 4),
    "patch_refine.max_inliers": Rule("int", 0, 100_000),  # 0 = always
    "confidence.min_confidence": Rule("float", 0, 1),   # 0 = only implausible transforms fail
    "use_matching_trick": Rule("bool"),
    "matching_trick_skip_inliers": Rule("int", 0, 100_000),  # 0 = never skip
    "matching_trick_warp": Rule("choice", choices=("model", "full")),
    "matching_trick_crop_margin": Rule("int", -1, 512),  # model pixels of context; -1 = infer the whole frame
    "outputs.match_result": Rule("bool"),
    "outputs.merged": Rule("bool"),
    "outputs.merged_max_side": Rule("int", 0, 65_000),  # px; 0 = full size; JPEG's side limit above
    "outputs.checkerboard": Rule("bool"),
    "outputs.checkerboard_max_side": Rule("int", 0, 65_000),  # as merged_max_side
    "outputs.checkerboard_tiles": Rule("int", 1, 64),
    # Series (superretina.series): pair selection and the joint refinement.
    "series.all_pairs_max": Rule("int", 2, 1000),        # every pair up to this many images
    "series.time_neighbours": Rule("int", 0, 20),
    "series.similar_pairs": Rule("int", 0, 20),
    "series.min_degree": Rule("int", 1, 20),
    "series.fill_rounds": Rule("int", 0, 20),
    "series.max_matches_per_pair": Rule("int", 12, 100_000),  # 12: a quadratic's parameters
    "series.match_tolerance": Rule("float", 0, 1000, lo_open=True),  # model pixels
    "series.loss_scale": Rule("float", 0, 1000, lo_open=True),  # model pixels; 0 would divide by zero
    # Images above this many pixels are refused from their header, before decoding (image_io);
    # OpenCV itself stops at 2^30.
    "input.max_pixels": Rule("int", 1_000_000, 1 << 30),
    "input.stream_decode": Rule("bool"),
}


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(rule: Rule, value, where: str, name: str):
    """``value`` as the setting's type if ``rule`` allows it; else :class:`ConfigError`."""
    def bad():
        return ConfigError(f"{where}: {name} must be {rule.allowed()}, got {_short(value)}")

    if rule.kind == "bool":
        if not isinstance(value, bool):
            raise bad()
        return value
    if rule.kind == "choice":
        if not isinstance(value, str) or value.upper() not in (c.upper() for c in rule.choices):
            raise bad()
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad()
    if rule.kind == "int" and not isinstance(value, int):
        raise bad()
    if not math.isfinite(value):
        raise bad()
    if (value < rule.lo or value > rule.hi or (rule.lo_open and value == rule.lo)
            or (rule.hi_open and value == rule.hi) or (rule.multiple > 1 and value % rule.multiple)):
        raise bad()
    return float(value) if rule.kind == "float" else value


def _merge(base: dict, over: dict, where: str, prefix: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"{where}: unknown key {_short(name)} (known: {', '.join(sorted(base))})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {name} must be a mapping of {', '.join(sorted(base[key]))},"
                                  f" got {_short(value)}")
            out[key] = _merge(base[key], value, where, name + ".")
        else:
            out[key] = value
    return out


def _check_all(cfg: dict, where: str, prefix: str = "") -> None:
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if name in RULES:
            cfg[key] = check_value(RULES[name], value, where, name)
        elif isinstance(value, dict):
            _check_all(value, where, name + ".")
        else:
            raise ConfigError(f"{where}: {name} has no rule in superretina.config.RULES")  # a programming error


def read_settings(path: Path) -> dict:
    """The mapping of a parameters YAML file as written (its keys and values are checked when
    :func:`load_config` lays it over the defaults); an unreadable file or one that is not a YAML
    mapping is one ConfigError line naming it."""
    from .files import InputFileError, read_regular

    try:  # a regular file, its size checked before reading (a FIFO or /dev/zero is refused unread)
        raw, _ = read_regular(path, MAX_CONFIG_BYTES, "config")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    except InputFileError as exc:
        raise ConfigError(f"{path}: {exc} (a parameters file is a small YAML file)") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected a YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a parameters file (YAML nested too deeply)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data


def pipeline_settings(pipeline: str | Path | None) -> Path | None:
    """The settings file that goes with a pipeline's model, ``NAME.yaml`` beside ``NAME.pipeline``
    (None when there is none, as for the default pipeline).

    A model can need other registration settings than the defaults (the int8 network detects
    more faint maxima: ``keypoints.nms_thresh`` 0.02 keeps the confidence model's calibration,
    docs/int8-model.md); with the file beside its pipeline, ``--model``, ``--pipeline`` and a
    pipeline copied with its settings all run the model as it was measured."""
    if pipeline is None:
        return None
    path = Path(pipeline).with_suffix(".yaml")
    return path if path.is_file() else None


def load_config(path: str | Path | Mapping | None = None, model_settings: str | Path | None = None) -> dict:
    """The default configuration, with ``model_settings``'s values (a pipeline's own settings
    file, :func:`pipeline_settings`) and then ``path``'s (a YAML file, or a mapping of the same
    shape, e.g. ``{"matching": {"knn_thresh": 0.8}}``) laid over it, each layer checked.

    A mapping that is a whole configuration (``load_config()``'s result) sets every key, so the
    model's settings then take no effect: give only what differs."""
    cfg = read_settings(DEFAULT_CONFIG)
    where = str(DEFAULT_CONFIG)
    layers = [] if model_settings is None else [(str(model_settings), read_settings(Path(model_settings)))]
    if isinstance(path, Mapping):
        layers.append(("config", dict(path)))
    elif path is not None:
        layers.append((str(path), read_settings(Path(path))))
    for where, values in layers or [(where, {})]:   # checked layer by layer: an error names its file
        cfg = _merge(cfg, values, where)
        _check_all(cfg, where)
    # Cross-key check: the border must leave some of the model frame.
    side = min(cfg["model"]["image_width"], cfg["model"]["image_height"])
    if 2 * cfg["keypoints"]["border"] >= side:
        raise ConfigError(f"{where}: keypoints.border must be below half the model side ({side // 2}),"
                          f" got {cfg['keypoints']['border']}")
    return cfg
