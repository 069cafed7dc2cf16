"""Dual-head KD: probability-level losses on the model's head, a logit-level loss on an auxiliary head."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losslab.core.reduction import reduce_loss
from losslab.core.registry import choice, real, register, twin
from losslab.core.validation import check_choice, check_floating, check_number, fail
from losslab.distill._base import (
    MIN_TEMPERATURE,
    DistillTerm,
    check_nonneg,
    check_temperature,
    gather_class,
    kl_from_log,
    prepare,
)
from losslab.distill._teacher import mean_teacher_logits, teacher_log_probs

LOGIT_LOSSES = ("binary_kl_norm", "binary_kl")


def binary_kl_norm(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    r"""BinaryKL-Norm per sample, :math:`d = (s - t)/T`:
    :math:`T^2 \sum_c \mathrm{KL}(\mathrm{Bern}(\tfrac12) \| \mathrm{Bern}(\sigma(d_c)))`.

    Equal to :math:`T^2 \sum_c [\tfrac12(\operatorname{softplus}(d_c) + \operatorname{softplus}(-d_c)) - \log 2]`:
    zero exactly when the logits match, and a smooth :math:`|d|` far from it.
    """
    d = (student - teacher) / temperature
    per_class = 0.5 * (F.softplus(d) + F.softplus(-d)) - torch.log(torch.tensor(2.0, dtype=d.dtype))
    return temperature**2 * per_class.sum(dim=-1)


def binary_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    r"""BinaryKL per sample, in log-space.

    :math:`T^2 \sum_c \mathrm{KL}(\mathrm{Bern}(\sigma(t_c/T)) \| \mathrm{Bern}(\sigma(s_c/T)))`.
    """
    s, t = student / temperature, teacher / temperature
    log_ps, log_qs = F.logsigmoid(s), F.logsigmoid(-s)
    log_pt, log_qt = F.logsigmoid(t), F.logsigmoid(-t)
    per_class = log_pt.exp() * (log_pt - log_ps) + log_qt.exp() * (log_qt - log_qs)
    return temperature**2 * per_class.sum(dim=-1)


@register("distill", "dual_head_kd", family="logit-kd", papers=(271,),
          hyper={"temperature": real(4.0, MIN_TEMPERATURE, None, doc="KD temperature on head 1"),
                 "logit_temperature": real(2.0, MIN_TEMPERATURE, None, doc="temperature of the logit loss"),
                 "kd_weight": real(1.0, 0.0, doc="weight of T^2 KL on head 1"),
                 "logit_weight": real(1.0, 0.0, doc="weight of the logit-level loss on head 2"),
                 "ce_weight": real(0.0, 0.0, doc="weight of the hard-label CE on head 1"),
                 "logit_loss": choice("binary_kl_norm", LOGIT_LOSSES, doc="logit-level loss of head 2")})
def dual_head_kd(
    logits: Tensor,
    target: Tensor,
    teacher_logits: Tensor,
    *,
    aux_logits: Tensor,
    temperature: float = 4.0,
    logit_temperature: float = 2.0,
    kd_weight: float = 1.0,
    logit_weight: float = 1.0,
    ce_weight: float = 0.0,
    logit_loss: str = "binary_kl_norm",
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Dual-head KD: KD (and CE) on the model's own head, a logit-level BinaryKL loss on an auxiliary head.

    Use it to add a logit-level signal without collapsing the classifier: the
    paper shows that CE/KL and a logit-level loss conflict inside one linear
    head but not in the backbone, so the logit-level loss gets its own head on
    the same features (inference uses head 1 only).

    .. math::
        \ell = w_{ce}\,\mathrm{CE}(y, z) + w_{kd}\, T^2 \mathrm{KL}(p_t^T \| \operatorname{softmax}(z/T))
             + w_{\ell}\, \tau^2 \sum_c
               \mathrm{KL}\big(\mathrm{Bern}(\tfrac12) \,\|\, \mathrm{Bern}(\sigma((a_c - t_c)/\tau))\big)

    with :math:`z` head 1, :math:`a` head 2 (``aux_logits``) and :math:`t` the
    teacher logits. The head-2 loss is the official code's BinaryKL-Norm
    (``logit_loss="binary_kl_norm"``); ``"binary_kl"`` is the unnormalised
    BinaryKL of the paper's motivation, :math:`\mathrm{KL}(\mathrm{Bern}(\sigma(t_c/\tau)) \|
    \mathrm{Bern}(\sigma(a_c/\tau)))`. ``ce_weight`` defaults to 0 because the
    objective's loss normally supplies CE on head 1; the released recipe trains
    head 1 with CE alone (``kd_weight=0``). An ensemble's member logits are
    averaged for the logit loss and its probabilities for the KL.

    Args:
        logits: head-1 logits ``(N, C)`` (the model's own head).
        target: class ids ``(N,)``.
        teacher_logits: ``(N, C)``, or ``(K, N, C)`` for an ensemble.
        aux_logits: head-2 logits ``(N, C)``.
        temperature: KD temperature :math:`T \ge 10^{-2}`.
        logit_temperature: :math:`\tau > 0` of the logit loss (official default 2).
        kd_weight, logit_weight, ce_weight: non-negative weights.
        logit_loss: ``"binary_kl_norm"`` | ``"binary_kl"``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: on bad inputs, mis-shaped ``aux_logits`` or bad hyper-parameters.

    References:
        [271] Yang, Zong, Huang, Feng & An, *Dual-Head Knowledge Distillation:
        Enhancing Logits Utilization with an Auxiliary Head*, 2024.

    Example:
        >>> z = torch.tensor([[2.0, 0.0, -1.0]])
        >>> dual_head_kd(z, torch.tensor([0]), z, aux_logits=z)
        tensor(0.)
    """
    _check_hyper(temperature, logit_temperature, kd_weight, logit_weight, ce_weight, logit_loss)
    logits, target, teacher, weight = prepare(logits, target, teacher_logits, weight, reduction,
                                              validate_args=validate_args)
    aux = _check_aux(aux_logits, logits)
    head1 = kd_weight * temperature**2 * kl_from_log(teacher_log_probs(teacher, temperature),
                                                     torch.log_softmax(logits / temperature, dim=-1))
    if ce_weight > 0:
        head1 = head1 - ce_weight * gather_class(torch.log_softmax(logits, dim=-1), target)
    fn = binary_kl_norm if logit_loss == "binary_kl_norm" else binary_kl
    head2 = logit_weight * fn(aux, mean_teacher_logits(teacher), logit_temperature)
    return reduce_loss(head1 + head2, reduction, weight)


