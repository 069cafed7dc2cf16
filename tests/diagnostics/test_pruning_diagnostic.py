"""prune_accuracy [63, 140]: accuracy after one-shot pruning at halving densities, model left untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from losslab.compress.pruning import PRUNE_METHODS, pruned
from losslab.core.registry import REGISTRY
from losslab.core.seeding import seeded
from losslab.diagnostics import prune_accuracy
from losslab.engine.plan import make_plan
from losslab.engine.spec import SpecError, parse_spec
from losslab.engine.train import train_run
from losslab.models import build_mlp

from specs import TINY


def _model_and_batch():
    with seeded(0):
        model = build_mlp((6,), 3, width=16, depth=2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return model, x, y


@pytest.mark.parametrize("method", PRUNE_METHODS)
def test_keys_values_and_the_model_is_left_bit_identical(method):
    model, x, y = _model_and_batch()
    model.train()
    before = copy.deepcopy(model.state_dict())
    out = prune_accuracy(model, x, y, method=method, levels=4, generator=torch.Generator().manual_seed(0))
    assert list(out) == ["dense", "acc@0.5", "acc@0.75", "acc@0.875", "acc@0.9375", "prunability"]
    assert all(0.0 <= v <= 1.0 for v in out.values())
    assert out["prunability"] in (0.0, 0.5, 0.75, 0.875, 0.9375)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_accuracies_match_an_independent_pruned_forward_and_prunability_follows_its_definition():
    model, x, y = _model_and_batch()
    out = prune_accuracy(model, x, y, method="lamp", levels=5, tolerance=0.05)
    dense = float((model(x).argmax(1) == y).float().mean())
    assert out["dense"] == dense
    expected, intact = 0.0, True
    for k in range(1, 6):
        s = 1 - 2.0 ** -k
        with pruned(model, s, method="lamp"), torch.no_grad():
            acc = float((model(x).argmax(1) == y).float().mean())
        assert out[f"acc@{s!r}"] == acc
        intact = intact and acc >= dense - 0.05
        expected = s if intact else expected
    assert out["prunability"] == expected
    # tolerance 1 counts every level as intact
    assert prune_accuracy(model, x, y, levels=3, tolerance=1.0)["prunability"] == 0.875


def test_bad_arguments_are_rejected_by_the_function_and_the_registry():
    model, x, y = _model_and_batch()
    with pytest.raises(ValueError, match="`method`.*'lamp'"):
        prune_accuracy(model, x, y, method="snip")
    with pytest.raises(ValueError, match="`levels`"):
        prune_accuracy(model, x, y, levels=0)
    with pytest.raises(ValueError, match="`test_target`"):
        prune_accuracy(model, x, y[:5])
    entry = REGISTRY.get("diagnostic", "prune_accuracy")
    assert entry.papers == (63, 140) and entry.family == "compression"
    assert entry.resolve({"method": "lamp"})["levels"] == 6
    for params, arg in [({"method": "obd"}, "method"), ({"levels": 21}, "levels"), ({"min_keep": -1}, "min_keep"),
                        ({"tolerance": 2.0}, "tolerance")]:
        with pytest.raises(ValueError, match=f"prune_accuracy.{arg}"):
            entry.resolve(params)
    with pytest.raises(ValueError, match="Unknown hyper-parameter 'sparsity'"):
        entry.resolve({"sparsity": 0.5})
    with pytest.raises(ValueError, match="`model`"):
        prune_accuracy(nn.Sequential(nn.Flatten()), x, y)


def test_a_spec_runs_it_as_a_diagnostic():
    spec = copy.deepcopy(TINY)
    spec.update(conditions=[], seeds=1, objectives=[{"name": "ce"}],
                diagnostics=[{"name": "prune_accuracy", "params": {"method": "lamp", "levels": 3}}])
    spec["train"]["epochs"] = 2
    run = make_plan(parse_spec(spec))[0]
    result = train_run(run.config, run.run_id, {})
    assert result.status == "done", result.error
    assert not [r for r in result.records if r["name"] == "diagnostic_errors"]
    last = [r for r in result.history if "prune_accuracy.prunability" in r][-1]
    assert {"prune_accuracy.dense", "prune_accuracy.acc@0.5", "prune_accuracy.acc@0.875"} <= set(last)
    bad = copy.deepcopy(spec)
    bad["diagnostics"][0]["params"] = {"method": "magnitude"}
    with pytest.raises(SpecError, match="prune_accuracy.method"):
        parse_spec(bad)
