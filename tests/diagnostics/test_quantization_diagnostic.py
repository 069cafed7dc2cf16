"""quantized_accuracy [41]: post-training weight quantization sweep as a diagnostic, and as a spec callback."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from losslab.compress.quantization import fake_quantize
from losslab.core.registry import REGISTRY
from losslab.core.seeding import seeded
from losslab.diagnostics import quantized_accuracy
from losslab.engine.plan import make_plan
from losslab.engine.spec import parse_spec
from losslab.engine.train import train_run
from losslab.models import build_mlp

from specs import TINY

KEYS = {"dense", "acc@8bit", "acc@6bit", "acc@4bit", "acc@3bit", "acc@2bit", "min_bits"}


def _problem(seed: int = 0):
    """A teacher MLP's own labels, so the dense accuracy is exactly 1."""
    with seeded(seed):
        model = build_mlp((6,), 4, width=32, depth=2)
    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_keys_values_and_the_independent_accuracy_at_each_width():
    model, x, y = _problem()
    out = quantized_accuracy(model, x, y)
    assert set(out) == KEYS
    assert out["dense"] == 1.0
    assert all(0.0 <= out[k] <= 1.0 for k in KEYS - {"min_bits"})
    for bits in (8, 4, 2):
        ref = copy.deepcopy(model)
        with torch.no_grad():
            for m in ref.modules():
                if isinstance(m, nn.Linear):
                    m.weight.copy_(fake_quantize(m.weight, bits, per_channel=True))
            assert out[f"acc@{bits}bit"] == float((ref(x).argmax(1) == y).float().mean())
    assert out["acc@8bit"] >= 0.97 and out["acc@2bit"] < out["acc@8bit"]
    ok = [b for b in (8, 6, 4, 3, 2) if out[f"acc@{b}bit"] >= out["dense"] - 0.01]
    assert out["min_bits"] == (min(ok) if ok else 32.0)


def test_min_bits_follows_the_tolerance():
    model, x, y = _problem(1)
    assert quantized_accuracy(model, x, y, tolerance=1.0)["min_bits"] == 2.0
    strict = quantized_accuracy(model, x, y, tolerance=0.0)
    passing = [b for b in (8, 6, 4, 3, 2) if strict[f"acc@{b}bit"] >= 1.0]
    assert strict["min_bits"] == (min(passing) if passing else 32.0)
    # a model that only full precision classifies: labels from a tiny-margin direction
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1e-3], [1.0, -1e-3]]))
    xs = torch.tensor([[0.0, 1.0], [0.0, -1.0]])
    out = quantized_accuracy(layer, xs, torch.tensor([0, 1]), tolerance=0.0)
    assert out["dense"] == 1.0 and out["acc@8bit"] < 1.0 and out["min_bits"] == 32.0  # 1e-3 rounds to 0


def test_model_is_left_bit_identical_with_mode_and_gradients():
    model, x, y = _problem(2)
    model.train()
    model(x).sum().backward()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    quantized_accuracy(model, x, y, per_channel=False, symmetric=False)
    assert model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))


def test_bad_arguments_and_hypers_are_rejected():
    model, x, y = _problem()
    with pytest.raises(ValueError, match="`tolerance`"):
        quantized_accuracy(model, x, y, tolerance=1.5)
    with pytest.raises(ValueError, match="`symmetric`"):
        quantized_accuracy(model, x, y, symmetric="yes")
    with pytest.raises(ValueError, match="`test_target`"):
        quantized_accuracy(model, x, y[:-1])
    with pytest.raises(ValueError, match="`model`.*nn.Linear"):
        quantized_accuracy(nn.Flatten(), x, y)
    entry = REGISTRY.get("diagnostic", "quantized_accuracy")
    assert entry.papers == (41,) and entry.family == "compression"
    assert entry.resolve({}) == {"per_channel": True, "symmetric": True, "tolerance": 0.01}
    with pytest.raises(ValueError, match=r"quantized_accuracy\.tolerance.*\[0, 1\]"):
        entry.resolve({"tolerance": -0.1})
    with pytest.raises(ValueError, match="quantized_accuracy.per_channel"):
        entry.resolve({"per_channel": 1})
    with pytest.raises(ValueError, match="Did you mean 'tolerance'"):
        entry.resolve({"tolerence": 0.1})


def test_a_spec_runs_it_as_a_callback():
    spec = copy.deepcopy(TINY)
    spec.update(conditions=[], seeds=1, objectives=[{"name": "ce"}],
                diagnostics=[{"name": "quantized_accuracy", "every": 2, "samples": 40,
                              "params": {"tolerance": 0.05}}])
    spec["train"]["epochs"] = 2
    run = make_plan(parse_spec(spec))[0]
    result = train_run(run.config, run.run_id, {})
    assert result.status == "done", result.error
    assert not [r for r in result.records if r["name"] == "diagnostic_errors"]
    rows = [r for r in result.history if "quantized_accuracy.min_bits" in r]
    assert sorted(r["epoch"] for r in rows) == [0, 2]
    for r in rows:
        assert {k.split(".", 1)[1] for k in r if k.startswith("quantized_accuracy.")} == KEYS
        assert math.isfinite(r["quantized_accuracy.dense"]) and r["quantized_accuracy.min_bits"] in (2, 3, 4, 6, 8, 32)
