"""Confusion-matrix losses: a metric of a soft confusion matrix, as a batch-level loss."""

from __future__ import annotations

import math

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from losslab.core.registry import choice, real, register, twin
from losslab.core.validation import check_choice, check_number
from losslab.losses._base import LossModule, one_hot_like, prepare

ANYLOSS_METRICS = ("accuracy", "balanced_accuracy", "f1", "fbeta", "gmean", "mcc")


class _SoftCounts(NamedTuple):
    """Weighted soft confusion statistics of one batch (``C`` classes)."""

    matrix: Tensor  # (C, C): rows true class, columns predicted class
    true: Tensor  # (C,) weighted count of each true class
    pred: Tensor  # (C,) weighted soft count of each predicted class
    total: Tensor  # () total weight


def _soft_counts(sharp: Tensor, onehot: Tensor, weight: Tensor | None) -> _SoftCounts:
    weighted = onehot if weight is None else onehot * weight.to(onehot.dtype).unsqueeze(1)
    row_weight = weighted.sum(dim=1)  # w_i (the target rows sum to 1)
    return _SoftCounts(weighted.T @ sharp, weighted.sum(dim=0), row_weight @ sharp, row_weight.sum())


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    # The floor is sqrt(tiny), not tiny: the quotient's derivative divides by den**2,
    # which must not underflow to 0 (a soft count of 1e-37 gave 0/0 in the backward).
    return num / den.clamp_min(math.sqrt(torch.finfo(den.dtype).tiny))


def _mean_over_present(values: Tensor, true: Tensor) -> Tensor:
    present = (true > 0).to(values.dtype)
    return _safe_div((values * present).sum(), present.sum())


def _accuracy(c: _SoftCounts, beta: float) -> Tensor:
    return _safe_div(c.matrix.diagonal().sum(), c.total)


def _balanced_accuracy(c: _SoftCounts, beta: float) -> Tensor:
    return _mean_over_present(_safe_div(c.matrix.diagonal(), c.true), c.true)


def _gmean(c: _SoftCounts, beta: float) -> Tensor:
    recall = _safe_div(c.matrix.diagonal(), c.true).clamp_min(torch.finfo(c.true.dtype).tiny)
    return _mean_over_present(recall.log(), c.true).exp()


def _fbeta(c: _SoftCounts, beta: float) -> Tensor:
    b2 = beta * beta
    per_class = _safe_div((1.0 + b2) * c.matrix.diagonal(), b2 * c.true + c.pred)
    return per_class[1] if per_class.shape[0] == 2 else per_class.mean()


def _f1(c: _SoftCounts, beta: float) -> Tensor:
    return _fbeta(c, 1.0)


def _mcc(c: _SoftCounts, beta: float) -> Tensor:
    # Gorodkin's R_K from the matrix alone: a correlation under the joint law CM / sum(CM).
    total, true, pred = c.matrix.sum(), c.matrix.sum(dim=1), c.matrix.sum(dim=0)
    cov_tp = total * c.matrix.diagonal().sum() - true @ pred
    cov_pp = (total * total - pred @ pred).clamp_min(0.0)
    cov_tt = (total * total - true @ true).clamp_min(0.0)
    # The clamp keeps sqrt off 0 (an infinite derivative); the final clamp absorbs rounding.
    scale = (cov_pp * cov_tt).clamp_min(torch.finfo(cov_tp.dtype).tiny).sqrt()
    return (cov_tp / scale).clamp(-1.0, 1.0)


_METRICS: dict[str, Callable[[_SoftCounts, float], Tensor]] = {
    "accuracy": _accuracy,
    "balanced_accuracy": _balanced_accuracy,
    "f1": _f1,
    "fbeta": _fbeta,
    "gmean": _gmean,
    "mcc": _mcc,
}


@register("loss", "anyloss", family="confusion", papers=(58,), tags=("batch", "soft_target"),
          hyper={"metric": choice("f1", ANYLOSS_METRICS, doc="confusion-matrix metric to maximise"),
                 "amplifier": real(73.0, 0.0, None, low_open=True, doc="L in A(p) = sigmoid(L (p - 1/2))"),
                 "beta": real(1.0, 0.0, None, low_open=True, doc="beta of F-beta (metric='fbeta' only)")})
