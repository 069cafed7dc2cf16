"""Prunability: test accuracy after one-shot pruning at halving densities [63, 140]."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from losslab.compress.pruning import PRUNE_METHODS, pruned
from losslab.core.registry import choice, integer, real, register
from losslab.core.validation import check_choice, check_number
from losslab.diagnostics._base import classifier_accuracy
from losslab.diagnostics._checks import check_batch, check_generator, check_labels, check_model

MAX_LEVELS = 20


@register("diagnostic", "prune_accuracy", family="compression", papers=(63, 140),
          hyper={"method": choice("global_magnitude", PRUNE_METHODS, doc="how weights are ranked and masked"),
                 "levels": integer(6, 1, MAX_LEVELS, doc="sparsities 1 - 2^-k for k = 1..levels"),
                 "min_keep": integer(0, 0, doc="least weights each layer keeps (global methods) [63]"),
                 "tolerance": real(0.01, 0.0, 1.0, doc="accuracy drop still counted as intact")})
def prune_accuracy(
    model: nn.Module,
    test_inputs: Tensor,
    test_target: Tensor,
    *,
    method: str = "global_magnitude",
    levels: int = 6,
    min_keep: int = 0,
    tolerance: float = 0.01,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    r"""Test accuracy after one-shot pruning (no fine-tuning) at sparsities :math:`1 - 2^{-k}`, and the prunability.

    Use it to track how compressible a model is during training, or to compare
    objectives by how much of the network can be removed before accuracy drops:
    the density halves at each level, and ``prunability`` summarises the curve.

    .. math::
        s_k = 1 - 2^{-k},\ k = 1..K, \qquad
        P = \max\{\, s_k : \operatorname{acc}(s_j) \ge \operatorname{acc}_{\text{dense}} - \tau
        \ \ \forall j \le k \,\}

    with :math:`P = 0` when already :math:`s_1` falls short. The masks are those
    of :func:`losslab.compress.pruning.prune` (global magnitude [63], LAMP [140],
    layer-wise magnitude or random), applied in place by
    :func:`losslab.compress.pruning.pruned` and undone after each level, so the
    model's parameters come back bit-identical.

    Args:
        model: a classifier with at least one ``nn.Linear`` / ``nn.Conv`` layer (run in eval mode).
        test_inputs: a batch ``(n, ...)`` the model accepts.
        test_target: its class ids ``(n,)``.
        method: one of ``"global_magnitude"``, ``"lamp"``, ``"layerwise_magnitude"``, ``"random"``.
        levels: :math:`K`, in ``[1, 20]``.
        min_keep: [63]'s minimum weights per layer (global methods only).
        tolerance: :math:`\tau \in [0, 1]`, the accuracy drop still counted as intact.
        generator: the randomness of ``method="random"``.

    Returns:
        ``{"dense", "acc@<s_k>" for each level, "prunability"}``, e.g. ``"acc@0.75"``.

    Raises:
        ValueError: on a bad model, batch, labels or hyper-parameter.

    References:
        [63] Gupta et al., *Is Complexity Required for Neural Network Pruning?
        A Case Study on Global Magnitude Pruning*, 2024.
        [140] Lee et al., *Layer-adaptive Sparsity for the Magnitude-based Pruning*, ICLR 2021.

    Example:
        >>> torch.manual_seed(0) and None
        >>> net = nn.Linear(4, 3)
        >>> out = prune_accuracy(net, torch.randn(16, 4), torch.randint(0, 3, (16,)), levels=2)
        >>> sorted(out)
        ['acc@0.5', 'acc@0.75', 'dense', 'prunability']
    """
    check_model(model)
    check_batch(test_inputs, "test_inputs")
    check_labels(test_target, test_inputs.shape[0], "test_target")
    check_choice(method, "method", PRUNE_METHODS)
    levels = check_number(levels, "levels", low=1, high=MAX_LEVELS, integer=True)
    min_keep = check_number(min_keep, "min_keep", low=0, integer=True)
    tolerance = check_number(tolerance, "tolerance", low=0.0, high=1.0)
    check_generator(generator)
    out = {"dense": classifier_accuracy(model, test_inputs, test_target)}
    prunability, intact = 0.0, True
    for k in range(1, levels + 1):
        sparsity = 1.0 - 2.0 ** -k
        with pruned(model, sparsity, method=method, min_keep=min_keep, generator=generator):
            acc = classifier_accuracy(model, test_inputs, test_target)
        out[f"acc@{sparsity!r}"] = acc
        intact = intact and acc >= out["dense"] - tolerance
        prunability = sparsity if intact else prunability
    out["prunability"] = prunability
    return out
