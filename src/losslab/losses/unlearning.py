"""Unlearning objectives on a forget set: negative preference optimization (NPO)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losslab.core.reduction import reduce_loss
from losslab.core.registry import real, register, twin
from losslab.core.validation import check_number, check_reduction
from losslab.losses._base import check_reference_logits, prepare, target_log_prob


@register("loss", "npo", family="unlearning", papers=(272,), tags=("reference",),
          hyper={"beta": real(0.1, 1e-9, None, doc="inverse temperature of the log-ratio")})
def npo_loss(
    logits: Tensor,
    target: Tensor,
    ref_logits: Tensor,
    *,
    beta: float = 0.1,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Negative preference optimization: a bounded, slowly collapsing replacement for gradient ascent.

    Use it to unlearn a forget set: minimising it lowers
    :math:`\pi_\theta(y \mid x)` on the forget samples like gradient ascent (GA)
    on the cross-entropy, but the push fades once :math:`\pi_\theta` falls below the
    frozen reference :math:`\pi_{\mathrm{ref}}`, so the model drifts toward collapse
    exponentially more slowly than under GA.

    .. math::
        \ell = \frac{2}{\beta} \log\Big(1 + \Big(\frac{\pi_\theta(y\mid x)}
                                                      {\pi_{\mathrm{ref}}(y\mid x)}\Big)^{\beta}\Big)
             = \frac{2}{\beta} \operatorname{softplus}\big(\beta\, r\big),
        \qquad r = \log \pi_\theta(y\mid x) - \log \pi_{\mathrm{ref}}(y\mid x)

    computed from log-softmaxes, so it is finite for any ratio. Its gradient is
    :math:`2\,\sigma\big(\beta \log\tfrac{\pi_\theta}{\pi_{\mathrm{ref}}}\big)\,
    \nabla_\theta \log \pi_\theta(y \mid x)`: an adaptive weight in :math:`(0, 2)` times
    the GA gradient (the gradient of :math:`\log \pi_\theta`, i.e. of minus the
    cross-entropy); as :math:`\beta \to 0` the weight tends to 1 and NPO's
    gradient to GA's. ``ref_logits`` are detached. :math:`\beta = 0.1` is the value
    used in [272]'s TOFU experiments. Retain-set terms (NPO+RT) are a separate
    cross-entropy the caller adds.

    Args:
        logits: float tensor ``(N, C)`` of the model being unlearned.
        target: int tensor ``(N,)`` of the forget labels (or tokens) in ``[0, C)``.
        ref_logits: float tensor ``(N, C)`` of the frozen reference model.
        beta: :math:`\beta` in ``[1e-9, inf)``; the loss grows like ``2 log(2) / beta``
            as ``beta -> 0``, so smaller values only overflow.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-sample weights ``(N,)``.
        validate_args: check finiteness and label range.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: on bad inputs, mismatched ``ref_logits`` or ``beta < 1e-9``.

    References:
        [272] Zhang, Lin, Bai & Mei, *Negative Preference Optimization: From Catastrophic
        Collapse to Effective Unlearning*, arXiv:2404.05868.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, -1.0]])
        >>> npo_loss(logits, torch.tensor([0]), logits, beta=0.1)  # at pi = pi_ref: (2/beta) log 2
        tensor(13.8629)
    """
    check_number(beta, "beta", low=1e-9)
    logits, target, weight = prepare(logits, target, weight, reduction,
                                     validate_args=validate_args, soft_target=False)
    ref = check_reference_logits(ref_logits, logits, validate_args=validate_args).detach().to(logits.dtype)
    log_ratio = target_log_prob(torch.log_softmax(logits, dim=-1), target) \
        - target_log_prob(torch.log_softmax(ref, dim=-1), target)
    return reduce_loss(2.0 / beta * F.softplus(beta * log_ratio), reduction, weight)


@twin("loss", "npo")
class NPOLoss(nn.Module):
    """Module twin of :func:`npo_loss`; ``forward(logits, target, ref_logits, weight=None)``."""

    def __init__(self, *, beta: float = 0.1, reduction: str = "mean", validate_args: bool = True) -> None:
        super().__init__()
        check_number(beta, "beta", low=1e-9)
        check_reduction(reduction)
        self.beta = float(beta)
        self.reduction = reduction
        self.validate_args = validate_args

    def forward(self, logits: Tensor, target: Tensor, ref_logits: Tensor,
                weight: Tensor | None = None) -> Tensor:
        return npo_loss(logits, target, ref_logits, beta=self.beta, reduction=self.reduction,
                        weight=weight, validate_args=self.validate_args)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, reduction={self.reduction!r}"
