"""Instance reweighting of per-sample losses: KL-regularised DRO and loss-based strategies.

Both losses are batch statistics: each sample's weight depends on the other
losses in the batch. The weights are held fixed (no gradient flows through
them), as in the papers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from losslab.core.registry import REGISTRY, choice, real, register, twin
from losslab.core.validation import (
    check_choice,
    check_finite,
    check_floating,
    check_nonempty,
    check_number,
    check_rank,
    check_weight,
)
from losslab.losses._base import LossModule, prepare

BASE_LOSSES = ("ce", "focal", "gce", "sce", "label_smoothing")
REWEIGHT_STRATEGIES = ("linupper", "quadratic", "extremes")
_BATCH_REDUCTIONS = ("mean", "sum")


def base_per_sample_loss(logits: Tensor, target: Tensor, base: str) -> Tensor:
    """Per-sample losses ``(N,)`` of the registered classification loss ``base`` at its defaults.

    Inputs must already be validated (this is called after :func:`prepare`).
    """
    check_choice(base, "base", BASE_LOSSES)
    fn = REGISTRY.get("loss", base).obj
    return fn(logits, target, reduction="none", validate_args=False)


def check_losses(losses: object, name: str = "losses", *, validate_args: bool = True) -> Tensor:
    """A non-empty floating ``(N,)`` tensor of per-sample losses, finite when validated."""
    check_floating(losses, name)
    check_rank(losses, 1, name)
    check_nonempty(losses, name)
    if validate_args:
        check_finite(losses, name)
    return losses


def _log_sample_weight(weight: Tensor | None, like: Tensor) -> Tensor:
    """``log w_i`` (0 without weights); a zero weight gives ``-inf`` and removes the sample."""
    if weight is None:
        return torch.zeros_like(like)
    return weight.to(like.dtype).log()


def _tempered(losses: Tensor, log_w: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """``(m, z)`` with ``m`` the largest loss of a weighted sample and ``z = (l - m) / tau + log w``.

    Shifting by ``m`` keeps ``exp`` in range at any temperature. A ``tau`` below the
    dtype's smallest normal number would round to 0 inside the division (0/0), so
    there the limit is taken exactly: ``z`` is ``log w`` at the maxima and ``-inf``
    elsewhere, which is what ``softmax(l / tau)`` tends to as ``tau -> 0``.
    """
    m = torch.where(torch.isfinite(log_w), losses, torch.finfo(losses.dtype).min).amax()
    if tau < torch.finfo(losses.dtype).tiny:
        return m, torch.where(losses == m, log_w, -math.inf)
    return m, (losses - m) / tau + log_w


def kl_dro_weights(losses: Tensor, tau: float = 1.0, *, weight: Tensor | None = None) -> Tensor:
    r"""KL-DRO instance weights :math:`q = \operatorname{softmax}(\ell / \tau)`, detached.

    Use it to reweight any per-sample losses towards the hard samples of the
    batch: :math:`q` is the maximiser of
    :math:`\sum_i q_i \ell_i - \tau\,\mathrm{KL}(q \,\|\, \mathrm{uniform})` over the simplex.

    .. math::
        q_i = \frac{w_i\, e^{\ell_i / \tau}}{\sum_j w_j\, e^{\ell_j / \tau}}

    with optional non-negative sample weights :math:`w` (integer weights equal
    repeated samples). :math:`\tau \to \infty` gives :math:`w / \sum w`;
    :math:`\tau \to 0` puts all mass on the largest loss.

    Args:
        losses: float tensor ``(N,)`` of per-sample losses.
        tau: temperature in ``(0, inf)``.
        weight: optional non-negative sample weights ``(N,)``.

    Returns:
        ``(N,)`` weights that sum to 1, without gradient.

    Raises:
        ValueError: on a bad ``losses`` tensor, ``weight`` or ``tau <= 0``.

    References:
        [1] *Doubly Robust Instance-Reweighted Adversarial Training*.

    Example:
        >>> kl_dro_weights(torch.tensor([0.0, 1.0, 2.0]), tau=1.0)
        tensor([0.0900, 0.2447, 0.6652])
    """
    check_number(tau, "tau", low=0.0, low_open=True)
    check_losses(losses)
    check_weight(weight, losses.shape[0])
    losses = losses.detach().float() if losses.dtype in (torch.float16, torch.bfloat16) else losses.detach()
    _, z = _tempered(losses, _log_sample_weight(weight, losses), tau)
    return torch.softmax(z, dim=0)


def _batch_scale(value: Tensor, reduction: str, weight: Tensor | None, n: int) -> Tensor:
    """``mean`` returns the batch value; ``sum`` scales it by the total weight, as ``reduce_loss`` does."""
    if reduction == "mean":
        return value
    total = float(n) if weight is None else weight.to(value.dtype).sum()
    return value * total


@register("loss", "kl_dro", family="reweighting", papers=(1, 22), tags=("batch",),
          hyper={"tau": real(1.0, 0.0, None, low_open=True, doc="KL temperature; large -> mean, small -> max"),
                 "base": choice("ce", BASE_LOSSES, doc="registered per-sample loss that is reweighted")})
def kl_dro_loss(
    logits: Tensor,
    target: Tensor,
    *,
    tau: float = 1.0,
    base: str = "ce",
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""KL-DRO loss: the KL-regularised worst-case reweighting of a base loss over the batch.

    Use it when some samples (a hard or minority group, the weakest points under
    attack) are neglected by the average loss: the gradient weights each sample
    by :math:`q_i \propto e^{\ell_i/\tau}`, so large losses count more.

    .. math::
        L = \max_{q \in \Delta} \sum_i q_i \ell_i - \tau\,\mathrm{KL}(q \,\|\, \bar w)
          = \tau \log \sum_i \bar w_i\, e^{\ell_i / \tau},
        \qquad \nabla L = \sum_i \operatorname{sg}(q_i)\, \nabla \ell_i

    where :math:`\ell_i` is the per-sample ``base`` loss, :math:`\bar w = w / \sum w`
    (uniform without ``weight``) and :math:`q` = :func:`kl_dro_weights`. The value
    returned is the regularised objective (between the weighted mean and the max of
    the losses); its gradient is exactly that of :math:`\sum_i q_i \ell_i` with the
    weights held fixed, the detached-weight update of [1]. The adversarial inner
    attack of [1] is not part of the loss: pass adversarial logits to get [1]'s
    objective. The base loss runs at its registry defaults; :math:`\tau = 1` is
    losslab's default (the papers tune it).

    Args:
        logits: float tensor ``(N, C)``.
        target: int tensor ``(N,)`` of class ids in ``[0, C)``.
        tau: temperature in ``(0, inf)``.
        base: ``"ce"``, ``"focal"``, ``"gce"``, ``"sce"`` or ``"label_smoothing"``.
        reduction: ``"mean"`` (the objective) or ``"sum"`` (the objective times the total weight).
        weight: optional non-negative sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        A scalar.

    Raises:
        ValueError: on bad inputs, ``reduction="none"``, ``tau <= 0`` or an unknown ``base``.

    References:
        [1] *Doubly Robust Instance-Reweighted Adversarial Training*.
        [22] Sow et al., *Dynamic Loss-Based Sample Reweighting for Improved Large
        Language Model Pretraining*.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
        >>> kl_dro_loss(logits, torch.tensor([0, 0, 0]), tau=1.0)
        tensor(1.2894)
    """
    check_number(tau, "tau", low=0.0, low_open=True)
    check_choice(base, "base", BASE_LOSSES)
    logits, target, weight = prepare(logits, target, weight, reduction, validate_args=validate_args,
                                     soft_target=False, reductions=_BATCH_REDUCTIONS)
    losses = base_per_sample_loss(logits, target, base)
    log_w = _log_sample_weight(weight, losses)
    m, z = _tempered(losses, log_w - torch.logsumexp(log_w, dim=0), tau)
    if tau < torch.finfo(losses.dtype).tiny:  # the tau -> 0 limit: the largest loss, gradient split over ties
        q = torch.softmax(z, dim=0).detach()
        value = (q * losses).sum() + (m - (q * losses).sum()).detach()
    else:
        value = m + tau * torch.logsumexp(z, dim=0)
    return _batch_scale(value, reduction, weight, losses.shape[0])


