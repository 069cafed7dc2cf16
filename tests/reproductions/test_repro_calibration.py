"""Post-hoc calibration on digits: temperature scaling (Guo et al. 2017) and the correctness-aware calibrator [80].

Claims. Guo et al.: a modern network trained to zero training loss is
over-confident, and one temperature fitted by NLL on a validation set removes
most of its ECE at unchanged accuracy. [80]: a calibrator trained with a BCE
between confidence and correctness, on the validation set, calibrates
competitively with the state of the art (temperature scaling here). Folklore
tested alongside: label smoothing's raw-calibration difference from CE shrinks
once both are temperature-scaled.

Setup: sklearn digits split 50/50 (split seed = run seed); from the training
half, 120 samples train a 64-256-256-256-10 ReLU MLP (Adam lr 1e-2, batch 64,
100 epochs: zero training error, over-confident on test) and the other 778
form the validation set on which the calibrators are fitted; ECE (15
equal-width bins) is measured on the 899 test samples. CE and label smoothing
(eps = 0.1), seeds 0, 1, 2.

Measured (seeds 0 / 1 / 2, test ECE):

- CE raw 0.109 / 0.083 / 0.090; after temperature scaling (T = 4.7 / 3.7 / 3.1)
  0.029 / 0.033 / 0.024; correctness-aware 0.028 / 0.035 / 0.032.
- label smoothing raw 0.135 / 0.154 / 0.156 (under-confident: T = 0.61 / 0.58 / 0.50);
  after temperature scaling 0.022 / 0.022 / 0.025.

Asserted (every seed): TS cuts the CE test ECE by more than 50% relative; the
CA calibrator cuts it by more than 50% too and lands within 0.015 of TS (it
does not beat TS robustly here: better on seed 0, worse on 1 and 2); neither
changes the argmax. Over the 3 seeds, the LS-vs-CE ECE gap after temperature
scaling is less than half the raw gap. On this task label smoothing has no raw
edge to lose (it is *worse* calibrated raw, under-confident); after scaling
the two are within 0.01 of each other. The slow test adds transformed views
(one-pixel shifts) to the CA calibrator and reports, without asserting, whether
they help (measured on seeds 0-4: CA ECE 0.028 / 0.035 / 0.032 / 0.037 / 0.028
without views, 0.033 / 0.025 / 0.040 / 0.036 / 0.035 with: no consistent gain).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _train import logits_of, mean, seeded_mlp, train

from losslab.calibration import CorrectnessAwareCalibrator, fit_temperature
from losslab.data import make_digits
from losslab.losses import label_smoothing_cross_entropy
from losslab.metrics import expected_calibration_error

SEEDS = (0, 1, 2)
N_FIT = 120
SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def _ece(logits, target) -> float:
    return expected_calibration_error(logits.detach().softmax(-1), target).item()


def _shifted(x, dx, dy):
    return torch.roll(x.view(-1, 8, 8), shifts=(dy, dx), dims=(1, 2)).reshape(-1, 64)


def _trained(epsilon: float, seed: int):
    data = make_digits(test_fraction=0.5, split_seed=seed)
    perm = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(seed))
    fit, val = perm[:N_FIT], perm[N_FIT:]
    model = seeded_mlp(64, 10, seed, width=256, depth=3)

    def loss_fn(z, y):
        return F.cross_entropy(z, y) if epsilon == 0.0 else label_smoothing_cross_entropy(z, y, epsilon=epsilon)

    train(model, data.x_train[fit], data.y_train[fit], loss_fn, epochs=100, seed=seed, lr=1e-2)
    return model, data.x_train[val], data.y_train[val], data.x_test, data.y_test


def _run(epsilon: float, seed: int, *, ca: bool, views: bool = False) -> dict[str, float]:
    model, xv, yv, xt, yt = _trained(epsilon, seed)
    zv, zt = logits_of(model, xv), logits_of(model, xt)
    t = fit_temperature(zv, yv)
    out = {"raw": _ece(zt, yt), "T": t, "ts": _ece(zt / t, yt)}
    assert torch.equal((zt / t).argmax(-1), zt.argmax(-1))
    if ca:
        gen = torch.Generator().manual_seed(seed)
        vv = [logits_of(model, _shifted(xv, *s)) for s in SHIFTS] if views else None
        vt = [logits_of(model, _shifted(xt, *s)) for s in SHIFTS] if views else None
        zc = CorrectnessAwareCalibrator().fit(zv, yv, views=vv, generator=gen)(zt, vt)
        assert torch.equal(zc.argmax(-1), zt.argmax(-1))
        out["ca"] = _ece(zc, yt)
    return out


def test_temperature_scaling_and_ca_calibrator_fix_an_overconfident_mlp():
    ce = [_run(0.0, s, ca=True) for s in SEEDS]
    ls = [_run(0.1, s, ca=False) for s in SEEDS]
    print(f"CE: {ce}\nLS(0.1): {ls}")
    for r in ce:
        assert r["raw"] > 0.06 and r["T"] > 1.5  # over-confident
        assert r["ts"] < 0.5 * r["raw"]
        assert r["ca"] < 0.5 * r["raw"] and r["ca"] <= r["ts"] + 0.015
    for r in ls:
        assert r["T"] < 1.0 and r["ts"] < 0.5 * r["raw"]  # LS is under-confident here; TS sharpens it
    raw_gap = abs(mean([r["raw"] for r in ls]) - mean([r["raw"] for r in ce]))
    ts_gap = abs(mean([r["ts"] for r in ls]) - mean([r["ts"] for r in ce]))
    assert ts_gap < 0.5 * raw_gap


@pytest.mark.slow
def test_ca_calibrator_with_shifted_views_measured_not_asserted():
    runs = [(_run(0.0, s, ca=True), _run(0.0, s, ca=True, views=True)) for s in (0, 1, 2, 3, 4)]
    for plain, viewed in runs:
        print(f"raw {plain['raw']:.4f} ts {plain['ts']:.4f} ca {plain['ca']:.4f} ca+views {viewed['ca']:.4f}")
        assert viewed["ca"] < viewed["raw"]  # it still calibrates; whether views help is the measurement
