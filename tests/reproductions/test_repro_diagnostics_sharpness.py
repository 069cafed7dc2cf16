"""[287]/[59] sharpness under full-batch GD (progressive sharpening, edge of stability) and [106] SGD's flatness.

Claim 1 (Cohen et al., ICLR 2021, the observation behind the sharpness curves
of [287] and the curvature tracking of [59]): under full-batch gradient descent
with step size eta, the sharpness lambda_max of the training-loss Hessian
rises during training (progressive sharpening) until it reaches 2/eta, and
then hovers just above 2/eta instead of rising further (edge of stability); a
smaller eta lets it climb higher.

Setting: the first 300 training images of sklearn digits (split seed = run
seed), a 64-64-64-10 tanh MLP, loss ``mean_i 0.5 ||f(x_i) - e_{y_i}||^2``,
plain full-batch GD, ``hessian_max_eig`` (power iteration, tol 1e-3, at most
50 HVPs) every 100 steps.

Measured, eta = 0.2 (2/eta = 10), seeds 0..7: lambda_max at step 0 between
4.6 and 7.9, at the edge within 100-300 steps, and from step 300 to 800
between 10.1 and 11.5 (ratio eta*lambda/2 in [1.01, 1.15]; to step 1500 the same
band); the largest value anywhere 12.4 (seed 1, step 200, the overshoot on arrival).
eta = 0.1 (2/eta = 20), seeds 0..4: lambda_max rises step after step, 6.9 ->
8.6 -> 10.7 -> ... -> 19.7 at step 800 (seed 0; the others alike), crosses 20 and
from step 1000 to 1500 stays in [18.7, 21.6]; at step 1500 it is 20.9 20.9 20.7
against 10.2 10.3 10.6 for eta = 0.2 (seeds 0..2).

Not asserted: [287]'s own claim (width-independent sharpness under muP, spread
under NTK parametrisation) needs a muP parametrisation that losslab does not
provide; the [59] L2-lowers-curvature check was not tried.

Claim 2 ([106], Liu et al., ICML 2023): among solutions with the same training
loss, SGD's mini-batch noise prefers flatter ones (lower Hessian trace).
Setting: the first 500 digits training images, a 64-64-64-10 ReLU MLP,
cross-entropy, SGD lr 0.1 without momentum, batch 8 vs full batch (500), both
stopped at the first step whose full training loss is below 0.05; trace by
``hessian_trace`` (50 Rademacher probes). Measured, seeds 0..2: loss 0.047/0.047/0.050
vs 0.050/0.050/0.050, trace 23.7/23.3/21.8 (stderr <= 1.8) vs 49.8/50.7/39.0 (stderr
<= 3.9), i.e. a ratio 0.46-0.56; lambda_max 3.2-3.9 vs 8.1-8.7; test accuracy
equal within 1.5 points (the paper's downstream-transfer link is not tested).
Seeds 3..7: trace 19.5-22.3 vs 38.0-42.2 (ratio 0.47-0.53). With lr 0.05, batch 16 vs 500 at
loss 0.1 the gap is smaller (ratio about 0.8).

Runtime (one CPU thread): the edge-of-stability test about 3 s, the flatness
test about 4 s; the slow step-size comparison (1500 steps, two step sizes) about 8 s.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losslab.core.seeding import seeded
from losslab.data import make_digits
from losslab.diagnostics import hessian_max_eig, hessian_trace
from losslab.models import build_mlp

SEEDS = (0, 1, 2)


def _mse(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample ``0.5 ||z - e_y||^2``: the loss GD runs on and the Hessian is taken of."""
    return 0.5 * (logits - F.one_hot(target, logits.shape[1]).to(logits)).pow(2).sum(1)


