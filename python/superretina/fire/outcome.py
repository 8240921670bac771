"""The result a registration function hands to the FIRE batch runner."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

STATUSES = ("registered", "failed", "error")


@dataclass
class RegistrationOutcome:
    """Outcome of registering one query image onto its reference.

    Attributes
    ----------
    status : str
        ``'registered'`` (``H`` is set), ``'failed'`` (the method ran but found no
        transform, e.g. too few matches) or ``'error'`` (the pair could not be processed,
        e.g. an unreadable image); the runner scores both non-registered states as failed.
    reason : str
        Human-readable cause for ``'failed'`` / ``'error'`` ('' when registered).
    H : ndarray of shape (3, 3), float64, or None
        Homography mapping query pixels to reference pixels, full-resolution image
        coordinates (pixel centres at integers, as OpenCV).
    num_matches, num_inliers : int
        Tentative matches and homography inliers.
    inlier_rate : float
        ``num_inliers / num_matches`` (0 when there are no matches). The FIRE protocol calls a
        pair failed when this is below 1e-6.
    seconds : float or None
        Time the method spent on the pair; ``None`` lets the runner use its own wall clock.
    transform : object with ``apply(points) -> points`` and ``model``, or None
        The transform the method returns when it is not the homography ``H`` (e.g. a
        ``transform.QuadraticTransform``): the protocol maps the control points through it.
    confidence : float or None
        The method's confidence that the result is right (SuperRetina: ``superretina.confidence``,
        in [0, 1]); None for methods without one.
    """

    status: str
    reason: str = ""
    H: Optional[np.ndarray] = None
    num_matches: int = 0
    num_inliers: int = 0
    inlier_rate: float = 0.0
    seconds: Optional[float] = None
    transform: Any = None
    confidence: Optional[float] = None

    @property
    def model(self) -> str:
        """Name of the transform scored: the transform's ``model``, else ``homography``."""
        return getattr(self.transform, "model", "homography")

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"RegistrationOutcome.status must be one of {STATUSES}, got {self.status!r}")
        if self.H is not None:
            self.H = np.asarray(self.H, dtype=np.float64)
            if self.H.shape != (3, 3):
                raise ValueError(f"RegistrationOutcome.H must be 3x3, got shape {self.H.shape}")
        if self.status == "registered" and self.H is None:
            raise ValueError("RegistrationOutcome: status 'registered' needs a homography H")
