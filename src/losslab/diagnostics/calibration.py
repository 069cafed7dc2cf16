"""Calibration after post-hoc recalibration: ECE of a model once a temperature is fitted, cross-fitted on the test subset."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from losslab.calibration.correctness import CorrectnessAwareCalibrator
from losslab.calibration.temperature import GUO, fit_temperature
from losslab.core.registry import choice, integer, register
from losslab.core.validation import check_choice, check_number, fail
from losslab.diagnostics._base import restore_model_state
from losslab.diagnostics._checks import check_batch, check_generator, check_labels, check_model
from losslab.metrics.calibration import expected_calibration_error

METHODS = ("temperature", "correctness_aware")


@register("diagnostic", "calibrated_ece", family="calibration", papers=(80,), reference=GUO,
          hyper={"method": choice("temperature", METHODS,
                                  doc="temperature scaling (Guo et al.) or the correctness-aware calibrator [80]"),
                 "n_bins": integer(15, 1, doc="equal-width ECE bins")})
def calibrated_ece(
    model: nn.Module,
    test_inputs: Tensor,
    test_target: Tensor,
    *,
    method: str = "temperature",
    n_bins: int = 15,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    r"""Test ECE before and after post-hoc calibration, the calibrator cross-fitted so it never sees what it is judged on.

    Use it to compare objectives by the calibration that survives the standard
    fix: an objective whose raw ECE is better (label smoothing, focal) may lose
    its edge once a temperature is fitted (Guo et al., 2017), and a model that
    is well calibrated only after scaling is still fine to deploy with a
    calibrator.

    Protocol (2-fold cross-fitting): the subset is split in two halves by a
    random permutation from ``generator``; a calibrator fitted on one half
    (:func:`losslab.calibration.fit_temperature`, or
    :class:`losslab.calibration.CorrectnessAwareCalibrator` without views, since
    a diagnostic has no augmentations) recalibrates the other, then the halves
    swap. ``calibrated_ece`` is the ECE of the pooled recalibrated predictions,

    .. math::
        \mathrm{ECE}\big(\{\operatorname{softmax}(g_{B}(z_i))\}_{i \in A} \cup
        \{\operatorname{softmax}(g_{A}(z_i))\}_{i \in B}\big)

    with :math:`g_A` fitted on half :math:`A`. losslab's choice: pooling, rather
    than averaging the two halves' ECEs, keeps the same sample count as the raw
    ``ece`` on the whole subset, so both carry the same binning bias.
    ``temperature`` is the mean fitted ``T`` of the two halves (temperature
    scaling) or the mean per-sample :math:`\tau(x)` (correctness-aware).
    Both calibrators keep the argmax, so ``accuracy`` is the raw accuracy.

    The registry entry cites [80] for ``method="correctness_aware"`` and
    Guo et al. for temperature scaling; it is how [80] enters the registry,
    since the calibrators themselves have a fit/forward contract, not a loss's.

    Args:
        model: a classifier mapping ``test_inputs`` to logits ``(m, C)`` (eval mode, left as found).
        test_inputs: a held-out batch ``(m, ...)`` with ``m >= 4``.
        test_target: its integer labels ``(m,)``.
        method: ``"temperature"`` | ``"correctness_aware"``.
        n_bins: equal-width ECE bins, an integer ``>= 1``.
        generator: a seeded ``torch.Generator`` for the split (and the calibrator's
            initialisation); seed 0 when ``None``.

    Returns:
        ``{"ece", "calibrated_ece", "temperature", "accuracy"}``.

    Raises:
        ValueError: on a non-module ``model``, a model that does not return ``(m, C)``
            logits, bad batches, fewer than 4 samples, or bad hyper-parameters.

    References:
        Guo et al., *On Calibration of Modern Neural Networks*, ICML 2017, arXiv:1706.04599;
        [80] Liu et al., *Optimizing Calibration by Gaining Aware of Prediction Correctness*, 2024.

    Example:
        >>> layer = nn.Linear(2, 2, bias=False)
        >>> _ = layer.weight.data.copy_(torch.tensor([[5.0, 0.0], [0.0, 5.0]]))
        >>> x = torch.eye(2).repeat(4, 1)
        >>> y = torch.tensor([0, 1, 0, 1, 0, 1, 1, 0])  # 6 of 8 right
        >>> out = calibrated_ece(layer, x, y)
        >>> out["accuracy"], out["ece"] > out["calibrated_ece"]
        (0.75, True)
    """
    check_model(model)
    check_batch(test_inputs, "test_inputs")
    check_labels(test_target, test_inputs.shape[0], "test_target")
    check_choice(method, "method", METHODS)
    n_bins = check_number(n_bins, "n_bins", low=1, integer=True)
    check_generator(generator)
    if test_inputs.shape[0] < 4:
        fail("test_inputs", "a batch of at least 4 samples (two halves of 2 for cross-fitting)",
             f"shape {tuple(test_inputs.shape)}")
    logits = _logits(model, test_inputs).float().cpu()
    target = test_target.cpu()
    if int(target.max()) >= logits.shape[1]:
        fail("test_target", f"class ids in [0, {logits.shape[1]})", f"a label {int(target.max())}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    # A CPU generator derived from the given one, which may live on an accelerator.
    cpu_gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=gen, device=gen.device)))
    perm = torch.randperm(logits.shape[0], generator=cpu_gen)
    half_a, half_b = perm[: logits.shape[0] // 2], perm[logits.shape[0] // 2:]
    calibrated, temps = torch.empty_like(logits), []
    for fit_idx, eval_idx in ((half_a, half_b), (half_b, half_a)):
        calibrated[eval_idx], temp = _recalibrate(logits, target, fit_idx, eval_idx, method, cpu_gen)
        temps.append(temp)

    def ece(z: Tensor) -> float:
        return float(expected_calibration_error(z.softmax(-1), target, n_bins=n_bins))

    return {"ece": ece(logits), "calibrated_ece": ece(calibrated), "temperature": sum(temps) / len(temps),
            "accuracy": float((logits.argmax(-1) == target).float().mean())}


def _recalibrate(logits: Tensor, target: Tensor, fit_idx: Tensor, eval_idx: Tensor, method: str,
                 generator: torch.Generator) -> tuple[Tensor, float]:
    """The ``eval_idx`` logits recalibrated by a calibrator fitted on ``fit_idx``, and its (mean) temperature."""
    if method == "temperature":
        t = fit_temperature(logits[fit_idx], target[fit_idx])
        return logits[eval_idx] / t, t
    cal = CorrectnessAwareCalibrator().fit(logits[fit_idx], target[fit_idx], generator=generator)
    with torch.no_grad():
        tau = cal.temperatures(logits[eval_idx])
    return logits[eval_idx] / tau.unsqueeze(-1), float(tau.mean())


def _logits(model: nn.Module, inputs: Tensor) -> Tensor:
    with restore_model_state(model), torch.no_grad():
        logits = model(inputs)
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != inputs.shape[0] \
            or logits.shape[1] < 2 or not bool(torch.isfinite(logits).all()):
        got = f"shape {tuple(logits.shape)}" if isinstance(logits, Tensor) else type(logits).__name__
        fail("model", f"a classifier returning finite logits of shape ({inputs.shape[0]}, C), C >= 2", got)
    return logits
