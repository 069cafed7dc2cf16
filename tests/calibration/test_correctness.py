"""correctness_aware_loss and CorrectnessAwareCalibrator [80]: independent BCE, gradient signs, argmax, learning, bad inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from losslab.calibration import CorrectnessAwareCalibrator, correctness_aware_loss
from losslab.metrics import expected_calibration_error


def _batch(seed: int = 0, n: int = 64, c: int = 5):
    gen = torch.Generator().manual_seed(seed)
    z = 3.0 * torch.randn(n, c, generator=gen, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=gen)
    y[: n // 2] = z[: n // 2].argmax(-1)  # half right for sure, so both branches of the BCE are used
    tau = 0.2 + 3.0 * torch.rand(n, generator=gen, dtype=torch.float64)
    return z, y, tau


def _reference(z, y, tau):
    """torch's binary_cross_entropy of max softmax(z / tau) against 1[argmax z = y]."""
    p = (z / tau.reshape(-1, 1)).softmax(-1)
    return F.binary_cross_entropy(p.max(-1).values, (z.argmax(-1) == y).double(), reduction="none")


def test_equals_an_independent_bce_for_per_sample_and_scalar_temperatures():
    z, y, tau = _batch()
    assert torch.allclose(correctness_aware_loss(z, y, tau, reduction="none"), _reference(z, y, tau))
    scalar = _reference(z, y, torch.full_like(tau, 1.7))
    assert torch.allclose(correctness_aware_loss(z, y, 1.7, reduction="none"), scalar)
    assert torch.allclose(correctness_aware_loss(z, y, torch.tensor(1.7, dtype=torch.float64), reduction="none"),
                          scalar)
    mean, total = correctness_aware_loss(z, y, tau), correctness_aware_loss(z, y, tau, reduction="sum")
    assert torch.allclose(total, len(y) * mean) and torch.allclose(mean, _reference(z, y, tau).mean())


def test_finite_for_extreme_logits_in_float32_and_half_computes_in_float32():
    z = torch.tensor([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]])
    out = correctness_aware_loss(z, torch.tensor([0, 1]), 1.0, reduction="none")
    assert torch.isfinite(out).all()
    assert out[0] == 0.0 and out[1] == pytest.approx(1e4, rel=1e-6)  # -log(1 - p_hat) = z_top - logsumexp(rest)
    z16, y, tau = _batch(1)
    half = correctness_aware_loss(z16.half(), y, tau.half(), reduction="none")
    assert half.dtype == torch.float32
    assert torch.allclose(half.double(), _reference(z16.half().double(), y, tau.half().double()), atol=1e-4)


def test_gradient_lowers_confidence_on_wrong_and_raises_it_on_right_samples():
    z, y, tau = _batch(2)
    tau = tau.clone().requires_grad_(True)
    logits = z.clone().requires_grad_(True)
    correctness_aware_loss(logits, y, tau, reduction="sum").backward()
    right = z.argmax(-1) == y
    # a larger tau lowers p_hat: descent (-grad) raises tau on wrong samples and lowers it on right ones
    assert (tau.grad[right] > 0).all() and (tau.grad[~right] < 0).all()
    # on the logits: descent moves the top logit up on right samples and down on wrong ones
    top = z.argmax(-1, keepdim=True)
    g_top = logits.grad.gather(-1, top).squeeze(-1)
    assert (g_top[right] < 0).all() and (g_top[~right] > 0).all()
    with torch.no_grad():
        conf = lambda t: (z / t.reshape(-1, 1)).softmax(-1).max(-1).values  # noqa: E731
        stepped = conf(tau - 1e-3 * tau.grad)
        before = conf(tau)
    assert (stepped[right] >= before[right]).all() and (stepped[~right] <= before[~right]).all()


def _overconfident(n: int, seed: int, scale: float = 4.0):
    """Logits ``scale * a`` with labels from ``softmax(a)``: over-confident by ``scale``; one shifted view."""
    gen = torch.Generator().manual_seed(seed)
    a = 1.5 * torch.randn(n, 6, generator=gen)
    y = torch.multinomial(a.softmax(-1), 1, generator=gen).squeeze(-1)
    view = scale * (a + 0.3 * torch.randn(n, 6, generator=gen))
    return scale * a, y, view


def test_calibrator_keeps_the_argmax_and_cuts_the_ece_of_overconfident_logits():
    z, y, view = _overconfident(3000, 0)
    zt, yt, vt = _overconfident(3000, 1)
    cal = CorrectnessAwareCalibrator().fit(z, y, generator=torch.Generator().manual_seed(0))
    out = cal(zt)
    assert torch.equal(out.argmax(-1), zt.argmax(-1))
    tau = cal.temperatures(zt)
    assert tau.shape == (3000,) and (tau > cal.tau_min).all()
    assert torch.allclose(out, zt / tau.unsqueeze(-1))
    raw = expected_calibration_error(zt.softmax(-1), yt).item()
    fixed = expected_calibration_error(out.detach().softmax(-1), yt).item()
    assert raw > 0.15 and fixed < 0.3 * raw
    assert correctness_aware_loss(z, y, cal.temperatures(z)) < correctness_aware_loss(z, y, 1.0)
    with_views = CorrectnessAwareCalibrator().fit(z, y, views=[view], generator=torch.Generator().manual_seed(0))
    assert torch.equal(with_views(zt, [vt]).argmax(-1), zt.argmax(-1))


def test_fit_is_deterministic_given_the_generator():
    z, y, _ = _overconfident(400, 2)

    def fitted(seed):
        return CorrectnessAwareCalibrator().fit(z, y, epochs=30, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(fitted(5).temperatures(z), fitted(5).temperatures(z))
    assert not torch.equal(fitted(5).temperatures(z), fitted(6).temperatures(z))


def test_bad_inputs_raise_naming_the_argument():
    z, y, tau = _batch(3, n=8)
    for temperature in (0.0, -1.0, torch.zeros(8), tau[:-1], tau.reshape(2, 4), "1"):
        with pytest.raises(ValueError, match="`temperature`"):
            correctness_aware_loss(z, y, temperature)
    with pytest.raises(ValueError, match="`reduction`"):
        correctness_aware_loss(z, y, tau, reduction="avg")
    with pytest.raises(ValueError, match="`target`"):
        correctness_aware_loss(z, y + 10, tau)
    with pytest.raises(ValueError, match="`logits`"):
        correctness_aware_loss(z[:, :1], y, tau)
    for kwargs, name in ((dict(hidden=0), "hidden"), (dict(top_k=0), "top_k"), (dict(tau_min=0.0), "tau_min")):
        with pytest.raises(ValueError, match=f"`{name}`"):
            CorrectnessAwareCalibrator(**kwargs)
    cal = CorrectnessAwareCalibrator()
    with pytest.raises(RuntimeError, match="not fitted"):
        cal(z)
    for kwargs, name in ((dict(epochs=0), "epochs"), (dict(lr=0.0), "lr"), (dict(views=z), "views"),
                         (dict(views=[z[:4]]), r"views\[0\]"), (dict(generator=1), "generator")):
        with pytest.raises(ValueError, match=f"`{name}`"):
            cal.fit(z, y, **kwargs)
    cal.fit(z, y, views=[z], epochs=2)
    with pytest.raises(ValueError, match="`views`"):
        cal(z)  # fitted with one view
    with pytest.raises(ValueError, match="`logits`"):
        cal(z[:, :3], [z[:, :3]])