def _check_hyper(temperature: float, logit_temperature: float, kd_weight: float, logit_weight: float,
                 ce_weight: float, logit_loss: str) -> None:
    check_temperature(temperature)
    check_temperature(logit_temperature, "logit_temperature")
    for value, name in ((kd_weight, "kd_weight"), (logit_weight, "logit_weight"), (ce_weight, "ce_weight")):
        check_nonneg(value, name)
    check_choice(logit_loss, "logit_loss", LOGIT_LOSSES)


def _check_aux(aux_logits: Any, logits: Tensor) -> Tensor:
    check_floating(aux_logits, "aux_logits")
    if aux_logits.shape != logits.shape:
        fail("aux_logits", f"of shape {tuple(logits.shape)} like `logits`", f"shape {tuple(aux_logits.shape)}")
    return aux_logits.to(logits.dtype)


@twin("distill", "dual_head_kd")
class DualHeadKD(DistillTerm):
    """Twin of :func:`dual_head_kd`: owns the auxiliary linear head on ``features``.

    The auxiliary head sees the same features as ``model.head``; the engine
    optimises it with the model. Head 2's loss reaches the backbone through
    ``features`` but never ``model.head``.
    """

    name = "dual_head_kd"

    def __init__(self, feature_dim: int, num_classes: int, **hyper: Any) -> None:
        super().__init__(**hyper)
        self.aux_head = nn.Linear(check_number(feature_dim, "feature_dim", low=1, integer=True),
                                  check_number(num_classes, "num_classes", low=2, integer=True))

    def forward(self, logits: Tensor, target: Tensor, features: Tensor, teacher_logits: Tensor) -> Tensor:
        check_floating(features, "features")
        aux = self.aux_head(features.to(self.aux_head.weight.dtype))
        return dual_head_kd(logits, target, teacher_logits, aux_logits=aux, **self.hyper)
