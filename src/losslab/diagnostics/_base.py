"""The diagnostic contract: the names a diagnostic may take, and a guard that leaves the model as found.

Names a diagnostic function may take (bound by parameter name, like terms):

=================== =========================================================
``model``            the network (``model.features``, ``model.head``, ``model.stages()``)
``inputs``           a fixed evaluation batch of training inputs ``(n, ...)``
``target``           their labels ``(n,)`` as the learner sees them
``clean_target``     their clean labels ``(n,)`` (equal to ``target`` without noise)
``test_inputs``      a fixed batch of test inputs; ``test_target`` its labels
``loss_fn``          the run's per-sample loss ``loss_fn(logits, target) -> (n,)``
                     (cross-entropy when the objective has none)
``initial_state``    the model's ``state_dict`` at initialisation (distances, LMC to init)
``num_classes``      ``C``
``generator``        a seeded ``torch.Generator`` for randomised estimators
``step``, ``epoch``  where training is
=================== =========================================================

A diagnostic returns a float or a flat ``dict[str, float]``; it may return
NaN where undefined. It must not change the model: use :func:`restore_model_state`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from losslab.core.validation import fail

DIAGNOSTIC_NAMES = ("model", "inputs", "target", "clean_target", "test_inputs", "test_target", "loss_fn",
                    "initial_state", "num_classes", "generator", "step", "epoch")


@contextlib.contextmanager
def restore_model_state(model: nn.Module, *, train: bool = False) -> Iterator[nn.Module]:
    """Run a measurement in eval (or train) mode, then restore the mode and every parameter's ``.grad``.

    Parameters must not be changed inside; gradients computed inside are discarded.
    """
    was_training = model.training
    grads = {p: p.grad for p in model.parameters()}
    model.train(train)
    try:
        with torch.enable_grad():
            yield model
    finally:
        model.train(was_training)
        for p, g in grads.items():
            p.grad = g


def classifier_accuracy(model: nn.Module, inputs: Tensor, target: Tensor) -> float:
    """Top-1 accuracy of ``model`` on a batch, in eval mode and left as found; the model must return ``(n, C)``."""
    with restore_model_state(model), torch.no_grad():
        logits = model(inputs)
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != inputs.shape[0]:
        got = f"shape {tuple(logits.shape)}" if isinstance(logits, Tensor) else type(logits).__name__
        fail("model", f"a classifier returning logits of shape ({inputs.shape[0]}, C)", got)
    return float((logits.argmax(dim=1) == target).float().mean())
