"""A whole eye: several photographs (visits over time, fields of one visit) in one frame.

:func:`register_series` registers the pairs a series needs with the pair API, chains them along
the strongest paths of the pair graph and refines every image's transform jointly;
:class:`Series` holds the result, ``Series.save`` writes series.json, aligned/, montage.png and
flicker.html. Modules: ``inputs`` (images, folder, CSV), ``graph`` (pair selection, edge
weights), ``frame`` (reference, initial transforms), ``refine`` (joint least squares),
``outputs`` (files), ``evaluate`` (ground-truth errors), ``cli`` (``bash run.sh series``).
Imported on first use (SciPy loads only when a series is registered).
"""
__all__ = ["register_series", "Series", "SeriesPair", "SeriesImage", "SeriesInputError", "load_series"]


def __getattr__(name):
    if name in ("register_series", "Series", "SeriesPair", "load_series"):
        from . import core

        return getattr(core, name)
    if name in ("SeriesImage", "SeriesInputError"):
        from . import inputs

        return getattr(inputs, name)
    raise AttributeError(f"module 'superretina.series' has no attribute {name!r}")
