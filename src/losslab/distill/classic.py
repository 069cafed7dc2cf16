"""Logit distillation against a fixed target: Hinton's KD and ground-truth-weighted self-distillation."""

from __future__ import annotations

import torch
from torch import Tensor

from losslab.core.reduction import reduce_loss
from losslab.core.registry import real, register, twin
from losslab.distill._base import (
    MIN_TEMPERATURE,
    DistillTerm,
    check_temperature,
    check_unit,
    gather_class,
    kl_from_log,
    prepare,
    soft_cross_entropy,
)
from losslab.distill._teacher import teacher_log_probs


@register("distill", "kd", family="logit-kd",
          reference="Hinton, Vinyals & Dean, Distilling the Knowledge in a Neural Network, "
                    "NIPS Deep Learning Workshop 2015 (arXiv:1503.02531)",
          hyper={"temperature": real(4.0, MIN_TEMPERATURE, None, doc="softmax temperature T"),
                 "alpha": real(0.0, 0.0, 1.0, doc="weight of the hard-label cross-entropy")})
def kd(
    logits: Tensor,
    target: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float = 4.0,
    alpha: float = 0.0,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Knowledge distillation: T²-scaled KL from the softened teacher to the softened student.

    Use it to train a student on a trained teacher's soft predictions. With the
    default ``alpha=0`` it is the pure distillation term, to be added to the
    objective's own loss; ``alpha > 0`` mixes in the hard-label cross-entropy as
    the weighted average of the paper.

    .. math::
        \ell = \alpha\, \mathrm{CE}(y, \operatorname{softmax}(z))
             + (1 - \alpha)\, T^2\, \mathrm{KL}\big(p_t^T \,\|\, \operatorname{softmax}(z / T)\big)

    The :math:`T^2` factor keeps the gradient's magnitude roughly constant in
    :math:`T`: for large :math:`T` and zero-mean logits the soft-term gradient
    tends to :math:`(z_i - v_i) / C` (without it, that divided by :math:`T^2`).
    An ensemble ``(K, N, C)`` is averaged in probability space after scaling by
    :math:`T`. The teacher is detached.

    Args:
        logits: student logits ``(N, C)``.
        target: class ids ``(N,)``.
        teacher_logits: ``(N, C)``, or ``(K, N, C)`` for an ensemble.
        temperature: :math:`T \ge 10^{-2}` (below it the softened distributions are one-hot).
        alpha: hard-label weight in ``[0, 1]``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: on bad inputs, ``temperature < 1e-2`` or ``alpha`` outside ``[0, 1]``.

    References:
        Hinton, Vinyals & Dean, *Distilling the Knowledge in a Neural Network*, 2015.

    Example:
        >>> z = torch.tensor([[2.0, 0.0, -1.0]])
        >>> kd(z, torch.tensor([0]), z, temperature=2.0)
        tensor(0.)
    """
    check_temperature(temperature)
    check_unit(alpha, "alpha")
    logits, target, teacher, weight = prepare(logits, target, teacher_logits, weight, reduction,
                                              validate_args=validate_args)
    soft = kl_from_log(teacher_log_probs(teacher, temperature), torch.log_softmax(logits / temperature, dim=-1))
    per_sample = (1.0 - alpha) * temperature**2 * soft
    if alpha > 0:
        per_sample = per_sample - alpha * gather_class(torch.log_softmax(logits, dim=-1), target)
    return reduce_loss(per_sample, reduction, weight)


@twin("distill", "kd")
class KD(DistillTerm):
    """Module twin of :func:`kd`."""

    name = "kd"

    def forward(self, logits: Tensor, target: Tensor, teacher_logits: Tensor) -> Tensor:
        return kd(logits, target, teacher_logits, **self.hyper)


@register("distill", "gt_self_distill", family="self-kd", papers=(188,),
          hyper={"alpha": real(0.5, 0.0, 1.0, doc="weight of the ground-truth one-hot in the target")})
def gt_self_distill(
    logits: Tensor,
    target: Tensor,
    teacher_logits: Tensor,
    *,
    alpha: float = 0.5,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Self-distillation with ground-truth targets: cross-entropy against a label/teacher mixture.

    Use it for iterated self-distillation, where the teacher is the previous
    generation of the same model: the ground-truth weight :math:`\alpha` damps
    the regularisation that pure self-distillation keeps amplifying
    (:mod:`losslab.distill.krr` holds the paper's kernel-ridge analysis, with the
    closed-form optimal :math:`\alpha_t` per generation).

    .. math::
        \ell = -\sum_k \big(\alpha\, e_{y,k} + (1 - \alpha)\, p_{t,k}\big) \log \operatorname{softmax}(z)_k

    The paper studies a weighted squared error in kernel regression; for
    classification the same convex mixture of targets is used with
    cross-entropy (losslab's choice, at temperature 1). ``alpha=1`` is plain
    cross-entropy; ``alpha=0`` is pure self-distillation.

    Args:
        logits: student logits ``(N, C)``.
        target: class ids ``(N,)``.
        teacher_logits: the previous generation's logits ``(N, C)`` (or ``(K, N, C)``).
        alpha: ground-truth weight in ``[0, 1]``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: on bad inputs or ``alpha`` outside ``[0, 1]``.

    References:
        [188] Borup & Andersen, *Even your Teacher Needs Guidance: Ground-Truth
        Targets Dampen Regularization Imposed by Self-Distillation*, NeurIPS 2021.

    Example:
        >>> z = torch.tensor([[2.0, 0.0]])
        >>> gt_self_distill(z, torch.tensor([0]), torch.zeros(1, 2), alpha=1.0)
        tensor(0.1269)
    """
    check_unit(alpha, "alpha")
    logits, target, teacher, weight = prepare(logits, target, teacher_logits, weight, reduction,
                                              validate_args=validate_args)
    onehot = torch.nn.functional.one_hot(target.long(), logits.shape[1]).to(logits.dtype)
    mixed = alpha * onehot + (1.0 - alpha) * teacher_log_probs(teacher).exp()
    return reduce_loss(soft_cross_entropy(torch.log_softmax(logits, dim=-1), mixed), reduction, weight)


@twin("distill", "gt_self_distill")
class GTSelfDistill(DistillTerm):
    """Module twin of :func:`gt_self_distill`."""

    name = "gt_self_distill"

    def forward(self, logits: Tensor, target: Tensor, teacher_logits: Tensor) -> Tensor:
        return gt_self_distill(logits, target, teacher_logits, **self.hyper)
