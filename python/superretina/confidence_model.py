"""Coefficients of the confidence model (superretina.confidence): GENERATED, do not edit.

Written by `benchmarks/confidence_calibration.py --fit-only --rows /tmp/cal17b/rows.csv` on 2026-12-06 at commit 692c1ef, from 308 pairs
(degenerate 14, real 1, different 241, fire_dev 13, fire_dev_shifted 39; 13 right results). confidence =
1 / (1 + exp(-(INTERCEPT + COEFFICIENTS . features))), features as confidence.features.
"""
FEATURES = ('log_support', 'log_first_support')
COEFFICIENTS = (1.32886, 1.2108,)
INTERCEPT = -8.49745
