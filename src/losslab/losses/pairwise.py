"""Pairwise softmax loss (PSL): softmax loss with the exponential of each pairwise gap replaced."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from losslab.core.reduction import reduce_loss
from losslab.core.registry import choice, real, register, twin
from losslab.core.validation import check_choice, check_number
from losslab.losses._base import LossModule, prepare

PSL_ACTIVATIONS = ("tanh", "atan", "relu", "exp")


def _log_activation(d: Tensor, activation: str) -> Tensor:
    """``log sigma(d)`` for the PSL activations; ``-inf`` where ``sigma(d) <= 0``.

    ``log(tanh(d) + 1) = log 2 + logsigmoid(2 d)`` is exact and stable for any
    ``d``. ``relu(d + 1)`` and ``atan(d) + 1`` reach 0 at ``d = -1`` and
    ``d = -tan 1``; below that the pair contributes nothing (``-inf``), and the
    branch is fed a harmless value there so no NaN reaches the gradient.
    """
    if activation == "exp":
        return d
    if activation == "tanh":
        return math.log(2.0) + F.logsigmoid(2.0 * d)
    inner = F.relu(d + 1.0) if activation == "relu" else torch.atan(d) + 1.0
    positive = inner > 0
    safe = torch.where(positive, inner, torch.ones_like(inner)).log()
    return torch.where(positive, safe, torch.full_like(safe, -math.inf))


@register("loss", "pairwise_softmax", family="ranking", papers=(150,),
          hyper={"activation": choice("tanh", PSL_ACTIVATIONS, doc="sigma replacing exp on the gaps"),
                 "tau": real(1.0, 1e-3, None, doc="temperature: sigma(d)^(1/tau)")})
def pairwise_softmax(
    logits: Tensor,
    target: Tensor,
    *,
    activation: str = "tanh",
    tau: float = 1.0,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Pairwise softmax loss: softmax loss with :math:`e^{d}` replaced by a slower activation.

    Use it where false negatives are common (implicit feedback, noisy
    multi-class labels) or where a tighter surrogate of DCG is wanted: the
    activations grow more slowly than :math:`e^{d}` for a large gap :math:`d`, so
    a single negative scored far above the positive cannot dominate the loss.

    .. math::
        \ell(z, y) = \log \sum_{j} \sigma(d_j)^{1/\tau}
                   = \operatorname{logsumexp}_j \frac{\log \sigma(d_j)}{\tau},
        \qquad d_j = z_j - z_y

    with :math:`\sigma \in \{\tanh(d) + 1,\ \arctan(d) + 1,\ \operatorname{relu}(d + 1)\}`
    as in [150] (its released code offers these three), and :math:`\sigma = \exp`
    for the softmax loss, for which :math:`\ell` is exactly the cross-entropy of
    :math:`z / \tau`. The sum runs over all classes, the positive included: every
    :math:`\sigma` has :math:`\sigma(0) = 1`, so the positive adds the same 1 that
    cross-entropy's denominator holds. [150] applies :math:`\sigma` to gaps of
    cosine scores in :math:`[-1, 1]`; for unbounded logits, :math:`\sigma` is
    taken as 0 where it would be non-positive (``relu`` below :math:`d = -1`,
    ``atan`` below :math:`-\tan 1`), so those negatives drop out.

    Args:
        logits: float tensor ``(N, C)``; class :math:`y` is the positive, the others negatives.
        target: int tensor ``(N,)`` of class ids in ``[0, C)``.
        activation: ``"tanh"``, ``"atan"``, ``"relu"`` or ``"exp"`` (softmax loss).
        tau: temperature in ``[1e-3, inf)``; the loss grows like ``1/tau``, so smaller
            values only overflow.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: on bad inputs, probability targets, an unknown ``activation`` or ``tau < 1e-3``.

    References:
        [150] Yang et al., *PSL: Rethinking and Improving Softmax Loss from Pairwise
        Perspective for Recommendation*, NeurIPS 2024.

    Example:
        >>> pairwise_softmax(torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0]), activation="tanh")
        tensor(0.0401)
    """
    check_choice(activation, "activation", PSL_ACTIVATIONS)
    check_number(tau, "tau", low=1e-3)
    logits, target, weight = prepare(logits, target, weight, reduction,
                                     validate_args=validate_args, soft_target=False)
    gaps = logits - logits.gather(1, target.long().unsqueeze(1))
    per_sample = torch.logsumexp(_log_activation(gaps, activation) / tau, dim=1)
    return reduce_loss(per_sample, reduction, weight)


@twin("loss", "pairwise_softmax")
class PairwiseSoftmaxLoss(LossModule):
    """Module twin of :func:`pairwise_softmax`."""

    function = pairwise_softmax
    name = "pairwise_softmax"
