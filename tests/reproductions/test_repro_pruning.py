"""Global magnitude pruning [63] and LAMP [140] on a digits MLP (64-256-256-10).

The phenomenon: at high sparsity, ranking all weights together by magnitude
(global MP) beats giving every layer the same sparsity, and LAMP's rescaled
scores beat both, because they pick better layer-wise sparsities. At extreme
sparsity global MP empties a whole layer (layer collapse, [63]); [63]'s
minimum threshold (``min_keep``) and LAMP (whose per-layer maximum is always 1)
keep every layer alive.

Protocol: train the dense MLP with Adam for 20 epochs, prune once to the target
sparsity through :func:`losslab.compress.pruning.prune`, then (as both papers
do) fine-tune with the masks in force and measure test accuracy.

Measured, mean of 5 seeds (dense 0.974; 10 fine-tuning epochs):

============  =====  =====  =====  =====
sparsity       0.90   0.95   0.98   0.99
============  =====  =====  =====  =====
LAMP          0.975  0.966  0.812  0.516
global MP     0.971  0.937  0.361  0.109
global, MT    0.971  0.944  0.700  0.506   (min_keep=250)
layer-wise    0.966  0.918  0.420  0.116
============  =====  =====  =====  =====

Right after pruning at 95% (no fine-tuning): LAMP 0.566, global 0.408,
layer-wise 0.246. Global MP beats uniform layer-wise at 90-95% but not at 98%
here: it leaves the 2560-weight head about 50 weights, close to collapse, and at
99.9% it leaves none.
"""

from __future__ import annotations

import copy

import pytest
import torch.nn.functional as F
from torch import nn

from losslab.compress.pruning import global_masks, lamp_scores, magnitude_scores, prunable_weights, prune, sparsity_of
from losslab.data.digits import make_digits

from _train import logits_of, mean, seeded_mlp, train

METHODS = ("global_magnitude", "lamp", "layerwise_magnitude")


def _dense(seed: int):
    data = make_digits()
    model = seeded_mlp(64, 10, seed, width=256, depth=2)
    train(model, data.x_train, data.y_train, F.cross_entropy, epochs=20, seed=seed, lr=1e-3)
    return model, data


def _accuracy(model: nn.Module, data) -> float:
    return float((logits_of(model, data.x_test).argmax(1) == data.y_test).float().mean())


def _pruned_accuracy(model: nn.Module, data, sparsity: float, method: str, *, seed: int, finetune: int,
                     min_keep: int = 0) -> tuple[float, float]:
    """(accuracy right after one-shot pruning, accuracy after ``finetune`` epochs with the masks in force)."""
    model = copy.deepcopy(model)
    prune(model, sparsity, method=method, min_keep=min_keep)
    before = _accuracy(model, data)
    train(model, data.x_train, data.y_train, F.cross_entropy, epochs=finetune, seed=seed + 1000, lr=1e-3)
    assert sparsity_of(model)["overall"] >= sparsity - 1e-4  # the masks held through fine-tuning
    return before, _accuracy(model, data)


def test_lamp_beats_global_and_layerwise_magnitude_and_global_collapses_a_layer():
    model, data = _dense(0)
    dense = _accuracy(model, data)
    assert dense > 0.95
    acc = {(m, s): _pruned_accuracy(model, data, s, m, seed=0, finetune=5) for m in METHODS for s in (0.95, 0.98)}
    # right after pruning at 95% (no fine-tuning): LAMP > global > uniform layer-wise
    assert acc["lamp", 0.95][0] > acc["global_magnitude", 0.95][0] + 0.1
    assert acc["global_magnitude", 0.95][0] > acc["layerwise_magnitude", 0.95][0] + 0.05
    # after fine-tuning: LAMP at least as good as global MP at 95% and 98%, and above layer-wise at 98%
    for s in (0.95, 0.98):
        assert acc["lamp", s][1] >= acc["global_magnitude", s][1] - 0.01
    assert acc["lamp", 0.98][1] > acc["layerwise_magnitude", 0.98][1] + 0.1

    # layer collapse at 99.9%: global MP keeps no weight of the head; min_keep and LAMP keep every layer
    weights = prunable_weights(model)
    kept = {name: {k: int(m.sum()) for k, m in masks.items()} for name, masks in [
        ("global", global_masks(magnitude_scores(weights), 0.999)),
        ("global+min_keep", global_masks(magnitude_scores(weights), 0.999, min_keep=10)),
        ("lamp", global_masks(lamp_scores(weights), 0.999))]}
    assert kept["global"]["head"] == 0
    assert min(kept["global+min_keep"].values()) >= 10 and min(kept["lamp"].values()) > 0
    collapsed = copy.deepcopy(model)
    prune(collapsed, 0.999)
    assert sparsity_of(collapsed)["head"] == 1.0
    # an empty head leaves only its bias: one class for every input
    assert logits_of(collapsed, data.x_test).argmax(1).unique().numel() == 1


@pytest.mark.slow
def test_sweep_over_seeds_and_sparsities():
    """Five seeds, 90-99% sparsity, 10 fine-tuning epochs (about a minute): the table in the module docstring."""
    seeds, levels = range(5), (0.9, 0.95, 0.98, 0.99)
    acc: dict[tuple[str, float], list[float]] = {}
    for seed in seeds:
        model, data = _dense(seed)
        for s in levels:
            for m in METHODS:
                acc.setdefault((m, s), []).append(_pruned_accuracy(model, data, s, m, seed=seed, finetune=10)[1])
            fixed = _pruned_accuracy(model, data, s, "global_magnitude", seed=seed, finetune=10, min_keep=250)[1]
            acc.setdefault(("global_min_keep", s), []).append(fixed)
    avg = {k: mean(v) for k, v in acc.items()}
    for s in levels:
        assert avg["lamp", s] >= avg["global_magnitude", s] - 0.005, (s, avg)
    for s in (0.95, 0.98, 0.99):
        assert avg["lamp", s] > avg["layerwise_magnitude", s], (s, avg)
    for s in (0.9, 0.95):
        assert avg["global_magnitude", s] >= avg["layerwise_magnitude", s], (s, avg)
    # the minimum threshold lifts global MP where its head nearly collapses
    for s in (0.98, 0.99):
        assert avg["global_min_keep", s] > avg["global_magnitude", s] + 0.2, (s, avg)