def _normalise(losses: Tensor, present: Tensor, delta: float) -> Tensor:
    """Affine map of the present samples' ``[min, max]`` onto ``[-delta, delta]``; all equal -> 0."""
    big = torch.finfo(losses.dtype).max
    lo = torch.where(present, losses, big).amin()
    hi = torch.where(present, losses, -big).amax()
    span = (hi - lo).clamp_min(torch.finfo(losses.dtype).eps * (1.0 + hi.abs()))
    return delta * (2.0 * losses - (hi + lo)) / span


def _strategy(unit: Tensor, strategy: str, delta: float) -> Tensor:
    """The score g of the losses mapped onto [-delta, delta], from ``unit`` = that map / delta.

    Working from the unit map keeps the quadratic score ``1 - (x / delta)^2`` exact
    for any ``delta``: forming ``x`` first and dividing by ``delta^2`` gave 0/0 for a
    tiny ``delta``.
    """
    if strategy == "linupper":
        return delta * torch.clamp_max(unit + 1.0, 1.0)
    if strategy == "quadratic":
        return 1.0 - unit.square()
    return delta * unit.abs()  # "extremes"


def loss_reweighting_weights(
    losses: Tensor,
    *,
    strategy: str = "linupper",
    delta: float = 1.0,
    tau: float = 1.0,
    weight: Tensor | None = None,
) -> Tensor:
    r"""Loss-based instance weights of [22], detached and summing to 1.

    Use it to reweight per-sample losses by how informative they look in the batch.
    The losses are mapped affinely onto :math:`[-\delta, \delta]` (batch min to
    :math:`-\delta`, max to :math:`\delta`), passed through the strategy's score
    :math:`g`, and turned into weights by a softmax at temperature :math:`\tau`:

    .. math::
        \tilde\ell_i = \delta\,\frac{2\ell_i - \ell_{\max} - \ell_{\min}}{\ell_{\max} - \ell_{\min}},
        \qquad q_i = \frac{w_i\, e^{g(\tilde\ell_i)/\tau}}{\sum_j w_j\, e^{g(\tilde\ell_j)/\tau}}

    - ``"linupper"``: :math:`g = \min(\tilde\ell + \delta, \delta)`, down-weights
      low-loss (redundant) samples and caps the high-loss ones at the median's weight;
    - ``"quadratic"``: :math:`g = 1 - \tilde\ell^2/\delta^2`, down-weights both extremes;
    - ``"extremes"``: :math:`g = |\tilde\ell|`, up-weights both extremes.

    Equal losses give uniform weights. Samples with zero ``weight`` take no part in
    the min and max, so integer weights equal repeated samples.

    Args:
        losses: float tensor ``(N,)`` of per-sample losses.
        strategy: ``"linupper"``, ``"quadratic"`` or ``"extremes"``.
        delta: half-width :math:`\delta` of the normalised range, in ``(0, inf)``.
        tau: softmax temperature in ``(0, inf)``.
        weight: optional non-negative sample weights ``(N,)``.

    Returns:
        ``(N,)`` weights that sum to 1, without gradient.

    Raises:
        ValueError: on a bad ``losses`` tensor or ``weight``, an unknown ``strategy``,
            or non-positive ``delta``/``tau``.

    References:
        [22] Sow et al., *Dynamic Loss-Based Sample Reweighting for Improved Large
        Language Model Pretraining*.

    Example:
        >>> loss_reweighting_weights(torch.tensor([0.0, 1.0, 2.0]), strategy="linupper")
        tensor([0.1554, 0.4223, 0.4223])
    """
    check_choice(strategy, "strategy", REWEIGHT_STRATEGIES)
    check_number(delta, "delta", low=0.0, low_open=True)
    check_number(tau, "tau", low=0.0, low_open=True)
    check_losses(losses)
    check_weight(weight, losses.shape[0])
    losses = losses.detach().float() if losses.dtype in (torch.float16, torch.bfloat16) else losses.detach()
    present = torch.ones_like(losses, dtype=torch.bool) if weight is None else weight > 0
    score = _strategy(_normalise(losses, present, 1.0), strategy, delta)
    _, z = _tempered(score, _log_sample_weight(weight, losses), tau)
    return torch.softmax(z, dim=0)


