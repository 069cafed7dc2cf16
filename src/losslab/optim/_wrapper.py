"""What every ``wraps`` optimizer shares: it lives on a base optimizer's groups and saves both states."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from losslab.core.validation import fail

Closure = Callable[[], Tensor]


def require_closure(closure: Any) -> Closure:
    """The wrappers that re-evaluate the loss cannot run without a closure."""
    if not callable(closure):
        fail("closure", "a callable that zeroes the gradients, runs forward and backward and returns the loss",
             type(closure).__name__)
    return closure


def run_closure(closure: Closure) -> Tensor:
    """Call ``closure`` with autograd on (``step`` itself runs under ``no_grad``)."""
    with torch.enable_grad():
        return closure()


def params_with_grad(groups: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], Tensor]]:
    """``(group, param)`` for every parameter that received a gradient."""
    return [(g, p) for g in groups for p in g["params"] if p.grad is not None]


def weight_matrices(groups: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], Tensor]]:
    """``(group, param)`` for every parameter with ``ndim >= 2`` (Linear/Conv weights), each once: what the
    compression wrappers prune or quantize; biases and norm scales are left alone."""
    seen: set[int] = set()
    out = []
    for g in groups:
        for p in g["params"]:
            if p.ndim >= 2 and id(p) not in seen:
                seen.add(id(p))
                out.append((g, p))
    return out


def require_weight_matrices(groups: Iterable[dict[str, Any]]) -> None:
    if not weight_matrices(groups):
        fail("base_optimizer", "an optimizer over at least one parameter with ndim >= 2 (a Linear or Conv "
             "weight)", "only parameters with ndim <= 1")


class WrappedOptimizer(torch.optim.Optimizer):
    """An optimizer that edits gradients (or weights) around ``base_optimizer.step()``.

    It shares the base optimizer's ``param_groups`` (the wrapper's hyper-parameters
    are added to each group as defaults, so they travel with ``state_dict``) and
    keeps its own per-parameter ``state`` apart from the base's, because optimizers
    such as ``torch.optim.Adam`` initialise a parameter's state only when it is empty.
    ``state_dict()`` is ``{"base": ..., "wrapper": ...}``.
    """

    def __init__(self, base_optimizer: torch.optim.Optimizer, defaults: dict[str, Any]) -> None:
        if not isinstance(base_optimizer, torch.optim.Optimizer):
            fail("base_optimizer", "a torch.optim.Optimizer instance", type(base_optimizer).__name__)
        self.base_optimizer = base_optimizer
        super().__init__(base_optimizer.param_groups, defaults)
        # The same list object, so a group added to the base later is seen here too.
        self.param_groups = base_optimizer.param_groups

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base_optimizer.state_dict(), "wrapper": super().state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict) or set(state_dict) != {"base", "wrapper"}:
            fail("state_dict", "a dict with keys 'base' and 'wrapper' (from this wrapper's state_dict())",
                 type(state_dict).__name__ if not isinstance(state_dict, dict) else sorted(state_dict))
        self.base_optimizer.load_state_dict(state_dict["base"])
        super().load_state_dict(state_dict["wrapper"])
        self.param_groups = self.base_optimizer.param_groups
