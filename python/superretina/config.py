"""Registration parameters: configs/default.yaml, overlaid by a user's YAML file.

Unknown keys and wrong types are reported with the file and the key, e.g.
``my.yaml: keypoints.nms_size must be an integer, got 'ten'``.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "default.yaml"
DEFAULT_PIPELINE = PROJECT_ROOT / "pipeline" / "superretina.pipeline"


class ConfigError(ValueError):
    pass


def _merge(base: dict, over: dict, where: str, prefix: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"{where}: unknown key {name!r} (known: {', '.join(sorted(base))})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {name} must be a mapping")
            out[key] = _merge(base[key], value, where, name + ".")
        else:
            out[key] = _coerce(base[key], value, where, name)
    return out


def _coerce(default, value, where: str, name: str):
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {name} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{where}: {name} must be a string, got {value!r}")
    return value


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    return data


def load_config(path: str | Path | None = None) -> dict:
    """The default configuration, with ``path``'s values (if given) laid over it."""
    cfg = _read(DEFAULT_CONFIG)
    if path is not None:
        cfg = _merge(cfg, _read(Path(path)), str(path))
    method = cfg["homography"]["method"].upper()
    if method not in ("LMEDS", "RANSAC", "USAC_MAGSAC"):
        raise ConfigError(f"{path or DEFAULT_CONFIG}: homography.method must be LMEDS, RANSAC or USAC_MAGSAC, got {method!r}")
    fallback = cfg["homography"]["fallback"].upper()
    if fallback not in ("NONE", "LMEDS", "RANSAC", "USAC_MAGSAC"):
        raise ConfigError(f"{path or DEFAULT_CONFIG}: homography.fallback must be none, LMEDS, RANSAC or USAC_MAGSAC,"
                          f" got {cfg['homography']['fallback']!r}")
    if cfg["homography"]["refine_scale"] < 0:
        raise ConfigError(f"{path or DEFAULT_CONFIG}: homography.refine_scale must be >= 0 (0 = off), "
                          f"got {cfg['homography']['refine_scale']}")
    if cfg["transform"]["model"] not in ("homography", "quadratic", "auto"):
        raise ConfigError(f"{path or DEFAULT_CONFIG}: transform.model must be homography, quadratic or auto, "
                          f"got {cfg['transform']['model']!r}")
    if cfg["matching_trick_warp"] not in ("model", "full"):
        raise ConfigError(f"{path or DEFAULT_CONFIG}: matching_trick_warp must be model or full, "
                          f"got {cfg['matching_trick_warp']!r}")
    for key in ("image_width", "image_height"):
        side = cfg["model"][key]
        if side <= 0 or side % 16:  # 0 or negative passed the modulo test and crashed in resizing
            raise ConfigError(f"{path or DEFAULT_CONFIG}: model.{key} must be a positive multiple of 16, got {side}")
    return cfg
