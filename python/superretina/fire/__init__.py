"""FIRE-protocol evaluation, FIRE-format synthetic sets and a SIFT baseline.

Modules (each usable on its own):

- ``protocol``  pure functions of the FIRE protocol (errors, AUC, summary lines, pair list);
- ``outcome``   ``RegistrationOutcome``, what a registration function returns to ``evaluate``;
- ``evaluate``  method-agnostic resumable batch runner (``pairs.csv``, ``summary.json``,
  ``success_curve.png``) and ``compare`` for several methods;
- ``synth``     generator of FIRE-layout sets with exact ground truth;
- ``sift``      OpenCV SIFT baseline on the model's green-channel enhancement;
- ``fov``       field-of-view (fundus disc) masks.
"""
