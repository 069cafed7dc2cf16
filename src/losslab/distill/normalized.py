"""NKD and USKD: the KD loss split into a target part and a sum-normalised non-target part."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from losslab.core.reduction import reduce_loss
from losslab.core.registry import real, register, twin
from losslab.core.validation import check_finite, check_floating, check_number, fail
from losslab.distill._base import (
    MIN_TEMPERATURE,
    DistillTerm,
    check_nonneg,
    check_temperature,
    gather_class,
    non_target,
    prepare,
    soft_cross_entropy,
)
from losslab.distill._teacher import teacher_log_probs


def non_target_log_probs(log_p: Tensor, target: Tensor) -> Tensor:
    r"""Log of the non-target distribution renormalised to sum 1.

    :math:`\log \hat p_i = \log p_i - \log \sum_{j \ne y} p_j`.

    Shape ``(N, C - 1)`` with the columns in class order, target removed.
    """
    rest = non_target(log_p, target)
    return rest - torch.logsumexp(rest, dim=-1, keepdim=True)


@register("distill", "nkd", family="logit-kd", papers=(267,),
          hyper={"temperature": real(1.0, MIN_TEMPERATURE, None, doc="temperature of the non-target part"),
                 "gamma": real(1.5, 0.0, doc="weight of the non-target part")})
def nkd(
    logits: Tensor,
    target: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float = 1.0,
    gamma: float = 1.5,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Normalized KD: teacher-weighted target log-likelihood plus KD on renormalised non-target classes.

    Use it in place of KD: the non-target sums of teacher and student differ,
    so plain KD cannot make their non-target probabilities equal; NKD matches
    the non-target distributions each renormalised to sum 1.

    .. math::
        \ell = -T_y \log S_y \;-\; \gamma\, \lambda^2 \sum_{i \ne y} \hat T_i^{\lambda} \log \hat S_i^{\lambda},
        \qquad \hat S_i^{\lambda} = \frac{e^{z_i/\lambda}}{\sum_{j \ne y} e^{z_j/\lambda}}

    with :math:`T, S` the teacher and student softmax at temperature 1 and
    :math:`\hat T^\lambda, \hat S^\lambda` the non-target distributions at
    temperature :math:`\lambda`, as in the official code (a cross-entropy, not a
    KL: the teacher's entropy is a constant). At :math:`\gamma = 1, \lambda = 1`,
    plain KD's cross-entropy decomposes as :math:`-T_y\log S_y - (1-T_y)\log(1-S_y)
    + (1 - T_y)\,(\text{non-target term})`. An ensemble teacher is averaged in
    probability space, then renormalised over the non-target classes.

    Args:
        logits: student logits ``(N, C)``.
        target: class ids ``(N,)``.
        teacher_logits: ``(N, C)``, or ``(K, N, C)`` for an ensemble.
        temperature: :math:`\lambda > 0` (the paper's default 1).
        gamma: :math:`\gamma \ge 0` (default 1.5, the official ImageNet setting).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: on bad inputs, ``temperature < 1e-2`` or ``gamma < 0``.

    References:
        [267] Yang et al., *From Knowledge Distillation to Self-Knowledge
        Distillation: A Unified Approach with Normalized Loss and Customized Soft Labels*, ICCV 2023.

    Example:
        >>> z = torch.tensor([[3.0, 1.0, 1.0]])
        >>> nkd(z, torch.tensor([0]), torch.tensor([[0.0, 0.0, 0.0]]), gamma=0.0)
        tensor(0.0798)
    """
    check_temperature(temperature)
    check_nonneg(gamma, "gamma")
    logits, target, teacher, weight = prepare(logits, target, teacher_logits, weight, reduction,
                                              validate_args=validate_args)
    t_y = gather_class(teacher_log_probs(teacher).exp(), target)
    target_part = -t_y * gather_class(torch.log_softmax(logits, dim=-1), target)
    t_hat = non_target_log_probs(teacher_log_probs(teacher, temperature), target).exp()
    s_hat = torch.log_softmax(non_target(logits, target) / temperature, dim=-1)
    per_sample = target_part + gamma * temperature**2 * soft_cross_entropy(s_hat, t_hat)
    return reduce_loss(per_sample, reduction, weight)


