"""Properties every registered optimizer shares: construction from the registry, the step contract, state_dict."""

from __future__ import annotations

import contextlib
import copy
import inspect

import pytest
import torch

from losslab.core.registry import REGISTRY
from optim_cases import closure_for, flat_params, tiny_mlp

NAMES = REGISTRY.names("optimizer")


def build(name: str, model: torch.nn.Module, **hyper) -> torch.optim.Optimizer:
    entry = REGISTRY.get("optimizer", name)
    resolved = entry.resolve(hyper)
    if "wraps" in entry.tags:
        return entry.obj(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), **resolved)
    return entry.obj(model.parameters(), lr=0.01, weight_decay=0.01, **resolved)


def test_all_six_are_registered_with_one_tag():
    assert set(NAMES) >= {"sam", "adagc", "grams", "perp_grad", "frugal", "udim"}
    for name in NAMES:
        entry = REGISTRY.get("optimizer", name)
        assert len(entry.tags & {"wraps", "standalone"}) == 1, name
        assert issubclass(entry.obj, torch.optim.Optimizer)


@pytest.mark.parametrize("name", NAMES)
def test_registry_defaults_equal_keyword_defaults(name):
    entry = REGISTRY.get("optimizer", name)
    signature = inspect.signature(entry.obj.__init__).parameters
    for key, spec in entry.hyper.items():
        assert signature[key].default == spec.default, (name, key)
        assert signature[key].kind is inspect.Parameter.KEYWORD_ONLY, (name, key)


@pytest.mark.parametrize("name", NAMES)
def test_step_returns_the_closure_loss_and_trains(name):
    torch.manual_seed(0)
    model = tiny_mlp(0)
    opt = build(name, model)
    first = closure_for(model, 0)
    with getattr(opt, "quantized", contextlib.nullcontext)():  # QAT's loss is taken at its quantized weights
        before = first.objective().detach()
    assert torch.equal(opt.step(first), before)  # the loss at the weights the step started from
    for step in range(1, 30):
        loss = opt.step(closure_for(model, step % 2))
        assert torch.isfinite(loss)
    assert closure_for(model, 0).objective() < before


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_continues_identically(name):
    model = tiny_mlp(1)
    opt = build(name, model)
    for step in range(3):
        opt.step(closure_for(model, step))
    clone = copy.deepcopy(model)
    opt2 = build(name, clone)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    for step in range(3, 7):
        opt.step(closure_for(model, step))
        opt2.step(closure_for(clone, step))
    assert torch.equal(flat_params(model), flat_params(clone))


@pytest.mark.parametrize("name", NAMES)
def test_unknown_or_out_of_range_hyper_is_rejected_by_the_registry(name):
    entry = REGISTRY.get("optimizer", name)
    with pytest.raises(ValueError, match="Unknown hyper-parameter"):
        entry.resolve({"not_a_hyper": 1})
    bad = {"float": -1.0, "int": -1, "bool": 1, "choice": "bogus"}
    for key, spec in entry.hyper.items():
        with pytest.raises(ValueError, match=f"`{name}.{key}`"):
            entry.resolve({key: bad[spec.type]})


@pytest.mark.parametrize("name", NAMES)
def test_the_class_itself_rejects_bad_hyper_naming_it(name):
    entry = REGISTRY.get("optimizer", name)
    bad = {"float": -1.0, "int": -1, "bool": 1, "choice": "bogus"}
    for key, spec in entry.hyper.items():
        with pytest.raises(ValueError, match=f"`{key}`"):
            build_raw(name, tiny_mlp(0), **{key: bad[spec.type]})


def build_raw(name: str, model: torch.nn.Module, **hyper) -> torch.optim.Optimizer:
    entry = REGISTRY.get("optimizer", name)
    if "wraps" in entry.tags:
        return entry.obj(torch.optim.SGD(model.parameters(), lr=0.05), **hyper)
    return entry.obj(model.parameters(), lr=0.01, **hyper)
