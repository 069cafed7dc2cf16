"""[27] Lazy vs rich training: the output scale alpha sets how far the weights move and whether the NTK adapts.

Claim (Kumar et al., ICLR 2024): with the centred, output-scaled model
``f = alpha (f_theta - f_theta0)`` trained on ``loss / alpha^2``, a large alpha
gives lazy (kernel) training, in which the weights barely move and the neural
tangent kernel stays at its initial value, while a small alpha gives rich
training, in which the NTK changes and aligns with the labels (feature
learning); grokking is the delayed transition from the first to the second.

Setting: the first 300 sklearn-digits training images (split seed = run seed),
the registered ``scaled`` model around a 64-128-10 ReLU MLP, loss
``mean_i 0.5 ||f(x_i) - e_{y_i}||^2 / alpha^2``, full-batch GD with lr 0.1 for
500 (fast test) or 1000 steps (the function-space speed at initialisation does
not depend on alpha). Measured: relative weight movement
``||theta - theta0|| / ||theta0||`` at the end and the centred kernel-target
alignment of the empirical NTK (``ntk_alignment`` on 100 training images) at
0, 1/4, 1/2 and all of the steps.

Fast test (alpha 0.3 vs 100, 500 steps), seeds 0..6: movement 1.21-1.24 vs
0.0039-0.0042; alignment gain 0.14-0.19 (rising at every checkpoint, e.g. seed 0
0.537 -> 0.669 -> 0.697 -> 0.724) vs at most 0.001 in absolute value.

Slow test (alpha 0.3 / 1 / 10 / 100, 1000 steps), seeds 0..4:

- movement 1.44-1.46 / 0.51-0.52 / 0.052-0.054 / 0.0052-0.0054 (exactly 1/alpha in
  the lazy range: 10 -> 100 divides it by 9.9-10.0)
- alignment gain 0.18-0.20 / 0.07-0.10 / -0.001-0.009 / at most 0.002 (seed 0:
  0.537 -> 0.735 / 0.632 / 0.541 / 0.538)
- train loss 0.015 / 0.045 / 0.09-0.10 / 0.09-0.10 (the lazy runs stop at the
  kernel-regression level); test accuracy 0.92-0.96 for all, so the grokking
  *gap* itself is not visible on digits, where the initial kernel already
  generalises; the paper's polynomial single-index task was not tried.

Runtime (one CPU thread): fast test about 6 s, slow test about 13 s.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from losslab.core.registry import REGISTRY
from losslab.core.seeding import seeded
from losslab.data import make_digits
from losslab.diagnostics import ntk_alignment

SEEDS = (0, 1, 2)


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _run(seed: int, alpha: float, steps: int) -> dict[str, object]:
    """Full-batch GD on ``loss / alpha^2``; weight movement at the end and NTK alignment at 4 checkpoints."""
    checkpoints = (0, steps // 4, steps // 2, steps)
    data = make_digits(split_seed=seed)
    x, y = data.x_train[:300], data.y_train[:300]
    with seeded(seed):
        model = REGISTRY.get("model", "scaled").obj((64,), 10, alpha=alpha, width=128, depth=1)
    theta0 = _flat(model).clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    target = F.one_hot(y, 10).float()
    alignment = {}
    for step in range(steps + 1):
        if step in checkpoints:
            alignment[step] = ntk_alignment(model, x, y, generator=torch.Generator().manual_seed(0), max_samples=100)
        if step < steps:
            opt.zero_grad(set_to_none=True)
            (0.5 * (model(x) - target).pow(2).sum(1).mean() * model.loss_scale).backward()
            opt.step()
    return {"movement": float((_flat(model) - theta0).norm() / theta0.norm()), "alignment": alignment}


def _check(runs: dict[float, dict], steps: int) -> None:
    move = {a: r["movement"] for a, r in runs.items()}
    gain = {a: r["alignment"][steps] - r["alignment"][0] for a, r in runs.items()}
    assert move[100.0] <= 0.01  # lazy: the weights hardly move ...
    assert move[0.3] >= 100 * move[100.0]
    assert abs(gain[100.0]) <= 0.01  # ... and the kernel stays put
    assert gain[0.3] >= 0.1  # rich: the NTK aligns with the labels ...
    rich = list(runs[0.3]["alignment"].values())
    assert all(b > a for a, b in zip(rich, rich[1:]))  # ... more and more as training goes on
    if 10.0 in runs:
        assert 8.0 <= move[10.0] / move[100.0] <= 12.0  # lazy movement is proportional to 1/alpha
        assert gain[0.3] > gain[1.0] > gain[10.0]  # the smaller alpha, the more feature learning


def _sweep(seed: int, alphas: tuple[float, ...], steps: int) -> dict[float, dict]:
    runs = {a: _run(seed, a, steps) for a in alphas}
    for a, r in runs.items():
        print(f"seed {seed} alpha {a}: movement {r['movement']:.4g}, alignment "
              f"{ {s: round(v, 4) for s, v in r['alignment'].items()} }")
    return runs


def test_large_output_scale_is_lazy_and_small_output_scale_learns_features():
    for seed in SEEDS:
        _check(_sweep(seed, (0.3, 100.0), steps=500), steps=500)


@pytest.mark.slow
def test_feature_learning_grows_as_the_output_scale_shrinks():
    for seed in SEEDS:
        _check(_sweep(seed, (0.3, 1.0, 10.0, 100.0), steps=1000), steps=1000)
