"""SuperRetina fundus image registration (a MindX SDK stream-pipeline application).

    import superretina
    result = superretina.register("visit2.jpg", "visit1.jpg")   # query → reference
    result.status, result.homography, result.transform.apply(points)

:func:`register`, :class:`Session` (many pairs, one runtime), :func:`load_result` and the result
object :class:`Registration` live in :mod:`superretina.api`; they are imported on first use, so
that ``import superretina`` (and the command line's ``--help``) stays light.
"""
__version__ = "0.8.0"

__all__ = ["register", "Session", "load_result", "Registration", "register_series", "__version__"]


def __getattr__(name):
    if name in ("register", "Session", "load_result", "Registration"):
        from . import api

        return getattr(api, name)
    if name == "register_series":
        from .series import register_series

        return register_series
    raise AttributeError(f"module 'superretina' has no attribute {name!r}")
