"""Preference optimisation against a frozen reference: DPO with its regularizers, and RPO.

Two entry points share one formula. :func:`preference_loss_from_logps` takes
per-example log-probabilities ``(N,)`` (a sequence model's summed token
log-probs, the form LLM training loops have); :func:`dpo_loss` and
:func:`rpo_loss` take the classification contract — ``logits (N, C)`` over
``C`` candidate responses, the ``chosen`` and ``rejected`` response ids
``(N,)`` and the reference model's ``ref_logits (N, C)`` — and read
:math:`\\log \\pi(y \\mid x)` off ``log_softmax(logits)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from losslab.core.reduction import reduce_loss
from losslab.core.registry import real, register, twin
from losslab.core.validation import (
    check_class_target,
    check_finite,
    check_floating,
    check_logits,
    check_nonempty,
    check_number,
    check_rank,
    check_reduction,
    check_weight,
    compute_dtype,
    fail,
)
from losslab.losses._base import LossModule, check_reference_logits, target_log_prob

_BETA = real(0.1, 0.0, None, low_open=True, doc="inverse temperature of the chosen log-ratio (KL strength)")
_BETA_REJECTED = real(None, 0.0, None, low_open=True,
                      doc="inverse temperature of the rejected log-ratio; unset: equal to beta")
_ETA = real(1.0, 0.0, None, doc="weight of the SFT (NLL) term on the chosen response; 0 gives DPO")
_TAGS = ("preference", "reference")


def _check_hyper(beta: float, beta_rejected: float | None, sft_weight: float, sft_name: str) -> float:
    check_number(beta, "beta", low=0.0, low_open=True)
    if beta_rejected is not None:
        check_number(beta_rejected, "beta_rejected", low=0.0, low_open=True)
    check_number(sft_weight, sft_name, low=0.0)
    return float(beta if beta_rejected is None else beta_rejected)


def _per_example(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
                 beta: float, beta_rejected: float, sft_weight: float) -> Tensor:
    """``softplus(-margin) + sft_weight * (-log pi(y_w))`` per example; references enter detached."""
    margin = beta * (policy_chosen - ref_chosen.detach()) - beta_rejected * (policy_rejected - ref_rejected.detach())
    # -log sigmoid(m) = softplus(-m): finite for any margin, unlike log(sigmoid(m)).
    loss = F.softplus(-margin)
    if sft_weight:
        loss = loss - sft_weight * policy_chosen
    return loss


def preference_loss_from_logps(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    *,
    beta: float = 0.1,
    beta_rejected: float | None = None,
    sft_weight: float = 0.0,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""DPO / RPO from per-example log-probabilities, the form a sequence model gives.

    The same loss as :func:`dpo_loss` (``sft_weight=0``) and :func:`rpo_loss`
    (``sft_weight=eta``), for callers that already hold
    :math:`\log \pi(y \mid x)` per example — for a language model, the sum of the
    response's token log-probabilities (pass their mean for a length-normalised
    variant). Formula and references: see :func:`dpo_loss` and :func:`rpo_loss`.

    Args:
        policy_chosen: float tensor ``(N,)``, :math:`\log \pi_\theta(y_w \mid x)`.
        policy_rejected: float tensor ``(N,)``, :math:`\log \pi_\theta(y_l \mid x)`.
        ref_chosen: float tensor ``(N,)``, :math:`\log \pi_{\mathrm{ref}}(y_w \mid x)`; detached.
        ref_rejected: float tensor ``(N,)``, :math:`\log \pi_{\mathrm{ref}}(y_l \mid x)`; detached.
        beta: :math:`\beta > 0`.
        beta_rejected: :math:`\beta_l > 0` for the rejected log-ratio; ``None`` uses ``beta``.
        sft_weight: :math:`\eta \ge 0`, weight of :math:`-\log \pi_\theta(y_w \mid x)`.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-example weights ``(N,)``.
        validate_args: check finiteness.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: naming the argument, on a non-floating, non-1-D, empty, mismatched or
            non-finite input, or ``beta``/``beta_rejected`` <= 0 or ``sft_weight`` < 0.

    References:
        [229] Yan et al., *3D-Properties: Identifying Challenges in DPO and Charting a Path Forward*.
        [4] Liu et al., *Provably Mitigating Overoptimization in RLHF: Your SFT Loss is Implicitly
        an Adversarial Regularizer*.

    Example:
        >>> lp = torch.tensor([-3.0, -5.0])
        >>> preference_loss_from_logps(lp, lp, lp, lp)  # pi = pi_ref: log 2
        tensor(0.6931)
    """
    beta_l = _check_hyper(beta, beta_rejected, sft_weight, "sft_weight")
    check_reduction(reduction)
    named = {"policy_chosen": policy_chosen, "policy_rejected": policy_rejected,
             "ref_chosen": ref_chosen, "ref_rejected": ref_rejected}
    for name, x in named.items():
        check_floating(x, name)
        check_rank(x, 1, name)
        check_nonempty(x, name)
        if x.shape != policy_chosen.shape:
            fail(name, f"of shape {tuple(policy_chosen.shape)} like `policy_chosen`", f"shape {tuple(x.shape)}")
        if validate_args:
            check_finite(x, name)
    check_weight(weight, policy_chosen.shape[0], validate_args=validate_args)
    dtype = compute_dtype(policy_chosen)
    pc, pr, rc, rr = (x.to(dtype) for x in named.values())
    return reduce_loss(_per_example(pc, pr, rc, rr, float(beta), beta_l, float(sft_weight)), reduction, weight)