@register("loss", "loss_reweighting", family="reweighting", papers=(22,), tags=("batch", "stopgrad"),
          hyper={"strategy": choice("linupper", REWEIGHT_STRATEGIES, doc="score of the normalised loss"),
                 "delta": real(1.0, 0.0, None, low_open=True, doc="half-width of the normalised loss range"),
                 "tau": real(1.0, 0.0, None, low_open=True, doc="softmax temperature of the weights"),
                 "base": choice("ce", BASE_LOSSES, doc="registered per-sample loss that is reweighted")})
def loss_reweighting(
    logits: Tensor,
    target: Tensor,
    *,
    strategy: str = "linupper",
    delta: float = 1.0,
    tau: float = 1.0,
    base: str = "ce",
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Dynamic loss-based sample reweighting: a base loss averaged with loss-dependent weights.

    Use it to stop redundant, already-fit samples (``"linupper"``) or both
    extremes (``"quadratic"``) from dominating the update, e.g. in pretraining on
    heavily duplicated data.

    .. math::
        L = \sum_i \operatorname{sg}(q_i)\, \ell_i

    with :math:`q` = :func:`loss_reweighting_weights` of the per-sample ``base``
    losses (the formulas and strategies are there). The weights carry no gradient,
    as in [22], so the gradient is not the derivative of the value with respect to
    the weights; the loss is tagged ``stopgrad``. The normalisation, the three
    strategies and the softmax at temperature 1 follow [22]'s released code (the
    abstract leaves them open); the base loss runs at its registry defaults.

    Args:
        logits: float tensor ``(N, C)``.
        target: int tensor ``(N,)`` of class ids in ``[0, C)``.
        strategy: ``"linupper"``, ``"quadratic"`` or ``"extremes"``.
        delta: half-width of the normalised range, in ``(0, inf)``.
        tau: softmax temperature in ``(0, inf)``.
        base: ``"ce"``, ``"focal"``, ``"gce"``, ``"sce"`` or ``"label_smoothing"``.
        reduction: ``"mean"`` (the weighted average) or ``"sum"`` (times the total weight).
        weight: optional non-negative sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        A scalar.

    Raises:
        ValueError: on bad inputs, ``reduction="none"`` or a bad hyper-parameter.

    References:
        [22] Sow et al., *Dynamic Loss-Based Sample Reweighting for Improved Large
        Language Model Pretraining*.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
        >>> loss_reweighting(logits, torch.tensor([0, 0, 0]), strategy="linupper")
        tensor(1.2768)
    """
    check_choice(base, "base", BASE_LOSSES)
    logits, target, weight = prepare(logits, target, weight, reduction, validate_args=validate_args,
                                     soft_target=False, reductions=_BATCH_REDUCTIONS)
    losses = base_per_sample_loss(logits, target, base)
    q = loss_reweighting_weights(losses, strategy=strategy, delta=delta, tau=tau, weight=weight)
    return _batch_scale((q * losses).sum(), reduction, weight, losses.shape[0])


@twin("loss", "kl_dro")
class KLDROLoss(LossModule):
    """Module twin of :func:`kl_dro_loss`."""

    function = kl_dro_loss
    name = "kl_dro"


@twin("loss", "loss_reweighting")
class LossReweightingLoss(LossModule):
    """Module twin of :func:`loss_reweighting`."""

    function = loss_reweighting
    name = "loss_reweighting"

