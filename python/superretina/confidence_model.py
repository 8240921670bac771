"""Coefficients of the confidence model (superretina.confidence): GENERATED, do not edit.

Written by `benchmarks/confidence_calibration.py --eye-set /tmp/cal17b/eye_s0` on 2026-12-06 at
commit 4d70615, from 464 pairs (degenerate 14, fire_dev 13, fire_dev_shifted 39, eye 39,
eye_shifted 117, real 1, different 241; 52 right results). confidence = 1 / (1 + exp(-(INTERCEPT +
COEFFICIENTS . features))), features as confidence.features.
"""
FEATURES = ('log_support', 'log_first_support')
COEFFICIENTS = (1.67778, 1.3079,)
INTERCEPT = -9.36135
