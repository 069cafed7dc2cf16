"""[78] Data diet and [96] its noisy-label reading: EL2N scores from early training find the examples that matter.

Claims. [78] (Paul, Ganguli & Dziugaite, NeurIPS 2021): EL2N scores
``||softmax(f(x)) - e_y||_2``, averaged over a few initialisations a few epochs
into training, rank examples by importance; keeping the highest-scoring part of
the training set (pruning the easiest) preserves test accuracy, and the ranking
beats random pruning of the same size. [96] (Fayyaz et al., 2022): the scores
must be taken after at least one epoch (at initialisation they are
unreliable), and the highest-scoring examples are the noisy ones, so dropping
a small top portion preserves or raises test accuracy.

Shared setting: sklearn digits (1347 train / 450 test; the split seed is the
run seed), scores from ``prune_by_score`` (3 one-hidden-layer proxies of width
128, Adam lr 1e-2, batch 64), evaluation networks 64-128-10 ReLU MLPs trained
from the same seeded initialisations on every arm (paired comparison).

Measured, data diet ([78], keep 50%, scores after 3 epochs, eval Adam lr 1e-3,
batch 32, 30 epochs, mean of 2 eval inits), split seeds 0..7:

- all data      0.974 0.967 0.962 0.978 0.974 0.968 0.972 0.979
- hardest 50%   0.970 0.964 0.966 0.970 0.967 0.966 0.959 0.979  (to all: -1.3 .. +0.3 points)
- random 50%    0.954 0.957 0.950 0.964 0.966 0.958 0.951 0.953  (hardest - random: +0.1 .. +2.6)
- easiest 50%   0.900 0.914 0.902 0.932 0.926 0.913 0.907 0.887
- EL2N of two independent 3-proxy ensembles: Spearman 0.87 .. 0.95.

What does *not* hold at this scale (seeds 0..2): pruning only 30% (keep 70%)
leaves random pruning as good as EL2N (hardest 0.970/0.964/0.964, random
0.968/0.967/0.960: the catalog's "random 30% loses more" is not seen), and
pruning 70% (keep 30%) costs both 1.4-3.6 points with no clear winner (hardest
0.938/0.944/0.948, random 0.944/0.946/0.934); in an exploratory run with
weaker proxies (Adam lr 1e-3) random even won clearly at keep 30-40%, the
small-data regime in which keeping hard examples is known to hurt (Sorscher
et al., 2022). The paper's "prune half of CIFAR-10 and slightly improve" is
not reproduced: the hardest half is within about a point of, not above, all data.
The advantage over random is small (a few test images out of 450) but has the
same sign on all 8 seeds; the test asserts it per seed (>= 0) and on average
(>= 0.5 points).

Measured, noise ([96], 10% symmetric label noise, scores at initialisation vs
after 1 epoch, drop the top 10%, eval Adam lr 1e-2, batch 32, 30 epochs, which
memorises noise), split seeds 0..7:

- top-k precision for the mislabelled (k = number of noisy labels): init
  0.04 .. 0.16, after 1 epoch 0.85 .. 0.92 (base rate 0.10)
- AUROC for the mislabelled: init 0.42 .. 0.59, after 1 epoch 0.990 .. 0.996
- noise rate after dropping the top 10%: 0.009 .. 0.017
- test accuracy, all noisy data -> top 10% dropped: 0.931 -> 0.956, 0.929 -> 0.971,
  0.913 -> 0.944, 0.929 -> 0.962, 0.953 -> 0.960, 0.913 -> 0.942, 0.938 -> 0.969,
  0.931 -> 0.973 (+0.7 .. +4.2 points); in an exploratory run a random 10% drop
  changed it by -0.4 .. +1.1. With a gentler recipe (lr 1e-3, no memorisation)
  the gain vanished (-0.1 .. +1.4), so the accuracy claim needs a network that fits the noise.

Runtime: the two tests about 10 s and 5 s of one CPU thread.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from _train import logits_of, mean, seeded_mlp, train

from losslab.core.registry import REGISTRY
from losslab.data import make_digits
from losslab.data.base import SplitData
from losslab.data.conditions.pruning import prune_by_score

SEEDS = (0, 1, 2)


def _accuracy(data: SplitData, index: torch.Tensor | None, seed: int, *, lr: float, inits: int) -> float:
    """Test accuracy of MLPs trained on ``data``'s train rows ``index``, averaged over ``inits`` paired inits."""
    x, y = (data.x_train, data.y_train) if index is None else (data.x_train[index], data.y_train[index])
    accs = []
    for k in range(inits):
        model = seeded_mlp(64, 10, 100 * seed + k, width=128)
        train(model, x, y, F.cross_entropy, epochs=30, seed=100 * seed + k, lr=lr, batch_size=32)
        accs.append(float((logits_of(model, data.x_test).argmax(1) == data.y_test).float().mean()))
    return mean(accs)


