"""Noise-robust classification losses: comp-sum, GCE, symmetric CE and LDR-KL.

Each function's docstring holds its formula; this module only groups them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from losslab.core.reduction import reduce_loss
from losslab.core.registry import flag, real, register, twin
from losslab.core.validation import check_choice, check_number
from losslab.losses._base import LossModule, one_hot_like, prepare, target_log_prob, tempered_logsumexp

_GCE_REFERENCE = (
    "Zhang & Sabuncu, Generalized Cross Entropy Loss for Training Deep Neural Networks "
    "with Noisy Labels, NeurIPS 2018, arXiv:1805.07836."
)
_SCE_REFERENCE = (
    "Wang et al., Symmetric Cross Entropy for Robust Learning with Noisy Labels, "
    "ICCV 2019, arXiv:1908.06112."
)


def _comp_sum_elementwise(nll: Tensor, one_minus_tau: float) -> Tensor:
    """``expm1((1 - tau) * nll) / (1 - tau)`` per sample; ``nll`` itself at ``tau = 1``.

    ``expm1(e x) / e -> x`` smoothly as ``e -> 0``, so only ``e == 0`` needs its own
    branch. For ``tau < 1`` the exponent grows with ``nll``; it is capped at half
    the log of the dtype's largest number so the value saturates finitely.
    Below the dtype's smallest normal number ``e`` would round to 0 inside the
    product (0/0), and the limit is exact to working precision there anyway.
    """
    if abs(one_minus_tau) < torch.finfo(nll.dtype).tiny:
        return nll
    cap = 0.5 * math.log(torch.finfo(nll.dtype).max)
    return torch.expm1((one_minus_tau * nll).clamp_max(cap)) / one_minus_tau


@register("loss", "comp_sum", family="robust", papers=(5,),
          hyper={"tau": real(1.5, 0.0, 2.0, doc="0: sum-exp, 1: cross-entropy, 1+q: GCE, 2: MAE")})
def comp_sum_loss(
    logits: Tensor,
    target: Tensor,
    *,
    tau: float = 1.5,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Comp-sum loss: one parameter that spans sum-exp, CE, GCE and MAE.

    Use it to move between cross-entropy (:math:`\tau = 1`) and the bounded,
    noise-robust MAE (:math:`\tau = 2`) with one knob; :math:`\tau < 1` makes
    the loss steeper than cross-entropy on misclassified samples.

    .. math::
        \ell_\tau(z, y) = \frac{p_y^{\,\tau - 1} - 1}{1 - \tau}
        = \frac{\operatorname{expm1}\big((1 - \tau)\,\mathrm{nll}\big)}{1 - \tau},
        \qquad \ell_1 = \mathrm{nll} = -\log p_y

    where :math:`\mathrm{nll} = \operatorname{logsumexp}(z) - z_y`. Special
    cases: :math:`\tau = 0` gives :math:`1/p_y - 1`, :math:`\tau = 2` gives
    :math:`1 - p_y`, :math:`\tau = 1 + q` gives GCE with exponent :math:`q`.
    The value is continuous in :math:`\tau` (``expm1`` keeps it exact near 1).
    For :math:`\tau < 1` the exponent :math:`(1-\tau)\,\mathrm{nll}` is capped at
    :math:`\tfrac12 \log(\text{dtype max})` (about 44 in float32), so on badly
    misclassified samples the loss saturates at a large finite value with zero
    gradient instead of overflowing.

    The default :math:`\tau = 1.5` sits halfway between CE and MAE; the paper
    studies the whole range :math:`[0, 2]` and does not single out one value.

    Args:
        logits: float tensor of shape ``(N, C)``, unnormalised scores.
        target: int tensor ``(N,)`` of class ids in ``[0, C)``.
        tau: family parameter in ``[0, 2]``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: on bad inputs, probability targets, or ``tau`` outside ``[0, 2]``.

    References:
        [5] Mao, Mohri & Zhong, *Cross-Entropy Loss Functions: Theoretical Analysis
        and Applications*, ICML 2023.

    Example:
        >>> comp_sum_loss(torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0]), tau=1.5)
        tensor(0.1628)
    """
    check_number(tau, "tau", low=0.0, high=2.0)
    logits, target, weight = prepare(logits, target, weight, reduction,
                                     validate_args=validate_args, soft_target=False)
    nll = -target_log_prob(torch.log_softmax(logits, dim=-1), target)
    return reduce_loss(_comp_sum_elementwise(nll, 1.0 - tau), reduction, weight)


@twin("loss", "comp_sum")
class CompSumLoss(LossModule):
    """Module twin of :func:`comp_sum_loss`."""

    function = comp_sum_loss
    name = "comp_sum"


@register("loss", "gce", family="robust", papers=(5,), reference=_GCE_REFERENCE,
          hyper={"q": real(0.7, 0.0, 1.0, low_open=True, doc="q -> 0: cross-entropy, q = 1: MAE")})
