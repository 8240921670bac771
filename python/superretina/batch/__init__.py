"""Cohort-scale batch registration: a list of pairs in, resumable per-pair results and a report out.

Modules: ``pairs`` (PAIRS.csv), ``fingerprint`` (what produced a row), ``store`` (the resumable
rows file), ``worker`` (one pair), ``engines`` / ``ray_engine`` (where pairs run), ``runner``
(the batch), ``cli`` (``superretina batch``).
"""
