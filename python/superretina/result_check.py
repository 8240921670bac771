"""Checking a result.json read back from disk before it becomes a ``Registration``.

A result.json may come from anywhere (another machine, a hand edit, an attacker). Read back,
its arrays must have the shapes the API promises, hold finite numbers, and agree with each
other and with the counts beside them; otherwise callers would get a 2x2 "homography", NaN
points, or inlier flags that do not belong to the matches. Every problem is a ``ValueError``
whose message names the field (``matches.inlier: 10 flags for 296 matches``);
``api.load_result`` turns it into its one error type.
"""
from __future__ import annotations

import math

import numpy as np

STATUSES = ("registered", "failed")


def _array(info: dict, dotted: str, shape: tuple, dtype=np.float64) -> np.ndarray:
    """The field ``dotted`` (``"matches.query_xy"``) as an array of ``shape`` (-1: any length), finite."""
    value = info
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ValueError(f"{dotted}: missing")
        value = value[part]
    try:
        a = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{dotted}: expected an array of numbers of shape {_shape_text(shape)}") from None
    if dtype is np.float64 and a.size == 0 and a.ndim == 1 and len(shape) == 2:
        a = a.reshape(0, shape[1])   # [] is an empty (0, 2) list of points
    if a.ndim != len(shape) or any(s not in (-1, n) for s, n in zip(shape, a.shape)):
        raise ValueError(f"{dotted}: shape {a.shape}, expected {_shape_text(shape)}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{dotted}: not finite (NaN or infinity)")
    return a


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join("N" if s == -1 else str(s) for s in shape) + ")"


def _count(info: dict, dotted: str) -> int:
    value = info
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ValueError(f"{dotted}: missing")
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{dotted}: expected a non-negative integer, got {str(value)[:40]!r}")
    return value


def check_result(info) -> None:
    """Raise ValueError naming the field when ``info`` is not a consistent result.json.

    Checked: ``status``; ``query_size``/``refer_size`` positive integers; ``homography`` a
    finite (3, 3) matrix (present when registered); ``keypoints.query/refer`` finite (N, 2)
    matching ``num_keypoints``; ``matches.query_xy/refer_xy`` finite (M, 2) and
    ``matches.inlier`` M booleans, with ``num_matches == M`` and ``num_inliers`` their count;
    ``inlier_rate`` in [0, 1]; ``transform`` readable (``transform.transform_from_json``).
    """
    if not isinstance(info, dict):
        raise ValueError(f"expected a JSON object at the top level, got {type(info).__name__}")
    if info.get("status") not in STATUSES:
        raise ValueError(f"status: expected one of {', '.join(STATUSES)}, got {str(info.get('status'))[:40]!r}")
    if not (info.get("reason") is None or isinstance(info["reason"], str)):
        raise ValueError("reason: expected a string or null")
    for side in ("query_size", "refer_size"):
        for dim in ("height", "width"):
            if _count(info, f"{side}.{dim}") < 1:
                raise ValueError(f"{side}.{dim}: expected a positive integer")
    if info.get("homography") is not None:
        _array(info, "homography", (3, 3))
    elif info["status"] == "registered":
        raise ValueError("homography: null, but status is registered")
    for side in ("query", "refer"):
        kp = _array(info, f"keypoints.{side}", (-1, 2))
        if len(kp) != _count(info, f"num_keypoints.{side}"):
            raise ValueError(f"keypoints.{side}: {len(kp)} points, num_keypoints.{side} says "
                             f"{info['num_keypoints'][side]}")
    q = _array(info, "matches.query_xy", (-1, 2))
    r = _array(info, "matches.refer_xy", (-1, 2))
    inlier = _array(info, "matches.inlier", (-1,), dtype=object)
    if not all(isinstance(v, bool) for v in inlier):
        raise ValueError("matches.inlier: expected true/false flags")
    m = _count(info, "num_matches")
    if not len(q) == len(r) == m:
        raise ValueError(f"matches: {len(q)} query and {len(r)} reference points for num_matches {m}")
    if len(inlier) != m:
        raise ValueError(f"matches.inlier: {len(inlier)} flags for {m} matches")
    if _count(info, "num_inliers") != int(sum(inlier)):
        raise ValueError(f"num_inliers: {info['num_inliers']}, but {int(sum(inlier))} matches are flagged inliers")
    rate = info.get("inlier_rate")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (math.isfinite(rate) and 0 <= rate <= 1):
        raise ValueError(f"inlier_rate: expected a number from 0 to 1, got {str(rate)[:40]!r}")
    if info.get("transform") is not None:
        from .transform import transform_from_json

        transform_from_json(info["transform"])   # ValueError naming the field
    if not isinstance(info.get("seconds", {}), dict):
        raise ValueError("seconds: expected an object of stage: seconds")