def _prune(data: SplitData, seed: int, **kw) -> SplitData:
    return prune_by_score(data, generator=torch.Generator().manual_seed(seed), num_models=3, **kw)


def _data_diet(seed: int, keep_fraction: float = 0.5) -> dict[str, float]:
    data = make_digits(split_seed=seed)
    hard = _prune(data, seed, keep_fraction=keep_fraction, keep="hardest", epochs=3)
    record = hard.records[-1]
    easy_index = torch.argsort(record.changed["score"], stable=True)[: record.summary["num_kept"]]
    rand_index = torch.randperm(data.y_train.numel(), generator=torch.Generator().manual_seed(1000 + seed))
    rand_index = rand_index[: record.summary["num_kept"]]
    again = _prune(data, 1000 + seed, keep_fraction=keep_fraction, keep="hardest", epochs=3)
    acc = {arm: _accuracy(data, index, seed, lr=1e-3, inits=2) for arm, index in
           [("all", None), ("hardest", record.changed["kept_index"]), ("random", rand_index), ("easiest", easy_index)]}
    acc["rank_corr"] = float(spearmanr(record.changed["score"], again.records[-1].changed["score"])[0])
    return acc


def test_keeping_the_highest_el2n_half_preserves_accuracy_and_beats_random_pruning():
    runs = [_data_diet(s) for s in SEEDS]
    for seed, r in zip(SEEDS, runs):
        print(f"seed {seed}: {r}")
        assert abs(r["hardest"] - r["all"]) <= 0.02  # the pruned half is (nearly) as good as all data
        assert r["hardest"] >= r["random"]  # ... and at least as good as a random half
        assert r["hardest"] >= r["easiest"] + 0.02  # the ranking, not the size, carries it
        assert r["rank_corr"] >= 0.7  # scores are a property of the data, not of the proxies' seeds
    assert mean([r["hardest"] - r["random"] for r in runs]) >= 0.005


def _noisy_scores(seed: int, rate: float = 0.1, drop: float = 0.1) -> dict[str, float]:
    clean = make_digits(split_seed=seed)
    data = REGISTRY.get("condition", "symmetric_noise").obj(clean, generator=torch.Generator().manual_seed(seed),
                                                            rate=rate)
    noisy = data.y_train != data.y_train_clean
    out: dict[str, float] = {}
    for epochs in (0, 1):
        pruned = _prune(data, seed, keep_fraction=1.0 - drop, keep="easiest", epochs=epochs)
        scores = pruned.records[-1].changed["score"]
        top = torch.argsort(scores, descending=True, stable=True)[: int(noisy.sum())]
        out[f"precision@{epochs}"] = float(noisy[top].float().mean())
        out[f"auroc@{epochs}"] = float(roc_auc_score(noisy.numpy(), scores.numpy()))
        out[f"noise_after@{epochs}"] = pruned.records[-1].summary["noise_rate_after"]
    out["noise_before"] = float(noisy.float().mean())
    out["acc_all"] = _accuracy(data, None, seed, lr=1e-2, inits=1)
    out["acc_dropped"] = _accuracy(pruned, None, seed, lr=1e-2, inits=1)  # the top 10% by 1-epoch scores removed
    return out


def test_highest_el2n_after_one_epoch_are_the_mislabelled_and_dropping_them_helps():
    runs = [_noisy_scores(s) for s in SEEDS]
    for seed, r in zip(SEEDS, runs):
        print(f"seed {seed}: {r}")
        base = r["noise_before"]
        assert r["precision@1"] >= 0.75 >= 3 * base  # top-k is mostly mislabelled after one epoch
        assert r["auroc@1"] >= 0.95
        assert abs(r["auroc@0"] - 0.5) <= 0.15  # ... but not at initialisation
        assert r["precision@0"] <= 2 * base
        assert r["noise_after@1"] <= 0.3 * base
        assert r["acc_dropped"] >= r["acc_all"]
    assert mean([r["acc_dropped"] - r["acc_all"] for r in runs]) >= 0.02
