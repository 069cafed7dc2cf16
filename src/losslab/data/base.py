"""The data contract shared by datasets, conditions and the engine.

A dataset builder returns a :class:`SplitData`: tensors for a train and a test
split. A condition (label noise, imbalance, bags, ...) takes a ``SplitData``
and a ``torch.Generator`` and returns a *new* ``SplitData`` whose ``records``
say exactly what it changed. Train-side conditions never touch the test
split, so every condition is judged on clean test labels; shift conditions
(``losslab.data.conditions.shift``) touch only the test split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class ConditionRecord:
    """What one condition changed, kept with the run.

    ``changed`` holds tensors indexed like the *current* train split, e.g. a
    boolean ``noise_mask`` of shape ``(N_train,)``, ``kept_index`` into the
    previous train split, or ``bag`` ids (shift conditions: like the test split,
    e.g. ``kept_test_index``). ``summary`` holds JSON-able numbers
    (realised noise rate, class counts) that the store keeps.
    """

    name: str
    params: dict[str, Any]
    changed: dict[str, Tensor] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SplitData:
    """A classification dataset: train and test tensors plus provenance.

    Shapes: ``x_train (N, *input_shape)``, ``y_train (N,)`` int64 (possibly
    corrupted by conditions), ``y_train_clean (N,)`` the labels before any
    condition, ``x_test (M, *input_shape)``, ``y_test (M,)``. ``bags`` is an
    optional ``(N,)`` int64 bag id per train sample (label-proportion setups).
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    y_train_clean: Tensor | None = None
    bags: Tensor | None = None
    records: tuple[ConditionRecord, ...] = ()

    def __post_init__(self) -> None:
        if self.y_train_clean is None:
            object.__setattr__(self, "y_train_clean", self.y_train.clone())

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def input_dtype(self) -> torch.dtype:
        return self.x_train.dtype

    def replace(self, record: ConditionRecord, **changes: Any) -> "SplitData":
        """A copy with ``changes`` applied and ``record`` appended."""
        return dataclasses.replace(self, records=self.records + (record,), **changes)

    def subset_train(self, index: Tensor, record: ConditionRecord) -> "SplitData":
        """Keep train samples ``index`` (and their clean labels and bags)."""
        return self.replace(
            record,
            x_train=self.x_train[index],
            y_train=self.y_train[index],
            y_train_clean=self.y_train_clean[index],
            bags=None if self.bags is None else self.bags[index],
        )
