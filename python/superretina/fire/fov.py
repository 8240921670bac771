"""Field-of-view masks for FIRE evaluation and synthetic sets: the registration's own
``superretina.fov`` (one implementation for the registrar, SIFT and the generator)."""
from __future__ import annotations

from ..fov import fov_mask

__all__ = ["fov_mask"]
