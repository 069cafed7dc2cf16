"""Pruning [63, 140]: exact counts, the minimum threshold, LAMP's properties, the schedule, and model round trips."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from losslab.compress.pruning import (
    PRUNE_METHODS,
    cubic_sparsity,
    global_masks,
    lamp_scores,
    layerwise_masks,
    magnitude_scores,
    prunable_weights,
    prune,
    pruned,
    random_scores,
    sparsity_of,
)
from losslab.core.seeding import seeded


def _net(seed: int = 0) -> nn.Module:
    with seeded(seed):
        return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 4 * 4, 32), nn.ReLU(), nn.LayerNorm(32), nn.Linear(32, 5))


def _weights(seed: int = 0, sizes=(50, 300, 7)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # layers on different scales, as in a trained net, so global and layer-wise choices differ
    return {f"l{i}": torch.randn(n, generator=g) * (i + 1) ** -2 for i, n in enumerate(sizes)}


def _kept(masks) -> int:
    return sum(int(m.sum()) for m in masks.values())


def test_prunable_weights_are_linear_and_conv_weights_only():
    weights = prunable_weights(_net())
    assert list(weights) == ["0", "4", "7"]
    assert [tuple(w.shape) for w in weights.values()] == [(4, 2, 3, 3), (32, 64), (5, 32)]
    with pytest.raises(ValueError, match="`model`.*nn.Linear"):
        prunable_weights(nn.Sequential(nn.ReLU(), nn.LayerNorm(3)))
    with pytest.raises(ValueError, match="`model`"):
        prunable_weights("net")


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.95, 0.999])
@pytest.mark.parametrize("min_keep", [0, 3])
def test_global_masks_keep_exactly_round_one_minus_s_times_total(sparsity, min_keep):
    scores = magnitude_scores(_weights())
    if round((1 - sparsity) * 357) < 3 * min_keep:  # the reservations alone exceed the budget
        with pytest.raises(ValueError, match="`min_keep`"):
            global_masks(scores, sparsity, min_keep=min_keep)
        return
    masks = global_masks(scores, sparsity, min_keep=min_keep)
    assert _kept(masks) == round((1 - sparsity) * 357)
    assert all(m.dtype == torch.bool and m.shape == scores[k].shape for k, m in masks.items())
    if min_keep:
        assert all(int(m.sum()) >= min_keep for m in masks.values())


def test_global_masks_without_min_keep_are_the_global_top_k():
    scores = magnitude_scores(_weights())
    masks = global_masks(scores, 0.8)
    kept = torch.cat([s[m] for s, m in zip(scores.values(), masks.values())])
    pruned_ = torch.cat([s[~m] for s, m in zip(scores.values(), masks.values())])
    assert kept.min() >= pruned_.max()


def test_min_keep_revives_a_collapsed_layer_and_takes_the_extra_from_the_lowest_kept():
    scores = magnitude_scores(_weights(sizes=(50, 300, 7)))
    plain = global_masks(scores, 0.97)
    assert int(plain["l2"].sum()) == 0  # the tiny-magnitude layer collapses
    fixed = global_masks(scores, 0.97, min_keep=2)
    assert _kept(fixed) == _kept(plain)
    reserved = {}
    for k, s in scores.items():  # each layer's two largest entries
        reserved[k] = torch.zeros_like(s, dtype=torch.bool)
        reserved[k][torch.topk(s, 2).indices] = True
        assert bool((fixed[k] >= reserved[k]).all()) and int(fixed[k].sum()) >= 2
    # the budget they need comes out of the lowest kept, non-reserved scores of the plain masks
    added = sum(int((reserved[k] & ~plain[k]).sum()) for k in scores)
    assert added >= 2
    lost = torch.cat([scores[k][plain[k] & ~fixed[k]] for k in scores])
    candidates = torch.cat([scores[k][plain[k] & ~reserved[k]] for k in scores])
    assert torch.equal(lost.sort().values, candidates.sort().values[:added])


def test_min_keep_larger_than_a_layer_keeps_the_whole_layer_and_too_large_min_keep_is_rejected():
    scores = magnitude_scores(_weights(sizes=(50, 300, 7)))
    masks = global_masks(scores, 0.9, min_keep=10)
    assert bool(masks["l2"].all()) and int(masks["l0"].sum()) >= 10
    with pytest.raises(ValueError, match="`min_keep`"):
        global_masks(scores, 0.99, min_keep=10)


def test_ties_are_broken_by_position_deterministically():
    masks = global_masks({"a": torch.ones(3), "b": torch.ones(3)}, 0.5)
    assert masks["a"].tolist() == [True, True, True] and masks["b"].tolist() == [False, False, False]
    assert layerwise_masks({"a": torch.ones(4)}, 0.5)["a"].tolist() == [True, True, False, False]


@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.9, 0.99])
def test_layerwise_masks_hit_every_layers_sparsity(sparsity):
    scores = magnitude_scores(_weights())
    masks = layerwise_masks(scores, sparsity)
    for name, m in masks.items():
        n = scores[name].numel()
        assert int(m.sum()) == round((1 - sparsity) * n)
        if 0 < int(m.sum()) < n:
            assert scores[name][m].min() >= scores[name][~m].max()


def _lamp_brute_force(w: torch.Tensor) -> torch.Tensor:
    """score(u) = W[u]^2 / sum over the entries at least as large as |W[u]| (distinct magnitudes), by loops."""
    flat = w.double().reshape(-1).tolist()
    out = []
    for x in flat:
        denom = sum(y * y for y in flat if abs(y) >= abs(x))
        out.append(x * x / denom)
    return torch.tensor(out, dtype=torch.float64).reshape(w.shape)


def test_lamp_matches_the_brute_force_formula():
    w = torch.randn(5, 7, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(lamp_scores({"w": w})["w"], _lamp_brute_force(w), rtol=1e-12, atol=0)


def test_lamp_per_layer_max_is_one_and_scores_lie_in_0_1():
    for name, s in lamp_scores(_weights()).items():
        assert float(s.max()) == 1.0, name
        assert bool((s > 0).all() and (s <= 1).all()), name


def test_lamp_is_invariant_to_rescaling_one_layer():
    w64 = {k: w.double() for k, w in _weights().items()}
    s64 = lamp_scores(dict(w64, l1=w64["l1"] * 7.0))
    assert torch.allclose(lamp_scores(w64)["l1"], s64["l1"], rtol=1e-12, atol=0)
    weights = _weights()
    scaled = dict(weights, l1=weights["l1"] * 7.0)
    assert torch.allclose(lamp_scores(weights)["l1"], lamp_scores(scaled)["l1"], rtol=1e-6, atol=0)
    for s in (0.5, 0.9, 0.98):
        a, b = global_masks(lamp_scores(weights), s), global_masks(lamp_scores(scaled), s)
        assert all(torch.equal(a[k], b[k]) for k in a)
    # global magnitude is not: the same rescaling moves the budget
    assert not torch.equal(global_masks(magnitude_scores(weights), 0.9)["l1"],
                           global_masks(magnitude_scores(scaled), 0.9)["l1"])


def test_lamp_orders_each_layer_like_magnitude_and_scores_ties_equally():
    w = _weights()["l1"]
    s = lamp_scores({"w": w})["w"]
    assert torch.equal(torch.argsort(s, stable=True), torch.argsort(w.abs(), stable=True))
    tied = lamp_scores({"w": torch.tensor([2.0, -1.0, 1.0, 2.0, 0.0])})["w"]
    assert tied[1] == tied[2] and tied[0] == tied[3] == 1.0 and tied[4] == 0.0
    assert float(tied[1]) == pytest.approx(1 / 9)  # 1 / (1 + 4 + 4): the tie group's last member


def test_random_scores_follow_the_generator():
    w = _weights()
    a = random_scores(w, torch.Generator().manual_seed(5))
    b = random_scores(w, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) and a[k].shape == w[k].shape for k in w)
    with pytest.raises(ValueError, match="`generator`"):
        random_scores(w, 5)


def test_cubic_schedule_endpoints_and_monotonicity():
    kw = dict(final=0.95, initial=0.1, start=100, steps=10, every=20)
    values = [cubic_sparsity(t, **kw) for t in range(0, 600)]
    assert values[0] == values[100] == 0.1 and values[300] == 0.95 and values[-1] == 0.95
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert len(set(values[100:301])) == 11  # constant between pruning events
    # the closed form at an event
    assert cubic_sparsity(160, **kw) == pytest.approx(0.95 + (0.1 - 0.95) * (1 - 3 / 10) ** 3)


@pytest.mark.parametrize("kwargs, arg", [
    (dict(step=-1, final=0.5, steps=3), "step"),
    (dict(step=0, final=1.0, steps=3), "final"),
    (dict(step=0, final=0.5, initial=0.6, steps=3), "initial"),
    (dict(step=0, final=0.5, steps=0), "steps"),
    (dict(step=0, final=0.5, steps=3, every=0), "every"),
    (dict(step=0, final=0.5, steps=3, start=1.5), "start"),
])
def test_cubic_schedule_rejects_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=f"`{arg}`"):
        cubic_sparsity(**kwargs)


@pytest.mark.parametrize("method", PRUNE_METHODS)
def test_prune_then_sparsity_of_agree_and_masks_persist_through_training(method):
    net = _net()
    masks = prune(net, 0.8, method=method, generator=torch.Generator().manual_seed(0))
    total = sum(m.numel() for m in masks.values())
    report = sparsity_of(net)
    assert report["overall"] == pytest.approx(1 - _kept(masks) / total, abs=0)
    for name, m in masks.items():
        assert report[name] == pytest.approx(1 - int(m.sum()) / m.numel(), abs=1e-12)
    if method != "layerwise_magnitude":
        assert _kept(masks) == round(0.2 * total)
    # a training step moves weight_orig, but the masked weights stay zero
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net(torch.randn(3, 2, 6, 6)).square().sum().backward()
    opt.step()
    net(torch.randn(3, 2, 6, 6))
    assert sparsity_of(net)["overall"] == report["overall"]
    for name, module in [("0", net[0]), ("4", net[4]), ("7", net[7])]:
        torch_prune.remove(module, "weight")
        assert torch.equal(module.weight != 0, masks[name])


def test_pruning_again_composes_masks_and_hits_the_new_target_exactly():
    net = _net()
    first = prune(net, 0.5, method="random", generator=torch.Generator().manual_seed(1))
    second = prune(net, 0.9, method="random", generator=torch.Generator().manual_seed(2))
    total = sum(m.numel() for m in second.values())
    assert _kept(second) == round(0.1 * total)
    assert all(bool((second[k] <= first[k]).all()) for k in first)  # nothing pruned comes back
    assert sparsity_of(net)["overall"] == pytest.approx(1 - round(0.1 * total) / total, abs=0)


@pytest.mark.parametrize("method", PRUNE_METHODS)
def test_pruned_zeroes_inside_and_restores_bit_identically(method):
    net = _net().eval()  # eval: BatchNorm's running statistics would move in train mode
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(4, 2, 6, 6)
    with pruned(net, 0.9, method=method, generator=torch.Generator().manual_seed(0)) as masks:
        inside = sparsity_of(net)
        nonzero = {k: w != 0 for k, w in prunable_weights(net).items()}
        net(x)
    assert all(torch.equal(nonzero[k], masks[k]) for k in masks)  # exactly the masked weights were zeroed
    if method != "layerwise_magnitude":
        assert inside["overall"] == 1 - _kept(masks) / sum(m.numel() for m in masks.values())
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(isinstance(h, torch_prune.BasePruningMethod) for h in net[4]._forward_pre_hooks.values())


def test_pruned_restores_even_when_the_body_raises_and_works_on_a_pruned_model():
    net = _net()
    prune(net, 0.5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    derived = net[4].weight
    with pytest.raises(RuntimeError, match="boom"):
        with pruned(net, 0.95, method="lamp"):
            assert sparsity_of(net)["overall"] == pytest.approx(0.95, abs=1e-3)
            assert math.isclose(float((net[4].weight == 0).float().mean()), sparsity_of(net)["4"])
            raise RuntimeError("boom")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net[4].weight is derived


def test_prune_rejects_bad_inputs_naming_the_argument():
    net = _net()
    for s in (-0.1, 1.0, 1.5, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="`sparsity`"):
            prune(net, s)
    with pytest.raises(ValueError, match="`method`.*'global_magnitude', 'lamp', 'layerwise_magnitude', 'random'"):
        prune(net, 0.5, method="snip")
    with pytest.raises(ValueError, match="`min_keep`"):
        prune(net, 0.5, min_keep=-1)
    with pytest.raises(ValueError, match="`min_keep`"):
        prune(net, 0.5, method="layerwise_magnitude", min_keep=2)
    with pytest.raises(ValueError, match="`model`"):
        prune(nn.Sequential(nn.ReLU()), 0.5)
    with pytest.raises(ValueError, match="`model`"):
        sparsity_of(nn.Sequential(nn.ReLU()))
    assert not any(hasattr(m, "weight_mask") for m in net.modules())  # nothing applied on failure


def test_score_and_mask_functions_reject_bad_dicts():
    with pytest.raises(ValueError, match="`weights`"):
        magnitude_scores({})
    with pytest.raises(ValueError, match=r"`weights\['a'\]`"):
        lamp_scores({"a": torch.tensor([1, 2])})
    with pytest.raises(ValueError, match=r"`scores\['a'\]`.*NaN"):
        global_masks({"a": torch.tensor([1.0, float("nan")])}, 0.5)
    with pytest.raises(ValueError, match="`sparsity`"):
        layerwise_masks({"a": torch.ones(3)}, 1.0)
