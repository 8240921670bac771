"""SuperRetina through the stream pipeline as a FIRE ``register_fn``."""
from __future__ import annotations

import time
from pathlib import Path

from .outcome import RegistrationOutcome


def make_register_fn(app):
    """``register_fn(query_path, refer_path) -> RegistrationOutcome`` using an opened App.

    Thread-safe: the stream client keeps each caller's batches apart, so ``--jobs N`` keeps
    N pairs in flight.
    """

    def superretina(query_path: Path, refer_path: Path) -> RegistrationOutcome:
        t0 = time.perf_counter()
        res = app.registrar.register_files(query_path, refer_path)
        st = res.final
        return RegistrationOutcome(
            status=res.status, reason=res.reason or "", H=res.H, num_matches=len(st.matches),
            num_inliers=st.homography.num_inliers, inlier_rate=st.homography.inlier_rate,
            seconds=time.perf_counter() - t0)

    return superretina
