"""Spherical-family losses: functions of ``sum(o)``, ``sum(o**2)`` and ``o_y`` only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from losslab.core.reduction import reduce_loss
from losslab.core.registry import real, register, twin
from losslab.core.validation import check_number
from losslab.losses._base import LossModule, prepare


@register("loss", "z_loss", family="spherical", papers=(14,),
          hyper={"a": real(1.0, 1e-6, None, doc="sharpness of the softplus"),
                 "b": real(3.0, doc="target z-score at which the loss flattens")})
def z_loss(
    logits: Tensor,
    target: Tensor,
    *,
    a: float = 1.0,
    b: float = 3.0,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Z-loss: a softplus of the standardised target logit.

    Use it when only the ranking of the logits should matter (top-k metrics):
    the loss is invariant to shifting and to positively scaling the logits, and
    it belongs to the spherical family, whose output-layer gradient can be
    computed in time independent of the number of classes.

    .. math::
        \ell(o, y) = \frac{1}{a}\operatorname{softplus}\big(a\,(b - z_y)\big),
        \qquad z_y = \frac{o_y - \mu}{\sigma},\quad
        \mu = \frac{1}{C}\sum_k o_k,\quad \sigma^2 = \frac{1}{C}\sum_k o_k^2 - \mu^2

    with the population standard deviation over the :math:`C` logits (the
    paper's definition), so :math:`z_y \le \sqrt{C - 1}`. When all logits of a
    row are (nearly) equal, :math:`\sigma^2` is floored at ``(eps * max|o|)**2``
    plus the dtype's smallest normal number, so the loss stays finite (and equals
    :math:`\operatorname{softplus}(ab)/a`); the floor scales with the logits and
    is far below any real spread, so both invariances hold up to rounding.

    :math:`a` sets the sharpness and :math:`b` where the loss stops pushing
    :math:`z_y` up. The paper tunes both per task; the defaults here
    (:math:`a = 1, b = 3`) are losslab's, chosen so the loss keeps pushing until
    the target is three standard deviations above the mean logit, which is
    reachable for :math:`C \ge 10`.

    Not to be confused with the PaLM "z-loss", the auxiliary penalty
    :math:`10^{-4} \log^2 Z` on the softmax normaliser; that is a regulariser,
    unrelated to this loss.

    Args:
        logits: float tensor of shape ``(N, C)``, unnormalised scores :math:`o`.
        target: int tensor ``(N,)`` of class ids in ``[0, C)``.
        a: sharpness in ``[1e-6, inf)``; as ``a -> 0`` the loss only adds ``log(2)/a``,
            which overflows.
        b: target z-score (any real).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: on bad inputs, probability targets, or ``a < 1e-6``.

    References:
        [14] de Brebisson & Vincent, *The Z-loss: a shift and scale invariant
        classification loss belonging to the Spherical Family*, arXiv:1604.08859, 2016.

    Example:
        >>> z_loss(torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0]), a=1.0, b=3.0)
        tensor(1.8372)
    """
    check_number(a, "a", low=1e-6)
    check_number(b, "b")
    logits, target, weight = prepare(logits, target, weight, reduction,
                                     validate_args=validate_args, soft_target=False)
    centered = logits - logits.mean(dim=-1, keepdim=True)
    finfo = torch.finfo(logits.dtype)
    floor = (finfo.eps * logits.detach().abs().amax(dim=-1, keepdim=True)).square() + finfo.tiny
    sigma = centered.square().mean(dim=-1, keepdim=True).clamp_min(floor).sqrt()
    z_y = (centered / sigma).gather(1, target.long().unsqueeze(1)).squeeze(1)
    return reduce_loss(F.softplus(a * (b - z_y)) / a, reduction, weight)


@twin("loss", "z_loss")
class ZLoss(LossModule):
    """Module twin of :func:`z_loss`."""

    function = z_loss
    name = "z_loss"
