"""[93] Neural collapse: balanced classes collapse to a simplex ETF, imbalanced bias-free MSE to an orthogonal frame.

Claim (Dang et al., ICML 2023): trained past zero training error, last-layer
features collapse to their class means (NC1), the centred means approach a
simplex equiangular tight frame (NC2) and the classifier rows align with them
(NC3); the paper proves it for deep linear networks on unconstrained features
with MSE and CE, and checks it on practical networks. For imbalanced data,
bias-free, with MSE and weight decay, the class means and classifier rows
become *orthogonal* vectors whose lengths depend on the class sizes.

Balanced setting (a practical network): ``make_gaussian_mixture`` with 4
classes, 25 train samples each, dimension 20, separation 2; a 20-64-64-64-4
ReLU MLP; full-batch SGD, momentum 0.9, lr 0.1, weight decay 1e-3, MSE on
one-hot targets; ``neural_collapse`` on the training set at steps 0, 100, 300
and 1000 (train error is 0 from step 100 on).

Measured, seeds 0..4 (step 0 -> 100 -> 1000):

- NC1      1.56/2.56/1.46/1.49/1.97 -> 0.030/0.040/0.028/0.047/0.050 -> 0.0012/0.0008/0.0016/0.0011/0.0009
- NC2 etf  0.49/0.68/0.51/0.63/0.32 -> 0.19/0.22/0.25/0.29/0.11 -> 0.17/0.11/0.18/0.22/0.13
- NC3      1.45/1.45/1.38/1.33/1.39 -> 0.50/0.53/0.57/0.55/0.50 -> 0.27/0.23/0.31/0.31/0.25

Seeds 5..8 alike (NC1 at step 1000 0.0009-0.0012, NC2 0.13-0.24, NC3 0.25-0.34).
NC1 falls by 17-56x *after* the training error reached zero (three orders of
magnitude from initialisation), NC3 roughly halves in the same stretch, NC2
falls from initialisation but is not monotone after step 100 (seed 4: 0.11 ->
0.13 at step 1000, 0.11 at step 2000), so the test asserts NC2 against
initialisation only. With cross-entropy (same network, lr 0.05) NC1 fell only
2-3x after zero error within 2000 steps, so MSE is used.

Imbalanced setting (the paper's model): unconstrained features (one free
16-d vector per sample, an ``nn.Embedding``) followed by one bias-free 16x16
linear layer (the deep linear part) and a bias-free linear head; class sizes
200/100/50/25; full-batch SGD, momentum 0.9, lr 0.5, weight decay 1e-3 on
everything, loss ``mean_i 0.5 ||W h_i - e_{y_i}||^2``, 1000 steps.
Measured (seeds 0..5, identical to 3 digits): ``orthogonal_frame_deviation``
means/weights 0.000 (from 0.19-0.55), alignment 1.000, NC1 0.000; classifier-row
norms 2.41 > 2.14 > 1.90 > 1.68 and class-mean norms 0.41 < 0.46 < 0.51 < 0.57
(200 -> 25 samples): rows grow and means shrink with the class size, as in
the one-layer closed form (:func:`imbalanced_collapse_geometry`).

The catalog's imbalanced check with a ReLU MLP (biases in the hidden layers,
bias-free head) was tried too: within 1000 steps the means stayed far from
orthogonal (deviation 0.66-0.71), so it is not asserted.

Runtime: about 3 s and 1 s of one CPU thread.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from losslab.core.seeding import seeded
from losslab.data import make_gaussian_mixture
from losslab.diagnostics import neural_collapse, orthogonal_frame_deviation
from losslab.models import build_mlp

SEEDS = (0, 1, 2)
CHECKPOINTS = (0, 100, 300, 1000)


def _balanced(seed: int) -> dict[int, dict[str, float]]:
    """NC metrics at each checkpoint of full-batch SGD with MSE on a balanced 4-class mixture."""
    data = make_gaussian_mixture(num_classes=4, dim=20, n_train=100, n_test=10, separation=2.0, seed=seed)
    x, y = data.x_train, data.y_train
    with seeded(seed):
        model = build_mlp((20,), 4, width=64, depth=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    out = {}
    for step in range(CHECKPOINTS[-1] + 1):
        if step in CHECKPOINTS:
            with torch.no_grad():
                train_error = float((model(x).argmax(1) != y).float().mean())
            out[step] = {**neural_collapse(model, x, y), "train_error": train_error}
        opt.zero_grad(set_to_none=True)
        F.mse_loss(model(x), F.one_hot(y, 4).float()).backward()
        opt.step()
    return out


def test_nc1_to_nc3_fall_after_zero_training_error_on_a_balanced_mixture():
    for seed in SEEDS:
        nc = _balanced(seed)
        for step, v in nc.items():
            print(f"seed {seed} step {step}: nc1 {v['nc1']:.4g} nc2 {v['nc2_etf']:.3f} nc3 {v['nc3']:.3f} "
                  f"nc4 {v['nc4']:.3f} train error {v['train_error']:.3f}")
        early, mid, late = nc[100], nc[300], nc[1000]
        assert early["train_error"] == 0.0  # the terminal phase starts by the first checkpoint
        assert early["nc1"] > mid["nc1"] > late["nc1"]
        assert late["nc1"] <= early["nc1"] / 10 and late["nc1"] <= nc[0]["nc1"] / 300
        assert early["nc3"] > mid["nc3"] > late["nc3"] and late["nc3"] <= 0.7 * early["nc3"]
        assert late["nc2_etf"] <= 0.3 and late["nc2_etf"] <= 0.7 * nc[0]["nc2_etf"]
        assert late["nc4"] == 0.0


class _DeepLinearUFM(nn.Module):
    """Unconstrained features ``h_i`` (one free vector per sample index), one bias-free linear layer, bias-free head."""

    def __init__(self, n: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.h = nn.Embedding(n, dim)
        self.linear = nn.Linear(dim, dim, bias=False)
        self.head = nn.Linear(dim, num_classes, bias=False)

    def features(self, index: torch.Tensor) -> torch.Tensor:
        return self.linear(self.h(index))

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(index))


def _imbalanced(seed: int, counts: tuple[int, ...] = (200, 100, 50, 25)) -> dict:
    y = torch.cat([torch.full((k,), c) for c, k in enumerate(counts)])
    index = torch.arange(y.numel())
    with seeded(seed):
        model = _DeepLinearUFM(y.numel(), 16, len(counts))
    before = orthogonal_frame_deviation(model, index, y)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    target = F.one_hot(y, len(counts)).float()
    for _ in range(1000):
        opt.zero_grad(set_to_none=True)
        (0.5 * (model(index) - target).pow(2).sum(1).mean()).backward()
        opt.step()
    with torch.no_grad():
        h = model.features(index)
        mean_norms = torch.stack([h[y == c].mean(0).norm() for c in range(len(counts))])
        weight_norms = model.head.weight.norm(dim=1)
    return {"before": before, "after": orthogonal_frame_deviation(model, index, y),
            "nc1": neural_collapse(model, index, y)["nc1"], "mean_norms": mean_norms, "weight_norms": weight_norms}


def _predicted_norms(counts: tuple[int, ...], weight_decay: float, factors: int = 3) -> tuple[torch.Tensor, ...]:
    r"""Row and class-mean norms at the optimum, from a scalar problem per class (an independent derivation).

    With :math:`Z = W_2 W_1 H` (``factors`` = 3 matrices, each decayed by :math:`\lambda`),
    :math:`\min \sum_l \|W_l\|_F^2` over factorisations of ``Z`` is
    :math:`3\sum_i \sigma_i(Z)^{2/3}`, reached by balanced factors. If the optimum
    is the orthogonal frame, ``Z`` maps class ``k`` to :math:`a_k e_k`, with singular
    value :math:`\sigma_k = \sqrt{n_k}\,a_k`, and :math:`a_k` minimises
    :math:`\frac{n_k}{2N}(a - 1)^2 + \frac{3\lambda}{2}(\sqrt{n_k}\,a)^{2/3}`. Then
    :math:`\|w_k\| = \sigma_k^{1/3}` and the class mean of :math:`W_1 H` has norm
    :math:`\sigma_k^{2/3}/\sqrt{n_k}`.
    """
    n = torch.tensor(counts, dtype=torch.float64)
    total, p = float(n.sum()), 2.0 / factors
    lo, hi = torch.full_like(n, 0.5), torch.ones_like(n)
    for _ in range(100):  # bisection on the derivative, increasing in a on [0.5, 1] here
        a = (lo + hi) / 2
        slope = n / total * (a - 1) + weight_decay * n.sqrt() ** p * a ** (p - 1)
        lo, hi = torch.where(slope < 0, a, lo), torch.where(slope < 0, hi, a)
    sigma = n.sqrt() * (lo + hi) / 2
    return sigma ** (1.0 / factors), sigma ** (2.0 / factors) / n.sqrt()


def test_imbalanced_bias_free_mse_converges_to_an_orthogonal_frame_with_size_ordered_lengths():
    rows, means = _predicted_norms((200, 100, 50, 25), 1e-3)
    print(f"predicted row norms {rows}, mean norms {means}")
    for seed in SEEDS:
        r = _imbalanced(seed)
        print(f"seed {seed}: {r}")
        assert r["before"]["means"] >= 0.1 and r["before"]["weights"] >= 0.1
        assert r["after"]["means"] <= 0.01 and r["after"]["weights"] <= 0.01  # mutually orthogonal
        assert r["after"]["alignment"] >= 0.999  # w_k parallel to mu_k
        assert r["nc1"] <= 1e-3
        # Classes are listed from largest to smallest: rows shrink, means grow, strictly ...
        assert bool((r["weight_norms"].diff() < -0.05).all())
        assert bool((r["mean_norms"].diff() > 0.02).all())
        # ... to the lengths of the per-class optimum.
        torch.testing.assert_close(r["weight_norms"].double(), rows, rtol=0.005, atol=0.0)
        torch.testing.assert_close(r["mean_norms"].double(), means, rtol=0.005, atol=0.0)
