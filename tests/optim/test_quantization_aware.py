"""Quantization-aware training [41]: the closure sees Q_b(w), the base steps the latent w with that gradient."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from losslab.compress.quantization import fake_quantize, quantized_weights
from losslab.core.registry import REGISTRY
from losslab.engine.executor import execute
from losslab.engine.packing import plan_packs
from losslab.engine.plan import make_plan
from losslab.engine.spec import parse_spec
from losslab.engine.store import Store
from losslab.optim import QuantizationAware
from optim_cases import batch, closure_for, flat_params, tiny_mlp
from specs import TINY


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.ndim >= 2]


def _biases(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.ndim < 2]


def _base(kind: str, model: nn.Module) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.01)
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)


@pytest.mark.parametrize(("bits", "per_channel", "symmetric"), [(2, True, True), (4, True, True),
                                                                (3, False, True), (4, True, False)])
def test_the_closure_sees_exactly_the_fake_quantized_weights_and_biases_in_float(bits, per_channel, symmetric):
    model = tiny_mlp(0)
    opt = QuantizationAware(_base("sgd", model), bits=bits, per_channel=per_channel, symmetric=symmetric)
    expected = [fake_quantize(w.detach(), bits, per_channel=per_channel, symmetric=symmetric, dim=0, ste=False)
                for w in _weights(model)]
    latent = [p.detach().clone() for p in model.parameters()]
    inner = closure_for(model, 0)
    seen = {}

    def closure():
        seen["weights"] = [w.detach().clone() for w in _weights(model)]
        seen["biases"] = [b.detach().clone() for b in _biases(model)]
        return inner()

    opt.step(closure)
    assert all(torch.equal(s, e) for s, e in zip(seen["weights"], expected))
    assert not any(torch.equal(s, w) for s, w in zip(seen["weights"], latent[::2]))  # rounding did move them
    assert all(torch.equal(s, b) for s, b in zip(seen["biases"], latent[1::2]))  # never quantized
    levels = 2 ** (bits - 1) - 1 if symmetric else 2 ** bits - 1
    for s in seen["weights"]:
        rows = s if per_channel else s.reshape(1, -1)
        assert max(r.unique().numel() for r in rows) <= (2 * levels + 1 if symmetric else levels + 1)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_one_step_is_the_sgd_update_of_the_latent_weights_with_the_gradient_at_the_quantized_point(bits):
    model = tiny_mlp(1)
    opt = QuantizationAware(torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.01), bits=bits)
    latent = [p.detach().clone() for p in model.parameters()]
    # the manual computation: a copy with its weights replaced by Q_b(w), one backward pass, w - lr (g + wd w)
    probe = copy.deepcopy(model)
    with torch.no_grad():
        for w in _weights(probe):
            w.copy_(fake_quantize(w, bits, per_channel=True, dim=0, ste=False))
    x, y = batch(0)
    q_loss = torch.nn.functional.cross_entropy(probe(x), y)
    grads = torch.autograd.grad(q_loss, list(probe.parameters()))
    expected = [w - 0.1 * (g + 0.01 * w) for w, g in zip(latent, grads)]
    loss = opt.step(closure_for(model, 0))
    assert torch.equal(loss, q_loss.detach())  # the loss at the quantized weights
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=0, atol=1e-15)


def test_latent_weights_are_restored_bit_for_bit_and_quantized_restores_them_too():
    model = tiny_mlp(2)
    opt = QuantizationAware(torch.optim.SGD(model.parameters(), lr=0.0), bits=2)  # lr 0: no update at all
    before = flat_params(model)
    opt.step(closure_for(model, 0))
    assert torch.equal(flat_params(model), before)
    with opt.quantized() as tensors:
        assert [id(t) for t in tensors] == [id(w) for w in _weights(model)]
        inside = flat_params(model)
        with quantized_weights(model, 2):  # the compress helper quantizes the same way: Q_b(Q_b(w)) = Q_b(w)
            assert torch.equal(flat_params(model), inside)
    assert torch.equal(flat_params(model), before)
    with pytest.raises(RuntimeError, match="boom"), opt.quantized():
        raise RuntimeError("boom")
    assert torch.equal(flat_params(model), before)


def test_the_latent_weights_are_restored_when_the_closure_raises():
    model = tiny_mlp(3)
    opt = QuantizationAware(_base("adam", model), bits=3)
    before = flat_params(model)

    def closure():
        raise RuntimeError("forward failed")

    with pytest.raises(RuntimeError, match="forward failed"):
        opt.step(closure)
    assert torch.equal(flat_params(model), before)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_16_bits_trains_like_the_plain_base_optimizer(kind):
    model, plain = tiny_mlp(4), tiny_mlp(4)
    opt, ref = QuantizationAware(_base(kind, model), bits=16), _base(kind, plain)
    for t in range(20):
        opt.step(closure_for(model, t))
        ref.step(closure_for(plain, t))
    gap = float((flat_params(model) - flat_params(plain)).abs().max())
    assert 0 < gap < 1e-3  # rounding at 16 bits moves each weight by at most max|w| / 65534 per step
    # ... while 2 bits trains a visibly different network
    coarse = tiny_mlp(4)
    opt2 = QuantizationAware(_base(kind, coarse), bits=2)
    for t in range(20):
        opt2.step(closure_for(coarse, t))
    assert float((flat_params(coarse) - flat_params(plain)).abs().max()) > 100 * gap


def test_qat_lowers_the_loss_at_the_quantized_weights_more_than_float_training():
    """On one fixed batch, 2-bit QAT minimises L(Q_2(w)); float training minimises L(w) and ignores rounding."""
    model, plain = tiny_mlp(5), tiny_mlp(5)
    opt = QuantizationAware(torch.optim.Adam(model.parameters(), lr=0.02), bits=2)
    ref = torch.optim.Adam(plain.parameters(), lr=0.02)
    for _ in range(150):
        opt.step(closure_for(model, 0))
        ref.step(closure_for(plain, 0))

    def quantized_loss(m):
        with quantized_weights(m, 2), torch.no_grad():
            return float(closure_for(m, 0).objective())

    assert quantized_loss(model) < quantized_loss(plain)
    expected = quantized_loss(model)  # before the step moves the weights
    assert float(opt.step(closure_for(model, 0))) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_state_dict_round_trip_continues_bit_identically(kind):
    model = tiny_mlp(6)
    opt = QuantizationAware(_base(kind, model), bits=3, symmetric=False)
    for t in range(4):
        opt.step(closure_for(model, t))
    clone = copy.deepcopy(model)
    opt2 = QuantizationAware(_base(kind, clone))  # the defaults: bits, symmetric come back from the state
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert opt2.param_groups[0]["bits"] == 3 and opt2.param_groups[0]["symmetric"] is False
    for t in range(4, 10):
        opt.step(closure_for(model, t))
        opt2.step(closure_for(clone, t))
    assert torch.equal(flat_params(model), flat_params(clone))


def test_each_parameter_group_uses_its_own_bit_width():
    model = tiny_mlp(7)
    first, second = model[0], model[2]
    base = torch.optim.SGD([{"params": first.parameters()}, {"params": second.parameters()}], lr=0.0)
    opt = QuantizationAware(base, bits=2)
    opt.param_groups[1]["bits"] = 8
    seen = {}

    def closure():
        seen["first"], seen["second"] = first.weight.detach().clone(), second.weight.detach().clone()
        return closure_for(model, 0)()

    before = [first.weight.detach().clone(), second.weight.detach().clone()]
    opt.step(closure)
    assert torch.equal(seen["first"], fake_quantize(before[0], 2, per_channel=True, ste=False))
    assert torch.equal(seen["second"], fake_quantize(before[1], 8, per_channel=True, ste=False))


@pytest.mark.parametrize(("hyper", "name"), [
    ({"bits": 1}, "bits"), ({"bits": 17}, "bits"), ({"bits": 4.5}, "bits"), ({"bits": "4"}, "bits"),
    ({"bits": True}, "bits"), ({"per_channel": 1}, "per_channel"), ({"symmetric": "yes"}, "symmetric"),
])
def test_bad_hyper_raises_naming_the_argument(hyper, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        QuantizationAware(_base("sgd", tiny_mlp(0)), **hyper)


def test_a_missing_closure_an_optimizer_without_matrices_and_a_foreign_state_dict_are_refused():
    opt = QuantizationAware(_base("sgd", tiny_mlp(0)))
    with pytest.raises(ValueError, match="`closure`"):
        opt.step()
    with pytest.raises(ValueError, match="`base_optimizer`"):
        QuantizationAware(torch.optim.SGD([nn.Parameter(torch.zeros(3))], lr=0.1))
    with pytest.raises(ValueError, match="`base_optimizer`"):
        QuantizationAware(object())
    with pytest.raises(ValueError, match="`state_dict`"):
        opt.load_state_dict(torch.optim.SGD(tiny_mlp(0).parameters(), lr=0.1).state_dict())


def test_the_registry_resolves_and_rejects_values():
    entry = REGISTRY.get("optimizer", "quantization_aware")
    assert entry.obj is QuantizationAware and "wraps" in entry.tags and set(entry.papers) == {41}
    assert entry.resolve({}) == {"bits": 4, "per_channel": True, "symmetric": True}
    assert entry.resolve({"bits": 2, "symmetric": False})["bits"] == 2
    for bad in ({"bits": 1}, {"bits": 17}, {"bits": 2.5}, {"per_channel": "no"}, {"symmetric": 0}):
        key = next(iter(bad))
        with pytest.raises(ValueError, match=f"`quantization_aware.{key}`"):
            entry.resolve(bad)


def _spec(seeds: int = 1) -> dict:
    spec = copy.deepcopy(TINY)
    spec["conditions"], spec["seeds"] = [], seeds
    spec["objectives"] = [{"label": "ce_qat2", "loss": {"name": "ce"},
                           "optimizer": {"name": "quantization_aware", "params": {"bits": 2}}}]
    return spec


def test_an_engine_run_finishes_stores_latent_float_weights_and_the_packer_declines_it(tmp_path):
    plan = make_plan(parse_spec(_spec(seeds=2)))
    packing = plan_packs(plan)  # what --executor auto does: the wrapper needs the sequential path
    assert not packing.packs and {reason for _, reason in packing.alone} == {"optimizer wrapper"}
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    summary = execute(plan[:1], store, packs=packing.packs)
    assert (summary.done, summary.failed) == (1, 0)
    state = torch.load(io.BytesIO(store.checkpoint(plan[0].run_id)), weights_only=True)["state"]
    weights = [v for v in state.values() if v.is_floating_point() and v.ndim >= 2]
    # the checkpoint holds the latent weights: many more distinct values per row than the 3 of the 2-bit grid
    assert weights and all(max(r.unique().numel() for r in w) > 3 for w in weights)