def _from_logits(logits: Any, chosen: Any, rejected: Any, ref_logits: Any, beta: float, beta_rejected: float | None,
                 sft_weight: float, sft_name: str, reduction: str, weight: Any, validate_args: bool) -> Tensor:
    beta_l = _check_hyper(beta, beta_rejected, sft_weight, sft_name)
    check_reduction(reduction)
    check_logits(logits, validate_args=validate_args)
    n, c = logits.shape
    check_class_target(chosen, c, n, "chosen", validate_args=validate_args)
    check_class_target(rejected, c, n, "rejected", validate_args=validate_args)
    check_reference_logits(ref_logits, logits, validate_args=validate_args)
    check_weight(weight, n, validate_args=validate_args)
    dtype = compute_dtype(logits)
    log_p = torch.log_softmax(logits.to(dtype), dim=-1)
    log_ref = torch.log_softmax(ref_logits.detach().to(dtype), dim=-1)
    per = _per_example(target_log_prob(log_p, chosen), target_log_prob(log_p, rejected),
                       target_log_prob(log_ref, chosen), target_log_prob(log_ref, rejected),
                       float(beta), beta_l, float(sft_weight))
    return reduce_loss(per, reduction, weight)


@register("loss", "dpo", family="preference", papers=(229,), tags=_TAGS,
          hyper={"beta": _BETA, "beta_rejected": _BETA_REJECTED})
