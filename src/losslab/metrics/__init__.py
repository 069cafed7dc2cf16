"""Metrics: pure functions with streaming ``torchmetrics.Metric`` twins, each in the registry.

Every metric follows one contract::

    fn(probs: Tensor[N, C], target: Tensor[N], *, validate_args=True, **hyper) -> Tensor

``probs`` rows are probability vectors (apply ``torch.softmax`` to logits
first); ``target`` holds class ids in ``[0, C)``. A twin runs the same private
steps as its function, so ``Twin(**hyper)`` updated batch by batch equals the
function on the concatenated batches.
"""

from losslab.metrics.calibration import (
    ClasswiseECE,
    ExpectedCalibrationError,
    MaximumCalibrationError,
    classwise_ece,
    expected_calibration_error,
    maximum_calibration_error,
)
from losslab.metrics.classification import (
    Accuracy,
    BrierScore,
    NegativeLogLikelihood,
    accuracy,
    brier_score,
    negative_log_likelihood,
)
from losslab.metrics.selective import (
    AURC,
    EAURC,
    RiskCoverage,
    RiskCoverageCurve,
    aurc,
    e_aurc,
    risk_coverage_curve,
)
from losslab.metrics.stacking import AUSUC, SeenUnseen, SeenUnseenCurve, ausuc, seen_unseen_curve

__all__ = [
    "AURC",
    "AUSUC",
    "Accuracy",
    "BrierScore",
    "ClasswiseECE",
    "EAURC",
    "ExpectedCalibrationError",
    "MaximumCalibrationError",
    "NegativeLogLikelihood",
    "RiskCoverage",
    "RiskCoverageCurve",
    "SeenUnseen",
    "SeenUnseenCurve",
    "accuracy",
    "aurc",
    "ausuc",
    "brier_score",
    "classwise_ece",
    "e_aurc",
    "expected_calibration_error",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "risk_coverage_curve",
    "seen_unseen_curve",
]
