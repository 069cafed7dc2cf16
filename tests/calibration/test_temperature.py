"""fit_temperature / TemperatureScaler (Guo et al. 2017): recovery of a known scale, optimality, argmax, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losslab.calibration import TemperatureScaler, fit_temperature


def _calibrated(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``a`` and labels drawn from ``softmax(a)``: calibrated at T = 1 by construction."""
    gen = torch.Generator().manual_seed(seed)
    a = 2.0 * torch.randn(n, c, generator=gen, dtype=torch.float64)
    y = torch.multinomial(a.softmax(-1), 1, generator=gen).squeeze(-1)
    return a, y


@pytest.mark.parametrize("k", [0.4, 1.0, 3.0])
def test_recovers_the_scale_of_rescaled_calibrated_logits(k):
    # labels ~ softmax(a) and logits b = k a: softmax(b / T) is the true model at T = k, the NLL minimiser as N grows
    a, y = _calibrated(20000, 5, seed=int(10 * k))
    t = fit_temperature((k * a).float(), y)
    assert t == pytest.approx(k, rel=0.04)


@pytest.mark.parametrize("q", [0.6, 0.75, 0.9])
def test_closed_form_on_constant_binary_logits(q):
    # every row [m, 0], a fraction q right: the NLL is minimised where sigmoid(m / T) = q
    n, m = 200, 5.0
    y = (torch.arange(n) >= round(q * n)).long()
    t = fit_temperature(torch.tensor([[m, 0.0]]).repeat(n, 1), y)
    assert t == pytest.approx(m / math.log(q / (1 - q)), rel=1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_nll_never_rises_and_beats_a_fine_grid(seed):
    gen = torch.Generator().manual_seed(seed)
    z = 6.0 * torch.randn(300, 7, generator=gen)
    y = torch.randint(0, 7, (300,), generator=gen)
    t = fit_temperature(z, y)
    nll = [F.cross_entropy(z.double() / s, y).item() for s in (t, 1.0)]
    assert nll[0] <= nll[1] + 1e-12
    grid = torch.logspace(-2, 2, 2001, dtype=torch.float64)
    best = min(F.cross_entropy(z.double() / s, y).item() for s in grid)
    assert nll[0] <= best + 1e-6


def test_separable_and_all_wrong_data_end_at_the_bracket():
    z = torch.tensor([[3.0, 0.0], [0.0, 3.0]])
    # NLL falls as T -> 0 and is 0 in float64 below T ~ 0.08, so the search stops anywhere in that flat stretch
    t = fit_temperature(z, torch.tensor([0, 1]))
    assert 1e-2 <= t < 0.1 and F.cross_entropy(z.double() / t, torch.tensor([0, 1])).item() < 1e-15
    assert fit_temperature(z, torch.tensor([1, 0])) == pytest.approx(1e2, rel=1e-3)  # NLL falls as T -> inf
    assert fit_temperature(z, torch.tensor([0, 1]), bounds=(0.5, 2.0)) == pytest.approx(0.5, rel=1e-3)


def test_scaler_divides_by_the_fitted_temperature_and_keeps_the_argmax():
    a, y = _calibrated(2000, 4, seed=7)
    z = (2.5 * a).float()
    scaler = TemperatureScaler()
    assert torch.equal(scaler(z), z)  # T = 1 before fitting
    assert scaler.fit(z, y) is scaler
    t = float(scaler.temperature)
    assert t == fit_temperature(z, y)
    out = scaler(z)
    assert out.dtype == z.dtype and torch.allclose(out, z / t)
    assert torch.equal(out.argmax(-1), z.argmax(-1))
    assert F.cross_entropy(out, y) <= F.cross_entropy(z, y)
    restored = TemperatureScaler()
    restored.load_state_dict(scaler.state_dict())
    assert float(restored.temperature) == t


def test_deterministic():
    a, y = _calibrated(500, 3, seed=3)
    assert fit_temperature(3 * a, y) == fit_temperature(3 * a, y)


def test_bad_inputs_raise_naming_the_argument():
    z, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    cases = [
        (dict(logits=z[0], target=y), "`logits`"),
        (dict(logits=z[:, :1], target=y), "`logits`"),
        (dict(logits=z.clone().fill_(float("nan")), target=y), "`logits`"),
        (dict(logits=z, target=y.float()), "`target`"),
        (dict(logits=z, target=y[:-1]), "`target`"),
        (dict(logits=z, target=y + 1), "`target`"),
        (dict(logits=z, target=y, max_iter=0), "`max_iter`"),
        (dict(logits=z, target=y, bounds=(2.0, 1.0)), "`bounds`"),
        (dict(logits=z, target=y, bounds=(0.0, 1.0)), "`bounds`"),
        (dict(logits=z, target=y, bounds=(1.0,)), "`bounds`"),
    ]
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=name):
            fit_temperature(kwargs.pop("logits"), kwargs.pop("target"), **kwargs)
    with pytest.raises(ValueError, match="`max_iter`"):
        TemperatureScaler(max_iter=-1)
    with pytest.raises(ValueError, match="`logits`"):
        TemperatureScaler()(torch.randn(3))