def dpo_loss(
    logits: Tensor,
    chosen: Tensor,
    rejected: Tensor,
    ref_logits: Tensor,
    *,
    beta: float = 0.1,
    beta_rejected: float | None = None,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Direct preference optimisation, with a separate inverse temperature for the rejected response.

    Use it to fit a policy to pairwise preferences ``chosen`` :math:`\succ`
    ``rejected`` without a reward model, staying close to a frozen reference.
    Here the policy is a categorical distribution over ``C`` candidate responses
    (a tabular or classifier policy); for sequence models use
    :func:`preference_loss_from_logps`.

    .. math::
        \ell = -\log \sigma\big(\beta\, r_w - \beta_l\, r_l\big)
             = \operatorname{softplus}\big(\beta_l\, r_l - \beta\, r_w\big),
        \qquad r_y = \log \pi_\theta(y \mid x) - \log \pi_{\mathrm{ref}}(y \mid x)

    computed with softplus, so it is finite for any margin; at
    :math:`\pi_\theta = \pi_{\mathrm{ref}}` it is :math:`\log 2`, and it tends to
    :math:`\log 2` as :math:`\beta, \beta_l \to 0`. ``beta_rejected=None`` means
    :math:`\beta_l = \beta`, plain DPO. ``ref_logits`` are detached.

    [229] names three pathologies of DPO — a *drastic drop* of the rejected
    likelihood, *degradation* into unlearning (the chosen likelihood falls too)
    and *dispersion* of mass onto responses absent from the data — and proposes
    simple regularizers; its abstract does not spell them out. This function
    implements the one that changes the DPO term itself, a separate
    :math:`\beta_l` on the rejected log-ratio; the other, an SFT term on
    :math:`y_w`, is :func:`rpo_loss`. The gradient is
    :math:`-\sigma(-m)\,(\beta \nabla \log \pi_\theta(y_w) - \beta_l \nabla \log \pi_\theta(y_l))`,
    so :math:`\beta_l < \beta` leans the update toward raising :math:`y_w`
    rather than pushing :math:`y_l` down; in the toy bandit of
    ``tests/reproductions/test_repro_preference.py`` that curbs the rejected
    drop and the dispersion, and :math:`\beta_l > \beta` worsens both. We are
    unsure of the exact form and value used in [229]: ``beta_rejected`` is a
    free setting, not a claim about that paper's recommendation.

    ``chosen == rejected`` is allowed (the margin is then :math:`(\beta-\beta_l) r_y`,
    0 for plain DPO); it is not checked.

    Args:
        logits: float tensor ``(N, C)`` of the policy, one row per prompt.
        chosen: int tensor ``(N,)`` of preferred response ids in ``[0, C)``.
        rejected: int tensor ``(N,)`` of dispreferred response ids in ``[0, C)``.
        ref_logits: float tensor ``(N, C)`` of the frozen reference policy.
        beta: :math:`\beta > 0`.
        beta_rejected: :math:`\beta_l > 0`, or ``None`` for :math:`\beta`.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-example weights ``(N,)``.
        validate_args: check finiteness and id ranges.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: naming the argument, on bad logits, ids out of range or of the wrong shape,
            mismatched ``ref_logits``, or ``beta``/``beta_rejected`` <= 0.

    References:
        [229] Yan et al., *3D-Properties: Identifying Challenges in DPO and Charting a Path Forward*,
        arXiv:2406.07327.

    Example:
        >>> logits = torch.tensor([[1.0, 0.0, -1.0]])
        >>> dpo_loss(logits, torch.tensor([0]), torch.tensor([1]), logits)  # pi = pi_ref: log 2
        tensor(0.6931)
    """
    return _from_logits(logits, chosen, rejected, ref_logits, beta, beta_rejected, 0.0, "eta",
                        reduction, weight, validate_args)


@register("loss", "rpo", family="preference", papers=(4,), tags=_TAGS,
          hyper={"beta": _BETA, "beta_rejected": _BETA_REJECTED, "eta": _ETA})
def rpo_loss(
    logits: Tensor,
    chosen: Tensor,
    rejected: Tensor,
    ref_logits: Tensor,
    *,
    beta: float = 0.1,
    beta_rejected: float | None = None,
    eta: float = 1.0,
    reduction: str = "mean",
    weight: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Regularized preference optimisation: DPO plus an SFT (negative log-likelihood) term on the chosen response.

    Use it instead of :func:`dpo_loss` when the preference data cover few
    responses: DPO alone can lower :math:`\pi(y_w)` too and move mass to
    responses the data never show (overoptimisation); the SFT term keeps the
    policy on the chosen responses. [4] derives it as the practical form of an
    adversarial reward penalty, with the chosen responses as the baseline
    distribution.

    .. math::
        \ell = \operatorname{softplus}\big(\beta_l\, r_l - \beta\, r_w\big)
               + \eta\,\big(-\log \pi_\theta(y_w \mid x)\big),
        \qquad r_y = \log \pi_\theta(y \mid x) - \log \pi_{\mathrm{ref}}(y \mid x)

    ``eta=0`` is :func:`dpo_loss` exactly. Where the SFT weight is written
    :math:`\eta\beta` (as a multiple of the DPO temperature), pass that product
    as ``eta``. This is also [229]'s SFT regularizer on :math:`y_w`.

    Args:
        logits: float tensor ``(N, C)`` of the policy.
        chosen: int tensor ``(N,)`` of preferred response ids in ``[0, C)``.
        rejected: int tensor ``(N,)`` of dispreferred response ids in ``[0, C)``.
        ref_logits: float tensor ``(N, C)`` of the frozen reference policy (detached).
        beta: :math:`\beta > 0`.
        beta_rejected: :math:`\beta_l > 0`, or ``None`` for :math:`\beta`.
        eta: :math:`\eta \ge 0`, the SFT weight.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional non-negative per-example weights ``(N,)``.
        validate_args: check finiteness and id ranges.

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar.

    Raises:
        ValueError: naming the argument, as :func:`dpo_loss`, or on ``eta < 0``.

    References:
        [4] Liu et al., *Provably Mitigating Overoptimization in RLHF: Your SFT Loss is Implicitly
        an Adversarial Regularizer*, arXiv:2405.16436.

    Example:
        >>> logits = torch.tensor([[0.0, 0.0]])
        >>> rpo_loss(logits, torch.tensor([0]), torch.tensor([1]), logits, eta=1.0)  # log 2 + log 2
        tensor(1.3863)
    """
    return _from_logits(logits, chosen, rejected, ref_logits, beta, beta_rejected, eta, "eta",
                        reduction, weight, validate_args)


class _PreferenceModule(LossModule):
    """Twin whose ``forward`` takes ``(logits, chosen, rejected, ref_logits, weight=None)``."""

    def forward(self, logits: Tensor, chosen: Tensor, rejected: Tensor, ref_logits: Tensor,  # type: ignore[override]
                weight: Tensor | None = None) -> Tensor:
        return type(self).function(logits, chosen, rejected, ref_logits, reduction=self.reduction, weight=weight,
                                   validate_args=self.validate_args, **self.hyper)


@twin("loss", "dpo")
class DPOLoss(_PreferenceModule):
    """Module twin of :func:`dpo_loss`; ``forward(logits, chosen, rejected, ref_logits, weight=None)``."""

    function = dpo_loss
    name = "dpo"


@twin("loss", "rpo")
class RPOLoss(_PreferenceModule):
    """Module twin of :func:`rpo_loss`; ``forward(logits, chosen, rejected, ref_logits, weight=None)``."""

    function = rpo_loss
    name = "rpo"