@twin("distill", "nkd")
class NKD(DistillTerm):
    """Module twin of :func:`nkd`."""

    name = "nkd"

    def forward(self, logits: Tensor, target: Tensor, teacher_logits: Tensor) -> Tensor:
        return nkd(logits, target, teacher_logits, **self.hyper)


def zipf_non_target_labels(rank_scores: Tensor, target: Tensor) -> Tensor:
    r"""USKD's soft non-target labels ``(N, C - 1)``: Zipf weights :math:`1/r` by rank, renormalised.

    Each class gets rank :math:`r = 1, 2, \ldots` by descending ``rank_scores``
    over all ``C`` classes (target included, as in the official code; ties keep
    class order); the target is dropped and the remaining :math:`1/r` are
    normalised to sum 1. Detached.
    """
    order = torch.sort(rank_scores.detach(), dim=-1, descending=True, stable=True).indices
    position = torch.argsort(order, dim=-1)  # rank (0-based) of each class
    zipf = 1.0 / (position + 1).to(rank_scores.dtype)
    rest = non_target(zipf, target)
    return rest / rest.sum(dim=-1, keepdim=True)


def _uskd_rank_scores(logits: Tensor, weak_logits: Tensor | None, target: Tensor) -> Tensor:
    """Sum of the non-target-normalised probabilities of the final (and weak) head, target column included."""
    def normalised(z: Tensor) -> Tensor:
        p = torch.softmax(z.detach(), dim=-1)
        return p / (1.0 - gather_class(p, target)).clamp_min(1e-6).unsqueeze(1)
    score = normalised(logits)
    return score if weak_logits is None else score + normalised(weak_logits)


def _uskd_target_weight(logits: Tensor, target: Tensor) -> Tensor:
    """Soft target label :math:`s_y^2 + 1 - \\operatorname{mean}_{batch}(s_y^2)`, detached."""
    s_y = gather_class(torch.softmax(logits.detach(), dim=-1), target)
    return s_y.square() + 1.0 - s_y.square().mean()


@register("distill", "uskd", family="self-kd", papers=(267,),
          hyper={"alpha": real(1.0, 0.0, doc="weight of the smoothed target term"),
                 "beta": real(0.1, 0.0, doc="weight of the Zipf non-target term"),
                 "mu": real(0.005, 0.0, doc="weight of the weak head's smoothed cross-entropy")})
