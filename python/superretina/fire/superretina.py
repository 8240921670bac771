"""SuperRetina through the stream pipeline as a FIRE ``register_fn``."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional, Sequence

from .outcome import RegistrationOutcome


def _outcome(res, choice, seconds: float) -> RegistrationOutcome:
    st = res.final
    transform = None if choice is None or choice.model == "homography" else choice.transform
    # a registered pair's reason says why a requested quadratic was not returned (pairs.csv)
    reason = res.reason or (f"homography kept: {choice.reason}" if choice is not None and choice.reason else "")
    return RegistrationOutcome(
        status=res.status, reason=reason, H=res.H, num_matches=len(st.matches),
        num_inliers=st.homography.num_inliers, inlier_rate=st.homography.inlier_rate,
        seconds=seconds, transform=transform,
        confidence=0.0 if res.assessment is None else res.assessment.confidence)


def make_register_fn(app, model: Optional[str] = None):
    """``register_fn(query_path, refer_path) -> RegistrationOutcome`` using an opened App.

    ``model``: transform scored (homography / quadratic / auto); default the config's
    ``transform.model``. Thread-safe: the stream client keeps each caller's batches apart, so
    ``--jobs N`` keeps N pairs in flight.
    """

    def superretina(query_path: Path, refer_path: Path) -> RegistrationOutcome:
        t0 = time.perf_counter()
        res = app.registrar.register_files(query_path, refer_path)
        choice = res.transform
        if res.status == "registered" and model is not None and model != choice.requested:
            choice = app.registrar.choose_transform(res, model)
        return _outcome(res, choice if res.status == "registered" else None, time.perf_counter() - t0)

    return superretina


def make_register_fns(app, models: Sequence[str]) -> dict:
    """One ``register_fn`` per transform model, sharing one registration per pair.

    The first function called for a pair registers it and scores every model (each a few
    milliseconds on the same final matches); the others take their outcome from the cache
    (``compare`` evaluates the models one after the other over the same pairs).
    """
    cache: dict = {}
    lock = threading.Lock()

    def run(model: str, query_path: Path, refer_path: Path) -> RegistrationOutcome:
        key = (str(query_path), str(refer_path))
        with lock:
            entry = cache.get(key)
        if entry is None or model not in entry:
            t0 = time.perf_counter()
            res = app.registrar.register_files(query_path, refer_path)
            seconds = time.perf_counter() - t0
            entry = {}
            for m in models:
                t1 = time.perf_counter()
                choice = app.registrar.choose_transform(res, m) if res.status == "registered" else None
                entry[m] = _outcome(res, choice, seconds - res.seconds.get("transform", 0.0)
                                    + time.perf_counter() - t1)
            with lock:
                cache[key] = entry
        with lock:
            return cache[key].pop(model)

    def named(model: str):
        def fn(query_path: Path, refer_path: Path) -> RegistrationOutcome:
            return run(model, query_path, refer_path)
        fn.__name__ = f"superretina-{model}"
        return fn

    return {m: named(m) for m in models}