def generalized_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Generalized cross-entropy (GCE): the negative Box-Cox transform of :math:`p_y`.

    Use it under label noise: it interpolates between cross-entropy
    (:math:`q \to 0`) and the bounded MAE (:math:`q = 1`), trading some fit on
    clean data for robustness to wrong labels.

    .. math::
        \ell_q(z, y) = \frac{1 - p_y^{\,q}}{q} = \frac{-\operatorname{expm1}(q \log p_y)}{q}

    It is the comp-sum loss at :math:`\tau = 1 + q` (see :func:`comp_sum_loss`).
    :math:`q = 1` gives :math:`1 - p_y`, which is half the MAE
    :math:`\lVert e_y - p \rVert_1 = 2(1 - p_y)`. The default :math:`q = 0.7` is
    the value used throughout the GCE paper's experiments.

    Args:
        logits: float tensor of shape ``(N, C)``, unnormalised scores.
        target: int tensor ``(N,)`` of class ids in ``[0, C)``.
        q: exponent in ``(0, 1]``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: on bad inputs, probability targets, or ``q`` outside ``(0, 1]``.

    References:
        Zhang & Sabuncu, *Generalized Cross Entropy Loss for Training Deep Neural
        Networks with Noisy Labels*, NeurIPS 2018, arXiv:1805.07836.
        [5] Mao, Mohri & Zhong, *Cross-Entropy Loss Functions: Theoretical Analysis
        and Applications*, ICML 2023 (GCE as a comp-sum loss).

    Example:
        >>> generalized_cross_entropy(torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0]), q=0.7)
        tensor(0.1601)
    """
    check_number(q, "q", low=0.0, high=1.0, low_open=True)
    logits, target, weight = prepare(logits, target, weight, reduction,
                                     validate_args=validate_args, soft_target=False)
    nll = -target_log_prob(torch.log_softmax(logits, dim=-1), target)
    return reduce_loss(_comp_sum_elementwise(nll, -q), reduction, weight)


@twin("loss", "gce")
class GeneralizedCrossEntropyLoss(LossModule):
    """Module twin of :func:`generalized_cross_entropy`."""

    function = generalized_cross_entropy
    name = "gce"


@register("loss", "sce", family="robust", reference=_SCE_REFERENCE, tags=("soft_target",),
          hyper={"alpha": real(0.1, 0.0, None, doc="weight of the cross-entropy term"),
                 "beta": real(1.0, 0.0, None, doc="weight of the reverse cross-entropy term"),
                 "log_zero": real(-4.0, None, 0.0, high_open=True, doc="value A taken for log 0")})
def symmetric_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.1,
    beta: float = 1.0,
    log_zero: float = -4.0,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Symmetric cross-entropy: cross-entropy plus reverse cross-entropy.

    Use it under label noise: the reverse term treats the prediction as the
    target and the label as the prediction, which is bounded and robust, while
    the small cross-entropy term keeps fitting fast on clean samples.

    .. math::
        \ell = \alpha\,\Big(-\sum_k q_k \log p_k\Big)
             + \beta\,\Big(-\sum_k p_k \max(\log q_k, A)\Big),
        \qquad \text{one-hot } q:\ \ \mathrm{RCE} = -A\,(1 - p_y)

    where :math:`p = \operatorname{softmax}(z)`, :math:`q` is the one-hot (or
    probability) target and :math:`A` (``log_zero``) replaces :math:`\log 0`
    (and, for probability targets, any :math:`\log q_k < A`, as the official
    code's label clip does).
    Defaults :math:`\alpha = 0.1, \beta = 1` are the paper's CIFAR-10 setting and
    :math:`A = -4` the value stated in the paper. The official code instead
    clips the label at ``1e-4``, i.e. :math:`A = \log 10^{-4} \approx -9.21`;
    pass ``log_zero=math.log(1e-4)`` to reproduce it.

    Args:
        logits: float tensor of shape ``(N, C)``, unnormalised scores.
        target: int tensor ``(N,)`` of class ids in ``[0, C)``, or float ``(N, C)`` probabilities.
        alpha: weight of cross-entropy, in ``[0, inf)``.
        beta: weight of reverse cross-entropy, in ``[0, inf)``.
        log_zero: the value :math:`A < 0` used for :math:`\log 0`.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: on bad inputs, negative ``alpha``/``beta`` or ``log_zero >= 0``.

    References:
        Wang et al., *Symmetric Cross Entropy for Robust Learning with Noisy Labels*,
        ICCV 2019, arXiv:1908.06112.

    Example:
        >>> symmetric_cross_entropy(torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0]))
        tensor(0.6418)
    """
    check_number(alpha, "alpha", low=0.0)
    check_number(beta, "beta", low=0.0)
    check_number(log_zero, "log_zero", high=0.0, high_open=True)
    logits, target, weight = prepare(logits, target, weight, reduction, validate_args=validate_args)
    log_probs = torch.log_softmax(logits, dim=-1)
    ce = -target_log_prob(log_probs, target)
    if target.dtype.is_floating_point:
        log_q = torch.log(target).clamp_min(log_zero)  # log 0 -> A
        rce = -(log_probs.exp() * log_q).sum(dim=-1)
    else:  # one-hot q: log q_y = 0 and log q_k = A elsewhere, so RCE = -A (1 - p_y) = A expm1(-CE)
        rce = log_zero * torch.expm1(-ce)
    return reduce_loss(alpha * ce + beta * rce, reduction, weight)


