"""Gradual magnitude pruning [63][140]: the cubic schedule hit exactly, masks that hold, exact resume, the engine."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from losslab.compress.pruning import cubic_sparsity
from losslab.core.registry import REGISTRY
from losslab.engine.executor import execute
from losslab.engine.packing import plan_packs
from losslab.engine.plan import make_plan
from losslab.engine.spec import parse_spec
from losslab.engine.store import Store
from losslab.optim import GradualPruning
from optim_cases import closure_for, flat_params, tiny_mlp
from specs import TINY


def _wide_mlp(seed: int = 0) -> nn.Module:
    """5 -> 32 -> 32 -> 3 (1280 prunable weights), float64, weights a function of ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
    return model


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.ndim >= 2]


def _zeros(model: nn.Module) -> int:
    return sum(int((w == 0).sum()) for w in _weights(model))


def _base(kind: str, model: nn.Module) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.01)
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)


SCHEDULE = {"final": 0.9, "start_step": 3, "end_step": 15, "every": 4}  # events at 3, 7, 11, 15


@pytest.mark.parametrize("method", ["magnitude", "lamp"])
def test_the_cubic_schedule_is_hit_exactly_after_every_step(method):
    model = _wide_mlp(0)
    total = sum(w.numel() for w in _weights(model))
    opt = GradualPruning(_base("adam", model), method=method, **SCHEDULE)
    for t in range(22):
        opt.step(closure_for(model, t))
        target = cubic_sparsity(t, final=0.9, start=3, steps=3, every=4)
        assert _zeros(model) == total - round((1 - target) * total), t  # global_masks keeps round((1 - s) T)
        assert abs(opt.sparsity - target) <= 1 / total and opt.sparsity == _zeros(model) / total
    # the written-out formula at the events: s_f (1 - (1 - k / n)^3), k = 1, 2, 3
    expected = [0.9 * (1 - (1 - k / 3) ** 3) for k in (1, 2, 3)]
    assert [cubic_sparsity(t, final=0.9, start=3, steps=3, every=4) for t in (7, 11, 15)] == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_pruned_weights_stay_exactly_zero_and_masks_only_shrink(kind):
    model = _wide_mlp(1)
    opt = GradualPruning(_base(kind, model), method="magnitude", **SCHEDULE)
    pruned_before = [torch.zeros_like(w, dtype=torch.bool) for w in _weights(model)]
    for t in range(30):
        opt.step(closure_for(model, t))
        for w, before in zip(_weights(model), pruned_before):
            mask = opt.state[w].get("mask")
            zero = w == 0
            assert torch.equal(zero, ~mask if mask is not None else torch.zeros_like(zero)), t
            assert bool(zero[before].all()), t  # once pruned, exactly zero for good
            if mask is not None:
                assert bool((w.grad[~mask] == 0).all())  # the base optimizer never saw a pruned gradient
            before |= zero
    assert opt.sparsity == pytest.approx(0.9, abs=1e-3)


def test_adam_moments_stop_accumulating_on_pruned_entries():
    model = _wide_mlp(2)
    base = torch.optim.Adam(model.parameters(), lr=0.01)
    opt = GradualPruning(base, final=0.5, start_step=0, end_step=1, every=1)  # prunes to 0.5 at step 1
    opt.step(closure_for(model, 0))
    first = {w: base.state[w]["exp_avg"].clone() for w in _weights(model)}
    for t in range(1, 8):
        opt.step(closure_for(model, t))
    beta1 = base.param_groups[0]["betas"][0]
    for w in _weights(model):
        gone = ~opt.state[w]["mask"]
        assert bool(gone.any())
        # zero gradients from step 1 on: the first moment only decays, by beta1 per step
        torch.testing.assert_close(base.state[w]["exp_avg"][gone], first[w][gone] * beta1 ** 7)


def test_biases_stay_dense_and_training_before_the_first_event_is_the_base_optimizer():
    model, plain = _wide_mlp(3), _wide_mlp(3)
    opt = GradualPruning(_base("sgd", model), final=0.8, start_step=5, end_step=9, every=2)
    ref = _base("sgd", plain)
    for t in range(6):  # step 5 is the first event, at s_0 = 0: masks of all ones change nothing
        opt.step(closure_for(model, t))
        ref.zero_grad()
        closure_for(plain, t)().backward() if False else closure_for(plain, t).objective().backward()
        ref.step()
        assert torch.equal(flat_params(model), flat_params(plain)), t
    for t in range(6, 20):
        opt.step(closure_for(model, t))
    biases = [p for p in model.parameters() if p.ndim < 2]
    assert all(bool((b != 0).all()) and "mask" not in opt.state[b] for b in biases)
    assert opt.sparsity == pytest.approx(0.8, abs=1e-3)


def test_lamp_keeps_every_layer_alive_at_99_percent_where_global_magnitude_empties_one():
    def run(method):
        model = _wide_mlp(4)
        with torch.no_grad():
            model[2].weight.mul_(1e-3)  # a layer of small weights: first in line for global |w|
        opt = GradualPruning(_base("sgd", model), final=0.99, start_step=0, end_step=4, every=2, method=method)
        for t in range(6):
            opt.step(closure_for(model, t))
        return [int((w != 0).sum()) for w in _weights(model)], opt.sparsity

    kept, sparsity = run("magnitude")
    assert kept[1] == 0 and sparsity == pytest.approx(0.99, abs=1e-3)  # layer collapse [63]
    kept, sparsity = run("lamp")
    assert min(kept) > 0 and sparsity == pytest.approx(0.99, abs=1e-3)  # LAMP [140]


