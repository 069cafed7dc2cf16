"""What every distillation term shares: edge validation, small log-space pieces and the twin base."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from losslab.core.terms import TermModule
from losslab.core.validation import (
    check_class_target,
    check_logits,
    check_number,
    check_reduction,
    check_weight,
    compute_dtype,
)
from losslab.distill._teacher import check_teacher_logits


def prepare(
    logits: Any,
    target: Any,
    teacher_logits: Any,
    weight: Any,
    reduction: Any,
    *,
    validate_args: bool = True,
    need_target: bool = True,
    need_teacher: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Validate a distillation term's inputs once; cast half precision (student and teacher) to float32.

    ``target`` must be class ids ``(N,)`` when ``need_target``; otherwise it is
    ignored (label-free terms) and returned as ``None``. ``teacher_logits`` is
    ``(N, C)`` or ``(K, N, C)`` and comes back in the student's compute dtype.
    """
    check_reduction(reduction)
    check_logits(logits, validate_args=validate_args)
    n, c = logits.shape
    if need_target:
        check_class_target(target, c, n, validate_args=validate_args)
    else:
        target = None
    if need_teacher:
        check_teacher_logits(teacher_logits, n, c, validate_args=validate_args)
    check_weight(weight, n, validate_args=validate_args)
    dtype = compute_dtype(logits)
    teacher = teacher_logits.to(dtype) if need_teacher else None
    return logits.to(dtype), target, teacher, weight


# Below this a softened distribution is one-hot at working precision and z / T overflows
# (the registry fuzzing found NaN at T = 5e-324); the papers use T between 0.04 and 20.
MIN_TEMPERATURE = 1e-2


def check_temperature(value: Any, name: str = "temperature") -> float:
    return check_number(value, name, low=MIN_TEMPERATURE)


def check_unit(value: Any, name: str) -> float:
    return check_number(value, name, low=0.0, high=1.0)


def check_nonneg(value: Any, name: str) -> float:
    return check_number(value, name, low=0.0)


def soft_cross_entropy(log_q: Tensor, p: Tensor) -> Tensor:
    """``-sum_k p_k log q_k`` per row; rows of ``p`` may hold exact zeros."""
    return -(p * log_q).sum(dim=-1)


def kl_from_log(log_p: Tensor, log_q: Tensor) -> Tensor:
    """``KL(p || q)`` per row from log-probabilities; classes with ``p_k = 0`` contribute 0 exactly."""
    p = log_p.exp()
    neg_entropy = torch.where(p > 0, p * log_p, torch.zeros_like(p))
    return neg_entropy.sum(dim=-1) - (p * log_q).sum(dim=-1)


def gather_class(x: Tensor, target: Tensor) -> Tensor:
    """``x[i, target_i]``, shape ``(N,)``."""
    return x.gather(1, target.long().unsqueeze(1)).squeeze(1)


def non_target(x: Tensor, target: Tensor) -> Tensor:
    """The ``C - 1`` non-target columns of ``x`` ``(N, C)`` in class order, shape ``(N, C - 1)``."""
    n, c = x.shape
    keep = torch.ones(n, c, dtype=torch.bool, device=x.device)
    keep[torch.arange(n, device=x.device), target.long()] = False
    return x[keep].reshape(n, c - 1)


class DistillTerm(TermModule):
    """Twin base for ``kind="distill"``: hyper-parameters validated against the registry at ``__init__``."""

    kind: ClassVar[str] = "distill"
