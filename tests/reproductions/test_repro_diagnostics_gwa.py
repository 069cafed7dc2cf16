"""[57] Gradient-weight alignment: a validation-free early-stopping signal that also flags mislabelled examples.

Claim (Hölzl et al., NeurIPS 2025): the alignment between per-sample gradients
and the weights, computed on the training data alone, tracks generalisation
during training (its dataset score peaks near the best early-stopping point and
falls as the network starts fitting noise) and attributes it to examples (low
alignment marks influential or mislabelled samples).

Setting: sklearn digits (split seed = run seed) with 40% symmetric label
noise, a 64-256-10 ReLU MLP, Adam lr 1e-2, batch 64, 60 epochs (long enough
to memorise much of the noise); after every epoch ``gwa`` (head scope, the
official aggregate mean / (excess kurtosis + 1.2)) on the noisy training set,
with the clean labels for its ``noisy_auroc``, and the clean test accuracy.

Measured, seeds 0..9: AUROC of -a_i for the mislabelled >= 0.90 at every epoch
from the 3rd on; GWA at the last epoch below a fifth of its peak (0.02-0.05 vs 0.9-371).
Test accuracy at the GWA peak / best epoch (oracle) / last epoch:

- 0.916/0.938/0.773, 0.938/0.942/0.816, 0.904/0.918/0.836, 0.911/0.942/0.793,
  0.942/0.962/0.833, 0.891/0.936/0.749, 0.873/0.931/0.856, 0.924/0.936/0.778,
  0.898/0.911/0.822, 0.900/0.924/0.811

so stopping at the GWA peak beats training to the end on every seed, by +1.7
to +14.6 points (mean +10.3), and loses 0.4-5.8 points (mean 2.4) to the oracle.
Per seed the oracle gap is too variable to assert (5.8 on seed 6), so the test
asserts the per-seed sign and the 3-seed means (gain >= 5, regret <= 5 points).

Not reproduced: the catalog's "peak within +-2 epochs of the best validation
accuracy" (the distance was 4-15 epochs on seeds 0..3; test accuracy is flat near its
optimum, so the best epoch is poorly defined). Observed weakness of the
official aggregate: when the alignments become two-moded its excess kurtosis
nears -1.2 and the score spikes (371 on seed 2 and 46 on seed 4, against 0.9-4.8
on the others); the argmax still lands on a good epoch, but the score's scale is
not comparable across runs. With 30% noise and 40 epochs the network did not
overfit enough for early stopping to matter (+1.6 to +4.2 points).

Runtime: about 6 s of one CPU thread.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from _train import logits_of, mean, seeded_mlp, train

from losslab.core.registry import REGISTRY
from losslab.data import make_digits
from losslab.diagnostics import gwa

SEEDS = (0, 1, 2)


def _trajectory(seed: int, rate: float = 0.4, epochs: int = 60) -> list[dict[str, float]]:
    data = REGISTRY.get("condition", "symmetric_noise").obj(make_digits(split_seed=seed),
                                                            generator=torch.Generator().manual_seed(seed), rate=rate)
    model = seeded_mlp(64, 10, seed, width=256)
    history: list[dict[str, float]] = []

    def record(epoch: int) -> None:
        g = gwa(model, data.x_train, data.y_train, clean_target=data.y_train_clean)
        acc = float((logits_of(model, data.x_test).argmax(1) == data.y_test).float().mean())
        history.append({"epoch": epoch, "gwa": g["gwa"], "noisy_auroc": g["noisy_auroc"], "test_acc": acc})

    train(model, data.x_train, data.y_train, F.cross_entropy, epochs=epochs, seed=seed, lr=1e-2, batch_size=64,
          callback=record)
    return history


def test_gwa_peak_is_a_good_early_stopping_point_and_low_alignment_flags_noisy_labels():
    gain, regret = [], []
    for seed in SEEDS:
        h = _trajectory(seed)
        peak = max(h, key=lambda r: r["gwa"])
        best = max(r["test_acc"] for r in h)
        print(f"seed {seed}: GWA peak at epoch {peak['epoch']} (test acc {peak['test_acc']:.3f}); best test acc "
              f"{best:.3f}, final {h[-1]['test_acc']:.3f}; min AUROC from epoch 3 "
              f"{min(r['noisy_auroc'] for r in h[2:]):.3f}; GWA peak {peak['gwa']:.3g}, final {h[-1]['gwa']:.3g}")
        assert all(r["noisy_auroc"] >= 0.85 for r in h[2:])  # low alignment marks the mislabelled
        assert h[-1]["gwa"] <= 0.2 * peak["gwa"]  # the score falls as the noise is fitted ...
        assert peak["test_acc"] > h[-1]["test_acc"]  # ... and its peak beats training to the end
        gain.append(peak["test_acc"] - h[-1]["test_acc"])
        regret.append(best - peak["test_acc"])
    assert mean(gain) >= 0.05  # by several points on average,
    assert mean(regret) <= 0.05  # within a few points of the oracle (test-set) choice