def test_min_keep_reserves_entries_in_every_tensor():
    model = _wide_mlp(4)
    with torch.no_grad():
        model[2].weight.mul_(1e-3)
    opt = GradualPruning(_base("sgd", model), final=0.99, start_step=0, end_step=4, every=2, min_keep=4)
    for t in range(6):
        opt.step(closure_for(model, t))
    assert min(int((w != 0).sum()) for w in _weights(model)) >= 4
    assert opt.sparsity == pytest.approx(0.99, abs=1e-3)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
@pytest.mark.parametrize("method", ["magnitude", "lamp"])
def test_state_dict_round_trip_continues_bit_identically(kind, method):
    model = _wide_mlp(5)
    opt = GradualPruning(_base(kind, model), method=method, **SCHEDULE)
    for t in range(9):  # past two events
        opt.step(closure_for(model, t))
    clone = copy.deepcopy(model)
    opt2 = GradualPruning(_base(kind, clone), method=method, **SCHEDULE)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    for w in _weights(clone):
        assert opt2.state[w]["mask"].dtype == torch.bool and opt2.state[w]["step"] == 9
    for t in range(9, 25):  # two more events, then fixed masks
        opt.step(closure_for(model, t))
        opt2.step(closure_for(clone, t))
    assert torch.equal(flat_params(model), flat_params(clone))
    assert all(torch.equal(opt.state[a]["mask"], opt2.state[b]["mask"])
               for a, b in zip(_weights(model), _weights(clone)))


def test_load_state_dict_rejects_a_foreign_dict():
    opt = GradualPruning(_base("sgd", tiny_mlp(0)))
    with pytest.raises(ValueError, match="`state_dict`"):
        opt.load_state_dict(torch.optim.SGD(tiny_mlp(0).parameters(), lr=0.1).state_dict())


@pytest.mark.parametrize(("hyper", "name"), [
    ({"final": 1.0}, "final"), ({"final": -0.1}, "final"), ({"final": "0.5"}, "final"),
    ({"start_step": -1}, "start_step"), ({"start_step": 1.5}, "start_step"),
    ({"end_step": 0}, "end_step"), ({"start_step": 10, "end_step": 10}, "end_step"),
    ({"start_step": 10, "end_step": 5}, "end_step"), ({"start_step": 0, "end_step": 10, "every": 3}, "end_step"),
    ({"every": 0}, "every"), ({"method": "global_magnitude"}, "method"), ({"min_keep": -1}, "min_keep"),
    ({"final": 0.99, "min_keep": 10}, "min_keep"),  # 2 tensors x 10 reserved > round(0.01 x 64) kept
])
def test_bad_hyper_raises_naming_the_argument(hyper, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        GradualPruning(_base("sgd", tiny_mlp(0)), **hyper)


def test_bad_method_lists_the_choices_and_no_prunable_tensor_is_refused():
    with pytest.raises(ValueError, match="'magnitude', 'lamp'"):
        GradualPruning(_base("sgd", tiny_mlp(0)), method="random")
    bias_only = [nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match="`base_optimizer`"):
        GradualPruning(torch.optim.SGD(bias_only, lr=0.1))
    with pytest.raises(ValueError, match="`base_optimizer`"):
        GradualPruning(object())


def test_the_registry_resolves_and_rejects_values():
    entry = REGISTRY.get("optimizer", "gradual_pruning")
    assert entry.obj is GradualPruning and "wraps" in entry.tags and set(entry.papers) == {63, 140}
    good = entry.resolve({"final": 0.95, "start_step": 200, "end_step": 1200, "every": 100, "method": "lamp"})
    assert good["final"] == 0.95 and good["method"] == "lamp" and good["min_keep"] == 0
    for bad in ({"final": 1.0}, {"every": 0}, {"method": "random"}, {"start_step": -5}, {"end_step": 0}):
        key = next(iter(bad))
        with pytest.raises(ValueError, match=f"`gradual_pruning.{key}`"):
            entry.resolve(bad)


def _spec(seeds: int = 1) -> dict:
    spec = copy.deepcopy(TINY)  # 120 training samples in batches of 32: 4 steps per epoch, 12 in 3 epochs
    spec["conditions"], spec["seeds"] = [], seeds
    spec["objectives"] = [{"label": "ce_gmp80", "loss": {"name": "ce"},
                           "optimizer": {"name": "gradual_pruning",
                                         "params": {"final": 0.8, "start_step": 1, "end_step": 9, "every": 2,
                                                    "method": "lamp"}}}]
    return spec


def test_an_engine_run_stores_a_model_at_the_target_sparsity_and_the_packer_declines_it(tmp_path):
    plan = make_plan(parse_spec(_spec(seeds=2)))
    packing = plan_packs(plan)  # what --executor auto does: the wrapper's masks need the sequential path
    assert not packing.packs and {reason for _, reason in packing.alone} == {"optimizer wrapper"}
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    summary = execute(plan[:1], store, packs=packing.packs)
    assert (summary.done, summary.failed) == (1, 0)
    state = torch.load(io.BytesIO(store.checkpoint(plan[0].run_id)), weights_only=True)["state"]
    weights = [v for v in state.values() if v.is_floating_point() and v.ndim >= 2]
    total = sum(w.numel() for w in weights)
    assert weights and sum(int((w == 0).sum()) for w in weights) == total - round(0.2 * total)
    assert all(bool((v != 0).all()) for v in state.values() if v.is_floating_point() and v.ndim == 1)
