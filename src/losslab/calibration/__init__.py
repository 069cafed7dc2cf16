"""Post-hoc calibration: map a trained classifier's logits to better-calibrated ones, argmax unchanged.

- :func:`fit_temperature` / :class:`TemperatureScaler`: one global temperature
  fitted by NLL on held-out logits (Guo et al., 2017), the standard baseline.
- :func:`correctness_aware_loss` / :class:`CorrectnessAwareCalibrator` [80]: a
  per-sample temperature trained with a BCE between top-1 confidence and
  correctness, optionally reading the logits of transformed copies.
- :func:`alpha_bn` [348]: test-time calibration of batch-norm statistics, a
  mix of source and test-batch statistics for covariate-shifted inputs. It
  fits nothing and, unlike the calibrators above, changes the features and so
  the argmax.

Calibrators are fitted on a validation split, never on the data they are
judged on. They are not registry components (their contract is ``fit`` then
``forward``, not the loss contract); the registered entry point is the
diagnostic :func:`losslab.diagnostics.calibration.calibrated_ece`, which
carries paper [80].
"""

from losslab.calibration.batchnorm import alpha_bn
from losslab.calibration.correctness import CorrectnessAwareCalibrator, correctness_aware_loss, logit_statistics
from losslab.calibration.temperature import TemperatureScaler, fit_temperature

__all__ = [
    "CorrectnessAwareCalibrator",
    "TemperatureScaler",
    "alpha_bn",
    "correctness_aware_loss",
    "fit_temperature",
    "logit_statistics",
]
