"""A whole eye: several photographs (visits over time, fields of one visit) in one frame.

:func:`register_series` registers the pairs a series needs with the pair API, chains them along
the strongest paths of the pair graph and refines every image's transform jointly;
:class:`Series` holds the result, ``Series.save`` writes series.json, aligned/, montage.png and
flicker.html. Modules: ``inputs`` (images, folder, CSV), ``graph`` (pair selection, edge
weights), ``frame`` (reference, initial transforms), ``refine`` (joint least squares),
``outputs`` (files), ``cli`` (``bash run.sh series``).
"""
from .core import Series, SeriesPair, load_series, register_series
from .inputs import SeriesImage, SeriesInputError

__all__ = ["register_series", "Series", "SeriesPair", "SeriesImage", "SeriesInputError", "load_series"]
