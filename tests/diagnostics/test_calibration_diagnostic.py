"""calibrated_ece (Guo et al. 2017; [80]): cross-fitted post-hoc calibration as a diagnostic and a spec callback."""

from __future__ import annotations

import copy
import doctest
import math

import pytest
import torch
from torch import nn

import losslab.diagnostics.calibration as module
from losslab.core.registry import REGISTRY
from losslab.diagnostics import calibrated_ece
from losslab.engine.plan import make_plan
from losslab.engine.spec import parse_spec
from losslab.engine.train import train_run
from losslab.metrics import expected_calibration_error

from specs import TINY

KEYS = {"ece", "calibrated_ece", "temperature", "accuracy"}


def _problem(scale: float = 4.0, n: int = 2000, seed: int = 0):
    """A linear teacher's logits times ``scale``, labels drawn from the teacher: over-confident by ``scale``."""
    gen = torch.Generator().manual_seed(seed)
    teacher = nn.Linear(5, 4)
    with torch.no_grad():
        teacher.weight.copy_(torch.randn(4, 5, generator=gen))
        teacher.bias.zero_()
        x = torch.randn(n, 5, generator=gen)
        y = torch.multinomial(teacher(x).softmax(-1), 1, generator=gen).squeeze(-1)
        teacher.weight.mul_(scale)
    return teacher, x, y


@pytest.mark.parametrize("method", ["temperature", "correctness_aware"])
def test_recalibrates_an_overconfident_model_at_equal_accuracy(method):
    model, x, y = _problem()
    out = calibrated_ece(model, x, y, method=method, generator=torch.Generator().manual_seed(0))
    assert set(out) == KEYS and all(math.isfinite(v) for v in out.values())
    with torch.no_grad():
        logits = model(x)
    assert out["ece"] == pytest.approx(expected_calibration_error(logits.softmax(-1), y).item())
    assert out["accuracy"] == pytest.approx((logits.argmax(-1) == y).float().mean().item())
    assert out["ece"] > 0.1 and out["calibrated_ece"] < 0.35 * out["ece"]
    if method == "temperature":
        assert out["temperature"] == pytest.approx(4.0, rel=0.15)  # the scale it was made over-confident by


def test_deterministic_given_the_generator_and_seed_zero_by_default():
    model, x, y = _problem(n=400)
    runs = [calibrated_ece(model, x, y, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert runs[0] == runs[1]
    assert calibrated_ece(model, x, y) == calibrated_ece(model, x, y, generator=torch.Generator().manual_seed(0))


def test_model_is_left_bit_identical_with_mode_and_gradients():
    model, x, y = _problem(n=200)
    model.train()
    model(x).sum().backward()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    calibrated_ece(model, x, y, method="correctness_aware")
    assert model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))


def test_bad_arguments_and_hypers_are_rejected():
    model, x, y = _problem(n=50)
    with pytest.raises(ValueError, match="`method`.*'temperature', 'correctness_aware'"):
        calibrated_ece(model, x, y, method="platt")
    with pytest.raises(ValueError, match="`n_bins`"):
        calibrated_ece(model, x, y, n_bins=0)
    with pytest.raises(ValueError, match="`test_inputs`.*at least 4"):
        calibrated_ece(model, x[:3], y[:3])
    with pytest.raises(ValueError, match="`test_target`"):
        calibrated_ece(model, x, y[:-1])
    with pytest.raises(ValueError, match="`test_target`"):
        calibrated_ece(model, x, y + 4)
    with pytest.raises(ValueError, match="`generator`"):
        calibrated_ece(model, x, y, generator=0)
    with pytest.raises(ValueError, match="`model`"):
        calibrated_ece(nn.Linear(5, 1), x, y)
    entry = REGISTRY.get("diagnostic", "calibrated_ece")
    assert entry.papers == (80,) and entry.family == "calibration" and "Guo" in entry.reference
    assert entry.resolve({}) == {"method": "temperature", "n_bins": 15}
    with pytest.raises(ValueError, match=r"calibrated_ece\.method.*'correctness_aware'"):
        entry.resolve({"method": "platt"})
    with pytest.raises(ValueError, match=r"calibrated_ece\.n_bins"):
        entry.resolve({"n_bins": 0})
    with pytest.raises(ValueError, match="Did you mean 'n_bins'"):
        entry.resolve({"nbins": 10})


def test_docstring_example_runs():
    assert doctest.testmod(module).failed == 0


def test_a_spec_runs_it_as_a_callback():
    spec = copy.deepcopy(TINY)
    spec.update(conditions=[], seeds=1, objectives=[{"name": "ce"}],
                diagnostics=[{"name": "calibrated_ece", "every": 2, "samples": 40}])
    spec["train"]["epochs"] = 2
    run = make_plan(parse_spec(spec))[0]
    result = train_run(run.config, run.run_id, {})
    assert result.status == "done", result.error
    assert not [r for r in result.records if r["name"] == "diagnostic_errors"]
    rows = [r for r in result.history if "calibrated_ece.calibrated_ece" in r]
    assert sorted(r["epoch"] for r in rows) == [0, 2]
    for r in rows:
        assert {k.split(".", 1)[1] for k in r if k.startswith("calibrated_ece.")} == KEYS
        assert all(math.isfinite(r[f"calibrated_ece.{k}"]) for k in KEYS)
