"""[273] LR-annealing scaling law: fit on a constant-LR and a cosine run, predict a WSD run's final loss.

Claim (Tissue et al. 2024, arXiv:2408.11029): the loss curve under any LR
schedule follows ``L(s) = L0 + A * S1(s)^-alpha - C * S2(s)``, with ``S1`` the
summed LR (forward area) and ``S2`` the momentum-smoothed summed LR decrease
(annealing area), so a fit on one or two schedules predicts another.

Setup: MNIST-1D with 12,000 samples (10,800 train, 1,200 test), a 40-64-64-10
MLP, Adam at peak LR 0.01, batch 32, 3 epochs (1,011 steps), one warm-up epoch,
the same initialisation and batch order for all three schedules. The learning
rates come from the engine's own definition (``training_schedule``: constant,
cosine, and ``wsd`` with ``decay_fraction`` 0.2). The test loss is measured
every 10 steps; points after the first 10% of steps are fitted. The momentum
decay ``lambda`` of ``S2`` is chosen from {0.9, 0.95, 0.99, 0.995, 0.999} by
the fit's objective on the two fitting runs only (the WSD run is never seen).

Measured (CPU, seed 0; chosen lambda 0.9): the WSD run ends at test loss
0.967, the constant run at 1.083 (annealing gains 11%). Fitted on constant +
cosine, the law predicts 0.927 for the WSD run's final loss: relative error
-4.2% (the constant run's final loss, as a prediction, is off by +11.9%). In
an exploratory run that fitted from step 200 on, lambda 0.99 gave +0.6% and
the paper's 0.999 gave +14.5%: with ~1,000 steps, 0.999 remembers the whole
run, S2 barely differs between schedules and the fit sets C = 0.
About 50 s on a shared 2-core CPU, so it is marked slow; the default suite
checks that the engine's schedule and the one S1/S2 are computed from are
the same (tests/scaling/test_lr_schedule.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losslab.core.seeding import seeded
from losslab.data.mnist1d import make_mnist1d
from losslab.models import build_mlp
from losslab.scaling import annealing_areas, fit
from losslab.scaling.lr_schedule import training_schedule

DECAYS = (0.9, 0.95, 0.99, 0.995, 0.999)


def _curve(data, train: dict, batch: int, every: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adam under the engine's schedule for ``train``: (lr per step, eval steps, test loss at them)."""
    x, y = data.x_train, data.y_train
    spe = len(y) // batch
    lrs = training_schedule(train, spe)
    with seeded(0):
        model = build_mlp((x.shape[1],), 10, width=64, depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=train["lr"])
    order = torch.Generator().manual_seed(1)
    steps, losses, step = [], [], 0
    for _ in range(train["epochs"]):
        perm = torch.randperm(len(y), generator=order)
        for i in range(spe):
            idx = perm[i * batch: (i + 1) * batch]
            for group in opt.param_groups:
                group["lr"] = float(lrs[step])
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % every == 0:
                with torch.no_grad():
                    losses.append(float(F.cross_entropy(model(data.x_test), data.y_test)))
                steps.append(step)
    return lrs, np.array(steps), np.array(losses)


def _features(run, decay: float, skip: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lrs, steps, losses = run
    s1, s2 = annealing_areas(lrs, decay=decay)
    keep = steps > skip
    return s1[steps[keep] - 1], s2[steps[keep] - 1], losses[keep]


def _experiment(num_samples: int, epochs: int) -> dict:
    torch.manual_seed(0)
    data = make_mnist1d(num_samples=num_samples, train_split=0.9)
    base = {"lr": 0.01, "epochs": epochs, "warmup_epochs": 1}
    runs = {kind: _curve(data, {**base, "lr_schedule": kind, **extra}, 32, 10)
            for kind, extra in (("constant", {}), ("cosine", {}), ("wsd", {"decay_fraction": 0.2}))}
    skip = int(0.1 * runs["wsd"][0].size)
    fits = {}
    for decay in DECAYS:
        parts = [_features(runs[k], decay, skip) for k in ("constant", "cosine")]
        fits[decay] = fit("lr_annealing", {"S1": np.concatenate([p[0] for p in parts]),
                                           "S2": np.concatenate([p[1] for p in parts])},
                          np.concatenate([p[2] for p in parts]))
    decay = min(fits, key=lambda d: fits[d].objective)  # chosen on the fitting runs only
    s1, s2, observed = _features(runs["wsd"], decay, skip)
    predicted = float(fits[decay].predict({"S1": s1[-1:], "S2": s2[-1:]})[0])
    return {"decay": decay, "observed": float(observed[-1]), "predicted": predicted,
            "rel_error": predicted / observed[-1] - 1, "constant_final": float(runs["constant"][2][-1])}


@pytest.mark.slow
def test_wsd_final_loss_from_constant_and_cosine():
    out = _experiment(num_samples=12000, epochs=3)
    print(out)
    assert out["observed"] < 0.95 * out["constant_final"], out
    assert abs(out["rel_error"]) < 0.05, out