def uskd(
    logits: Tensor,
    target: Tensor,
    weak_logits: Tensor | None = None,
    *,
    alpha: float = 1.0,
    beta: float = 0.1,
    mu: float = 0.005,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""USKD: teacher-free NKD with a smoothed own-target label and Zipf-ranked non-target labels.

    Use it as a self-KD loss in place of cross-entropy when there is no teacher.
    The soft target label is the student's own squared target probability
    recentred on the batch; the soft non-target labels follow Zipf's law over
    the ranking of the classes by the (weak and final) heads' non-target
    probabilities; a weak linear head on features gets a smoothed cross-entropy.

    .. math::
        \ell = -\alpha\, \tilde y \log S_y - \beta \sum_{i \ne y} \hat Z_i \log \hat S_i
               - \mu \sum_k (0.9\, e_{y,k} + 0.1 / C) \log \operatorname{softmax}(w)_k,
        \qquad \tilde y = S_y^2 + 1 - \overline{S_y^2},\quad \hat Z_i \propto 1 / \mathrm{rank}_i

    with :math:`\overline{\cdot}` the batch mean (so the loss of a sample depends
    on its batch, as in the official code), :math:`\hat S` the student's
    non-target softmax at temperature 1, and :math:`w` the weak logits. Without
    ``weak_logits`` the weak term is dropped and the ranking uses the final
    logits alone. Choice: the ranking adds the two heads' non-target-normalised
    *probabilities*; the released code adds the weak head's probabilities to
    the final head's log-probabilities, which we read as an oversight (the
    two agree when only the final head ranks). Default weights are the official
    ImageNet ones (alpha=1, beta=0.1, mu=0.005).

    Args:
        logits: student logits ``(N, C)``.
        target: class ids ``(N,)``.
        weak_logits: optional logits ``(N, C)`` of a weak linear head on features.
        alpha: target-term weight, ``>= 0``.
        beta: non-target-term weight, ``>= 0``.
        mu: weak-head weight, ``>= 0``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: on bad inputs, mis-shaped ``weak_logits`` or a negative weight.

    References:
        [267] Yang et al., *From Knowledge Distillation to Self-Knowledge
        Distillation: A Unified Approach with Normalized Loss and Customized Soft Labels*, ICCV 2023.

    Example:
        >>> z = torch.tensor([[2.0, 0.0, -1.0]])
        >>> uskd(z, torch.tensor([0]), beta=0.0)  # one sample: target label 1, plain CE
        tensor(0.1698)
    """
    for value, name in ((alpha, "alpha"), (beta, "beta"), (mu, "mu")):
        check_nonneg(value, name)
    logits, target, _, weight = prepare(logits, target, None, weight, reduction,
                                        validate_args=validate_args, need_teacher=False)
    weak = _check_weak(weak_logits, logits)
    per_sample = -alpha * _uskd_target_weight(logits, target) * gather_class(torch.log_softmax(logits, -1), target)
    z_hat = zipf_non_target_labels(_uskd_rank_scores(logits, weak, target), target)
    per_sample = per_sample + beta * soft_cross_entropy(torch.log_softmax(non_target(logits, target), -1), z_hat)
    if weak is not None:
        c = logits.shape[1]
        smooth = 0.9 * torch.nn.functional.one_hot(target.long(), c).to(logits.dtype) + 0.1 / c
        per_sample = per_sample + mu * soft_cross_entropy(torch.log_softmax(weak, dim=-1), smooth)
    return reduce_loss(per_sample, reduction, weight)


def _check_weak(weak_logits: Any, logits: Tensor) -> Tensor | None:
    if weak_logits is None:
        return None
    check_floating(weak_logits, "weak_logits")
    check_finite(weak_logits, "weak_logits")
    if weak_logits.shape != logits.shape:
        fail("weak_logits", f"of shape {tuple(logits.shape)} like `logits`", f"shape {tuple(weak_logits.shape)}")
    return weak_logits.to(logits.dtype)


@twin("distill", "uskd")
class USKD(DistillTerm):
    """Twin of :func:`uskd`; owns the weak linear head when ``feature_dim`` is given.

    The paper puts the weak head on an intermediate stage; the term contract
    exposes only ``features = model.features(x)`` (the penultimate
    representation), so that is where losslab attaches it (a choice).
    """

    name = "uskd"

    def __init__(self, num_classes: int | None = None, feature_dim: int | None = None, **hyper: Any) -> None:
        super().__init__(**hyper)
        self.weak_head: nn.Linear | None = None
        if feature_dim is not None:
            if num_classes is None:
                fail("num_classes", "given with `feature_dim` (the weak head's width)", None)
            self.weak_head = nn.Linear(check_number(feature_dim, "feature_dim", low=1, integer=True),
                                       check_number(num_classes, "num_classes", low=2, integer=True))

    def forward(self, logits: Tensor, target: Tensor, features: Tensor | None = None) -> Tensor:
        weak = None
        if self.weak_head is not None and features is not None:
            weak = self.weak_head(features.to(self.weak_head.weight.dtype))
        return uskd(logits, target, weak, **self.hyper)