@twin("loss", "sce")
class SymmetricCrossEntropyLoss(LossModule):
    """Module twin of :func:`symmetric_cross_entropy`."""

    function = symmetric_cross_entropy
    name = "sce"


@register("loss", "ldr_kl", family="robust", papers=(74,),
          hyper={"lam": real(1.0, 0.0, None, low_open=True, doc="KL regularisation strength (temperature)"),
                 "margin": real(2.0, 0.0, None, doc="margin c added to every non-target class"),
                 "normalize_scores": flag(False, doc="softplus the logits and divide by their mean first")})
def ldr_kl_loss(
    logits: Tensor,
    target: Tensor,
    *,
    lam: float = 1.0,
    margin: float = 2.0,
    normalize_scores: bool = False,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Label-distributionally robust loss with a KL-regularised adversary (LDR-KL).

    Use it under label noise as a tunable family: a worst-case distribution
    over class margins, softened by a KL penalty of strength :math:`\lambda`.
    Small :math:`\lambda` approaches the Crammer-Singer SVM loss, :math:`\lambda = 1`
    is cross-entropy with a margin, and large :math:`\lambda` tends to the mean
    margin, a symmetric loss that is robust to noisy labels.

    .. math::
        \ell(s, y) = \max_{w \in \Delta_K} \sum_k w_k m_k - \lambda\,\mathrm{KL}(w \,\|\, \tfrac{1}{K}\mathbf{1})
        = \lambda \log \frac{1}{K} \sum_{k=1}^{K} \exp\!\Big(\frac{m_k}{\lambda}\Big),
        \qquad m_k = c\,\mathbb{1}[k \ne y] + s_k - s_y

    where :math:`s` are the scores (the logits, or their normalised form below),
    :math:`K = C` and :math:`c` is ``margin``. With :math:`\lambda = 1, c = 0`
    the loss equals cross-entropy minus :math:`\log K`. The log-sum-exp is
    computed stably. ``normalize_scores=True`` applies the official code's
    preprocessing :math:`s = \operatorname{softplus}(z) / \operatorname{mean}_k
    \operatorname{softplus}(z_k)`, which bounds the scores (the setting of the
    paper's robustness results). Defaults :math:`\lambda = 1, c = 2` are those
    of the official ``LDRLoss_V1``; both are tuned per dataset in the paper.

    Args:
        logits: float tensor of shape ``(N, C)``, unnormalised scores.
        target: int tensor ``(N,)`` of class ids in ``[0, C)``.
        lam: KL strength :math:`\lambda` in ``(0, inf)``.
        margin: margin :math:`c` in ``[0, inf)``.
        normalize_scores: apply the softplus-and-mean normalisation first.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: on bad inputs, probability targets, ``lam <= 0`` or ``margin < 0``.

    References:
        [74] Zhu, Ying & Yang, *Label Distributionally Robust Losses for Multi-class
        Classification: Consistency, Robustness and Adaptivity*, ICML 2023.

    Example:
        >>> ldr_kl_loss(torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0]), lam=1.0, margin=0.0)
        tensor(-0.9288)
    """
    check_number(lam, "lam", low=0.0, low_open=True)
    check_number(margin, "margin", low=0.0)
    check_choice(normalize_scores, "normalize_scores", (True, False))
    logits, target, weight = prepare(logits, target, weight, reduction,
                                     validate_args=validate_args, soft_target=False)
    scores = _normalized_scores(logits) if normalize_scores else logits
    onehot = one_hot_like(target, scores)
    margins = margin * (1.0 - onehot) + scores - (scores * onehot).sum(dim=-1, keepdim=True)
    per_sample = tempered_logsumexp(margins, lam) - lam * math.log(scores.shape[1])
    return reduce_loss(per_sample, reduction, weight)


def _normalized_scores(logits: Tensor) -> Tensor:
    """``softplus(z) / mean_k softplus(z_k)``, computed in log space.

    The ratio is invariant to shifting very negative logits (there
    ``softplus(z) ~ e^z``), so training can drive a whole row far below zero;
    the plain ratio then divides underflowed numbers and its gradient
    overflows (seen as NaN after ~60-100 epochs on MNIST-1D). In log space,
    ``log softplus(z)`` is taken as ``z`` below -15 (exact to float precision).
    """
    low = logits < -15.0
    safe = torch.where(low, torch.zeros_like(logits), logits)  # keeps the unused branch's gradient finite
    log_pos = torch.where(low, logits, torch.log(F.softplus(safe)))
    log_mean = torch.logsumexp(log_pos, dim=-1, keepdim=True) - math.log(logits.shape[-1])
    return torch.exp(log_pos - log_mean)


@twin("loss", "ldr_kl")
class LDRKLLoss(LossModule):
    """Module twin of :func:`ldr_kl_loss`."""

    function = ldr_kl_loss
    name = "ldr_kl"
