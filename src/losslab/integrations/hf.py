"""Hugging Face ``Trainer`` adapter: train any transformers model with a registered losslab loss.

``pip install 'losslab[hf]'``. :func:`losslab_loss_func` builds a callable for the
``Trainer``'s ``compute_loss_func`` argument; :class:`LosslabTrainer` is a ``Trainer`` that
takes the loss by name. Both apply the loss to ``outputs.logits`` against ``labels``:

- sequence classification: logits ``(N, C)``, labels ``(N,)``;
- token level: logits ``(N, T, V)``, labels ``(N, T)``, flattened to ``(N·T, V)``; positions
  labelled ``ignore_index`` (``-100``: padding, prompt tokens) are dropped before the loss.
  ``shift_labels=True`` scores position ``t`` against label ``t + 1`` (causal language models).

With gradient accumulation the ``Trainer`` passes ``num_items_in_batch``, the number of kept
labels over the accumulated batch; the loss is then ``Σ_kept ℓ_i / num_items_in_batch`` so the
accumulated gradient equals the full-batch mean (batch-level losses, which have no per-sample
terms, use ``mean · kept / num_items_in_batch``)::

    from losslab.integrations.hf import LosslabTrainer

    trainer = LosslabTrainer(model=model, args=args, train_dataset=ds,
                             loss={"name": "focal", "params": {"gamma": 2.0}})
    trainer.train()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from losslab.core.registry import REGISTRY
from losslab.core.validation import check_number, fail
from losslab.integrations._common import missing_extra

try:
    from transformers import Trainer
except ImportError:
    raise missing_extra("losslab.integrations.hf", "hf") from None

__all__ = ["LosslabLossFunc", "LosslabTrainer", "losslab_loss_func"]

# Losses whose inputs are not (logits, class ids): multi-hot targets, bags, a rejector, a
# reference model, hidden states, an embedding head, or binary margin scores.
_OTHER_INPUTS = frozenset({"multilabel", "bag", "regression", "rejector", "reference", "linear", "embedding",
                           "binary"})


def _usable_losses() -> list[str]:
    return [e.name for e in REGISTRY.entries("loss") if not (_OTHER_INPUTS & e.tags)]


class LosslabLossFunc:
    """A registered losslab loss as a ``compute_loss_func(outputs, labels, num_items_in_batch=None)``.

    Build it with :func:`losslab_loss_func`. Attributes: ``name``, ``params`` (resolved
    hyper-parameters), ``ignore_index``, ``shift_labels``.
    """

    def __init__(self, name: str, params: Mapping[str, Any], *, ignore_index: int, shift_labels: bool) -> None:
        entry = REGISTRY.get("loss", name)  # unknown names: ValueError with did-you-mean and the valid names
        if _OTHER_INPUTS & entry.tags:
            raise ValueError(f"Expected a loss on (logits, class ids) for the Trainer, but {name!r} takes "
                             f"{'/'.join(sorted(_OTHER_INPUTS & entry.tags))} inputs. Valid: "
                             f"{', '.join(_usable_losses())}.")
        self.name, self.params, self.fn = name, entry.resolve(params), entry.obj
        self.per_sample = "batch" not in entry.tags
        self.ignore_index = check_number(ignore_index, "ignore_index", integer=True)
        if not isinstance(shift_labels, bool):
            fail("shift_labels", "true or false", repr(shift_labels))
        self.shift_labels = shift_labels

    def __call__(self, outputs: Any, labels: Tensor | None, num_items_in_batch: Tensor | int | None = None) -> Tensor:
        """The loss of ``outputs.logits`` against ``labels`` (see the module docstring for shapes)."""
        if labels is None:
            raise ValueError(f"Expected `labels` in the batch for the losslab loss {self.name!r}, but got none.")
        logits, target = self._flatten(_logits(outputs), labels)
        keep = target != self.ignore_index
        logits, target = logits[keep], target[keep]
        if target.numel() == 0:  # every position ignored: no signal, but a graph so backward still works
            return logits.sum() * 0.0
        if num_items_in_batch is None:
            return self.fn(logits, target, **self.params)
        if self.per_sample:
            return self.fn(logits, target, reduction="sum", **self.params) / num_items_in_batch
        return self.fn(logits, target, **self.params) * (target.numel() / num_items_in_batch)

    def _flatten(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(labels, Tensor) or labels.dtype not in (torch.int64, torch.int32):
            got = labels.dtype if isinstance(labels, Tensor) else type(labels).__name__
            fail("labels", "an integer tensor of class ids", got)
        if logits.ndim not in (2, 3):
            fail("outputs.logits", "(N, C) or (N, T, V) logits", f"shape {tuple(logits.shape)}")
        if self.shift_labels:
            if logits.ndim != 3:
                fail("outputs.logits", "(N, T, V) token logits with shift_labels=True", f"shape {tuple(logits.shape)}")
            logits, labels = logits[:, :-1], labels[:, 1:]
        if tuple(labels.shape) != tuple(logits.shape[:-1]):
            fail("labels", f"shape {tuple(logits.shape[:-1])} to match the logits {tuple(logits.shape)}",
                 f"shape {tuple(labels.shape)}")
        return logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).long()

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"losslab_loss_func({self.name!r}{', ' + params if params else ''})"


def _logits(outputs: Any) -> Tensor:
    """``outputs.logits`` of a ModelOutput, a dict, a tuple (first item) or a bare tensor."""
    if isinstance(outputs, Tensor):
        return outputs
    if isinstance(outputs, Mapping) and "logits" in outputs:
        return outputs["logits"]
    logits = getattr(outputs, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], Tensor):
        return outputs[0]
    fail("outputs", "model outputs with `logits`", type(outputs).__name__)


def losslab_loss_func(loss: str | Mapping[str, Any], /, *, ignore_index: int = -100, shift_labels: bool = False,
                      **params: Any) -> LosslabLossFunc:
    """A ``compute_loss_func`` for the Hugging Face ``Trainer`` that applies a registered losslab loss.

    Args:
        loss: a registry loss name (``"focal"``), or ``{"name": "focal", "params": {"gamma": 2.0}}``.
        ignore_index: label value dropped before the loss (``-100`` by transformers convention).
        shift_labels: score logits at ``t`` against labels at ``t + 1`` (causal language models).
        **params: the loss's hyper-parameters (validated against the registry).

    Returns:
        A :class:`LosslabLossFunc`: ``Trainer(..., compute_loss_func=losslab_loss_func("focal", gamma=2.0))``.

    Raises:
        ValueError: on an unknown loss (did-you-mean and the valid names), a loss whose inputs are not
            (logits, class ids), or an unknown or out-of-range hyper-parameter.

    Example:
        >>> f = losslab_loss_func("focal", gamma=2.0)
        >>> logits, labels = torch.randn(2, 5, 7), torch.tensor([[1, 2, -100, 3, 4], [0, -100, -100, 6, 5]])
        >>> from losslab.losses import focal_loss
        >>> bool(f({"logits": logits}, labels) == focal_loss(logits[labels != -100], labels[labels != -100], gamma=2.0))
        True
    """
    if isinstance(loss, Mapping):
        unknown = sorted(set(loss) - {"name", "params"})
        if "name" not in loss or unknown:
            fail("loss", "a loss name or a dict with keys 'name' and 'params'", sorted(loss))
        if params:
            raise ValueError("Expected hyper-parameters either in `loss['params']` or as keywords, but got both.")
        name, params = loss["name"], dict(loss.get("params") or {})
    elif isinstance(loss, str):
        name = loss
    else:
        fail("loss", "a loss name or a dict with keys 'name' and 'params'", type(loss).__name__)
    return LosslabLossFunc(name, params, ignore_index=ignore_index, shift_labels=shift_labels)


class LosslabTrainer(Trainer):
    """A ``transformers.Trainer`` whose loss is a registered losslab loss.

    Args:
        *args, **kwargs: as for ``Trainer`` (except ``compute_loss_func``, which ``loss`` replaces).
        loss: a loss name, ``{"name", "params"}``, or a :class:`LosslabLossFunc`.
        ignore_index, shift_labels: as for :func:`losslab_loss_func` (with a name or dict).

    ``compute_loss(model, inputs, return_outputs=False, num_items_in_batch=None)`` checks that the
    batch has ``labels``, then runs the ``Trainer``'s own ``compute_loss`` with the losslab loss
    as its ``compute_loss_func``, so gradient accumulation and multi-device scaling stay the Trainer's.
    """

    def __init__(self, *args: Any, loss: str | Mapping[str, Any] | LosslabLossFunc, ignore_index: int = -100,
                 shift_labels: bool = False, **kwargs: Any) -> None:
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError("Expected either `loss` or `compute_loss_func` for LosslabTrainer, but got both.")
        kwargs.pop("compute_loss_func", None)
        if not isinstance(loss, LosslabLossFunc):
            loss = losslab_loss_func(loss, ignore_index=ignore_index, shift_labels=shift_labels)
        self.losslab_loss = loss
        super().__init__(*args, compute_loss_func=loss, **kwargs)

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Tensor | int | None = None) -> Tensor | tuple[Tensor, Any]:
        if not isinstance(inputs, Mapping) or "labels" not in inputs:
            keys = ", ".join(sorted(inputs)) if isinstance(inputs, Mapping) else type(inputs).__name__
            raise ValueError(f"Expected `labels` in the inputs for the losslab loss {self.losslab_loss.name!r}, "
                             f"but got: {keys}.")
        # the Trainer pops `labels`; a copy leaves the caller's batch as it was
        return super().compute_loss(model, dict(inputs), return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)
