"""What every classification loss shares: edge validation and the thin module twin."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from losslab.core.registry import REGISTRY
from losslab.core.validation import (
    check_logits,
    check_reduction,
    check_target,
    check_weight,
    compute_dtype,
    fail,
)


def prepare(
    logits: Any,
    target: Any,
    weight: Any,
    reduction: Any,
    *,
    validate_args: bool = True,
    soft_target: bool = True,
    reductions: tuple[str, ...] = ("none", "mean", "sum"),
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Validate a loss's inputs once and cast half precision to float32.

    Returns ``(logits, target, weight)``: ``logits`` in the compute dtype,
    ``target`` as given (class ids) or cast like ``logits`` (probabilities).
    ``soft_target=False`` rejects ``(N, C)`` probability targets.
    """
    check_reduction(reduction, reductions)
    check_logits(logits, validate_args=validate_args)
    if not soft_target and isinstance(target, Tensor) and target.dtype.is_floating_point:
        raise ValueError(
            "Expected `target` to be an integer tensor of class ids of shape "
            f"({logits.shape[0]},), but got a floating tensor of shape {tuple(target.shape)}."
        )
    check_target(target, logits, validate_args=validate_args)
    check_weight(weight, logits.shape[0], validate_args=validate_args)
    dtype = compute_dtype(logits)
    logits = logits.to(dtype)
    if target.dtype.is_floating_point:
        target = target.to(dtype)
    return logits, target, weight


def check_reference_logits(ref_logits: object, logits: Tensor, *, validate_args: bool) -> Tensor:
    """A frozen reference model's ``ref_logits``: valid logits of ``logits``' shape (NPO, DPO, RPO)."""
    check_logits(ref_logits, "ref_logits", validate_args=validate_args)
    if tuple(ref_logits.shape) != tuple(logits.shape):
        fail("ref_logits", f"of shape {tuple(logits.shape)} like `logits`", f"shape {tuple(ref_logits.shape)}")
    return ref_logits


def target_log_prob(log_probs: Tensor, target: Tensor) -> Tensor:
    """``log p_y`` per sample, shape ``(N,)``; for probability targets, ``sum_k q_k log p_k``."""
    if target.dtype.is_floating_point:
        return (target * log_probs).sum(dim=-1)
    return log_probs.gather(1, target.long().unsqueeze(1)).squeeze(1)


def one_hot_like(target: Tensor, logits: Tensor) -> Tensor:
    """Class ids -> one-hot rows in ``logits``' dtype; probability targets pass through."""
    if target.dtype.is_floating_point:
        return target
    return torch.nn.functional.one_hot(target.long(), logits.shape[1]).to(logits.dtype)


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, accurate at both ends (Maechler, 2012).

    ``log(-expm1(x))`` is used for ``x > -log 2`` and ``log1p(-exp(x))`` below;
    each branch is fed a harmless value where it is not selected, so neither
    can put a NaN into the gradient. ``x = 0`` gives ``-inf``: callers keep it out.
    """
    near = x > -math.log(2.0)
    filler = torch.full_like(x, -1.0)
    near_value = torch.log(-torch.expm1(torch.where(near, x, filler)))
    far_value = torch.log1p(-torch.exp(torch.where(near, filler, x)))
    return torch.where(near, near_value, far_value)


def tempered_logsumexp(x: Tensor, temperature: float, dim: int = -1) -> Tensor:
    r"""``t * logsumexp(x / t)`` along ``dim``, at any temperature ``t > 0``.

    Computed as :math:`m + t \log \sum_k e^{(x_k - m)/t}` with :math:`m = \max_k x_k`,
    so neither a small ``t`` nor large ``x`` overflows. Below the dtype's smallest
    normal number ``t`` would round to 0 inside the division (0/0); the ``t -> 0``
    limit :math:`\max_k x_k` is exact to working precision there and is returned,
    with the gradient split evenly over tied maxima.
    """
    if temperature < torch.finfo(x.dtype).tiny:
        return x.amax(dim=dim)
    m = x.amax(dim=dim, keepdim=True).detach()
    return m.squeeze(dim) + temperature * torch.logsumexp((x - m) / temperature, dim=dim)


class LossModule(nn.Module):
    """Thin ``nn.Module`` twin of a loss function.

    Subclasses set ``function`` and ``name`` (the registry name) and inherit
    everything else: ``__init__`` validates the hyper-parameters against the
    registry entry and fills defaults, and ``forward`` calls the function with
    them, so module and function cannot disagree.
    """

    function: ClassVar[Any]
    name: ClassVar[str]

    def __init__(self, *, reduction: str = "mean", validate_args: bool = True, **hyper: Any) -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction = reduction
        self.validate_args = validate_args
        self.hyper = REGISTRY.get("loss", type(self).name).resolve(hyper)

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        fn = type(self).function
        return fn(logits, target, reduction=self.reduction, weight=weight,
                  validate_args=self.validate_args, **self.hyper)

    def extra_repr(self) -> str:
        items = {**self.hyper, "reduction": self.reduction}
        return ", ".join(f"{k}={v!r}" for k, v in items.items())
