"""Coefficients of the confidence model (superretina.confidence): GENERATED, do not edit.

Written by `benchmarks/confidence_calibration.py --fit-only` on 2026-12-06 at commit 4297bbc, from
620 pairs (degenerate 14, fire_dev 13, fire_dev_shifted 39, eye 78, eye_shifted 234, real 1,
different 241; 91 right results). confidence = 1 / (1 + exp(-(INTERCEPT + COEFFICIENTS .
features))), features as confidence.features.
"""
FEATURES = ('log_support', 'log_first_support')
COEFFICIENTS = (2.45803, 1.85971,)
INTERCEPT = -14.7085