def anyloss(
    logits: Tensor,
    target: Tensor,
    *,
    metric: str = "f1",
    amplifier: float = 73.0,
    beta: float = 1.0,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""AnyLoss: one minus a confusion-matrix metric of sharpened probabilities.

    Use it to optimise the metric you report (F1, balanced accuracy, MCC, ...)
    directly, typically on imbalanced data. It is a batch statistic, not a
    per-sample loss: there is no ``reduction="none"``, and its value depends on
    the whole batch.

    .. math::
        \ell = 1 - M\big(\mathrm{CM}\big),\qquad
        \mathrm{CM}_{jk} = \sum_i w_i\, q_{ij}\, A(p_{ik}),\qquad
        A(p) = \sigma\big(L\,(p - \tfrac12)\big)

    where :math:`p = \operatorname{softmax}(z)`, :math:`q` the one-hot (or
    probability) target, :math:`w` the per-sample weights (so integer weights
    equal repeated samples) and :math:`L` the ``amplifier``, which pushes
    :math:`A(p)` towards 0 or 1 so the soft matrix approximates the confusion
    matrix at threshold 1/2. With :math:`t_k = \sum_i w_i q_{ik}` and
    :math:`\hat t_k = \sum_i w_i A(p_{ik})`:

    - ``"accuracy"``: :math:`\operatorname{tr}\mathrm{CM} / \sum_i w_i`;
    - ``"balanced_accuracy"``: mean recall :math:`\mathrm{CM}_{kk}/t_k` over the
      classes present in the batch (sklearn's definition; binary:
      :math:`(\mathrm{TPR} + \mathrm{TNR})/2`);
    - ``"gmean"``: geometric mean of those recalls (a recall that is 0 at hard
      predictions is about :math:`A(0) = \sigma(-L/2)`, 1e-16 at :math:`L = 73`,
      so the score is near but not exactly 0 there);
    - ``"fbeta"`` / ``"f1"``: :math:`(1+\beta^2)\mathrm{CM}_{kk} / (\beta^2 t_k + \hat t_k)`,
      for class 1 when :math:`C = 2` (so :math:`p = \operatorname{softmax}(z)_1` is
      the positive-class probability), else the macro mean over all :math:`C`
      classes (a class absent from both targets and predictions scores 0);
    - ``"mcc"``: the multiclass Matthews correlation (Gorodkin's :math:`R_K`, the
      binary MCC when :math:`C = 2`) of the matrix itself, with its own row and
      column sums as marginals; it is a correlation under the joint law
      :math:`\mathrm{CM}/\sum \mathrm{CM}`, so it stays in :math:`[-1, 1]`.

    For :math:`C = 2`, :math:`A(p_0) = 1 - A(p_1)` (up to rounding), so the one-vs-rest
    matrix is the paper's binary TP/FN/FP/TN. Every denominator is guarded, so
    a degenerate case (a class absent from the batch, or MCC when every sample
    is predicted as one class) gives a finite score, 0 where sklearn gives 0.
    The default :math:`L = 73` is the paper's (the official code's ``L = 73``;
    its README allows about 2 to 70); ``beta`` is only read by ``"fbeta"``.

    Args:
        logits: float tensor of shape ``(N, C)``, unnormalised scores.
        target: int tensor ``(N,)`` of class ids in ``[0, C)``, or float ``(N, C)`` probabilities.
        metric: one of ``"accuracy"``, ``"balanced_accuracy"``, ``"f1"``, ``"fbeta"``,
            ``"gmean"``, ``"mcc"``.
        amplifier: :math:`L` in ``(0, inf)``.
        beta: :math:`\beta` of F-beta in ``(0, inf)``.
        reduction: ``"mean"`` or ``"sum"``; both return the batch scalar.
        weight: optional non-negative per-sample weights ``(N,)``, applied to the counts.
        validate_args: check finiteness and label range.

    Returns:
        A scalar (for either reduction).

    Raises:
        ValueError: on bad inputs, ``reduction="none"``, an unknown ``metric``, or
            non-positive ``amplifier``/``beta``.

    References:
        [58] Han, Moniz & Chawla, *AnyLoss: Transforming Classification Metrics into
        Loss Functions*, arXiv:2405.14745.

    Example:
        >>> logits = torch.tensor([[2.0, -1.0], [0.5, 1.0], [-1.0, 2.0], [1.0, 0.0]])
        >>> anyloss(logits, torch.tensor([0, 1, 1, 1]), metric="f1")
        tensor(0.2000)
    """
    check_choice(metric, "metric", ANYLOSS_METRICS)
    check_number(amplifier, "amplifier", low=0.0, low_open=True)
    check_number(beta, "beta", low=0.0, low_open=True)
    logits, target, weight = prepare(logits, target, weight, reduction,
                                     validate_args=validate_args, reductions=("mean", "sum"))
    sharp = torch.sigmoid(amplifier * (torch.softmax(logits, dim=-1) - 0.5))
    counts = _soft_counts(sharp, one_hot_like(target, logits), weight)
    return 1.0 - _METRICS[metric](counts, beta)  # a batch statistic: nothing to reduce


@twin("loss", "anyloss")
class AnyLoss(LossModule):
    """Module twin of :func:`anyloss`."""

    function = anyloss
    name = "anyloss"