def _sharpness_curve(seed: int, lr: float, steps: int, every: int = 100) -> dict[int, float]:
    """``{step: lambda_max}`` along full-batch GD with step size ``lr``."""
    data = make_digits(split_seed=seed)
    x, y = data.x_train[:300], data.y_train[:300]
    with seeded(seed):
        model = build_mlp((64,), 10, width=64, depth=2, activation="tanh")
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    curve = {}
    for step in range(steps + 1):
        if step % every == 0:
            curve[step] = hessian_max_eig(model, x, y, loss_fn=_mse, generator=torch.Generator().manual_seed(step),
                                          tol=1e-3, max_iters=50)
        if step < steps:
            opt.zero_grad(set_to_none=True)
            _mse(model(x), y).mean().backward()
            opt.step()
    return curve


def _check_edge_of_stability(curve: dict[int, float], lr: float, settled_from: int) -> None:
    edge = 2.0 / lr
    assert curve[0] <= 0.85 * edge  # starts below the edge ...
    assert max(curve.values()) >= max(0.95 * edge, 1.25 * curve[0])  # ... sharpens up to it ...
    settled = [v for s, v in curve.items() if s >= settled_from]
    assert 0.85 * edge <= min(settled) and max(settled) <= 1.3 * edge  # ... and then hovers at it
    assert max(curve.values()) <= 1.5 * edge  # never far above


def test_gradient_descent_sharpens_to_the_edge_of_stability_and_stays_there():
    for seed in SEEDS:
        curve = _sharpness_curve(seed, lr=0.2, steps=800)
        print(f"seed {seed}: lambda_max {[round(v, 2) for v in curve.values()]} (2/lr = 10)")
        _check_edge_of_stability(curve, 0.2, settled_from=300)


@pytest.mark.slow
def test_a_smaller_step_size_sharpens_progressively_to_its_own_higher_edge():
    for seed in SEEDS:
        large, small = _sharpness_curve(seed, lr=0.2, steps=1500), _sharpness_curve(seed, lr=0.1, steps=1500)
        print(f"seed {seed}: lr 0.2 {[round(v, 2) for v in large.values()]}\n"
              f"        lr 0.1 {[round(v, 2) for v in small.values()]}")
        _check_edge_of_stability(large, 0.2, settled_from=300)
        _check_edge_of_stability(small, 0.1, settled_from=1000)
        rising = [small[s] for s in range(0, 800, 100)]
        assert all(b > a for a, b in zip(rising, rising[1:]))  # progressive sharpening, step after step
        assert small[1500] >= 1.5 * large[1500]


def _trace_at_loss(seed: int, batch_size: int, loss_level: float = 0.05) -> dict[str, float]:
    """SGD (lr 0.1) until the full training loss first drops below ``loss_level``; then curvature and accuracy."""
    data = make_digits(split_seed=seed)
    x, y = data.x_train[:500], data.y_train[:500]
    with seeded(seed):
        model = build_mlp((64,), 10, width=64, depth=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(seed)
    loss, steps = float("inf"), 0
    while loss >= loss_level:
        for idx in torch.randperm(y.numel(), generator=gen).split(batch_size):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            steps += 1
            with torch.no_grad():
                loss = float(F.cross_entropy(model(x), y))
            if loss < loss_level or steps > 20000:
                break
    trace = hessian_trace(model, x, y, num_probes=50, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        test_acc = float((model(data.x_test).argmax(1) == data.y_test).float().mean())
    return {"loss": loss, "steps": steps, "trace": trace["trace"], "stderr": trace["stderr"],
            "lambda_max": hessian_max_eig(model, x, y, tol=1e-3, max_iters=50), "test_acc": test_acc}


def test_small_batch_sgd_reaches_the_same_training_loss_at_a_flatter_point():
    for seed in SEEDS:
        small, full = _trace_at_loss(seed, 8), _trace_at_loss(seed, 500)
        print(f"seed {seed}: batch 8 {small}\n        batch 500 {full}")
        assert abs(small["loss"] - full["loss"]) <= 0.0075  # the same training loss (0.0425-0.05) ...
        assert small["trace"] <= 0.7 * full["trace"]  # ... at a flatter point,
        assert full["trace"] - small["trace"] >= 3 * math.hypot(small["stderr"], full["stderr"])  # beyond probe noise
        assert small["lambda_max"] <= 0.7 * full["lambda_max"]
