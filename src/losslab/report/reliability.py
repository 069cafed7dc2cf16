"""Reliability diagrams from stored checkpoints: test-set probabilities recomputed, binned as ECE bins them.

The store keeps each finished run's final weights, not its predictions, so the
test probabilities are recomputed: the run's data (dataset and conditions, from
its seed) is rebuilt, the model is loaded from its checkpoint, and
:func:`losslab.engine.train.predict_probs` gives the same float64 softmax the run
was scored with. The bins are the sufficient statistics of
:func:`losslab.metrics.expected_calibration_error` (equal-width, per-bin
``count``, ``Σ conf``, ``Σ correct``), so seeds pool by adding them and the
ECE drawn is exactly that metric's value on the pooled predictions.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from losslab.engine.plan import RunSpec
from losslab.engine.store import Store
# The metric's own private steps (not a re-implementation), so the diagram and the stored ECE cannot disagree.
from losslab.metrics.calibration import _ce_compute, _ece_binned, _ece_update

N_BINS = 15  # the default of expected_calibration_error, which produced the stored test_ece


@dataclass
class Bins:
    """Equal-width confidence bins over ``[0, 1]``: sample count, summed top-1 confidence, summed correctness."""

    count: np.ndarray
    sum_conf: np.ndarray
    sum_acc: np.ndarray

    def __add__(self, other: "Bins") -> "Bins":
        return Bins(self.count + other.count, self.sum_conf + other.sum_conf, self.sum_acc + other.sum_acc)

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, len(self.count) + 1)

    @property
    def confidence(self) -> np.ndarray:
        """Mean top-1 confidence per bin (NaN where empty)."""
        return np.divide(self.sum_conf, self.count, out=np.full(len(self.count), np.nan), where=self.count > 0)

    @property
    def accuracy(self) -> np.ndarray:
        """Accuracy per bin (NaN where empty)."""
        return np.divide(self.sum_acc, self.count, out=np.full(len(self.count), np.nan), where=self.count > 0)

    @property
    def ece(self) -> float:
        r""":math:`\sum_b \tfrac{n_b}{N} |a_b - c_b|`, by the metric's own reduction."""
        return float(_ce_compute(*(torch.from_numpy(a) for a in (self.count, self.sum_conf, self.sum_acc)), "l1"))


def reliability_bins(probs: Tensor, target: Tensor, *, n_bins: int = N_BINS) -> Bins:
    """The bins of :func:`~losslab.metrics.expected_calibration_error` for ``probs (N, C)`` and ``target (N,)``."""
    if probs.ndim != 2 or target.shape != probs.shape[:1]:
        raise ValueError(f"Expected `probs` of shape (N, C) and `target` of shape (N,), but got "
                         f"{tuple(probs.shape)} and {tuple(target.shape)}.")
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"Expected `n_bins` to be an integer >= 1, but got {n_bins!r}.")
    conf, acc = _ece_update(probs.double(), target)
    count, sum_conf, sum_acc = _ece_binned(conf, acc, n_bins, "width")
    return Bins(count.numpy().astype(np.int64), sum_conf.numpy(), sum_acc.numpy())


def run_test_probs(run: RunSpec, state: bytes) -> tuple[Tensor, Tensor]:
    """``(probs (N, C) float64, target (N,))`` of a stored run on its own test split."""
    from losslab.engine.objective import load_teacher
    from losslab.engine.train import build_data, predict_probs

    data = build_data(run.config)
    model = load_teacher(state, data, torch.device("cpu"), run.run_id)
    return predict_probs(model, data.x_test), data.y_test


@dataclass
class Reliability:
    """One objective in one (dataset, condition): its seeds' bins pooled, and each seed's own ECE."""

    bins: Bins
    run_ece: dict[str, float] = field(default_factory=dict)  # run_id -> ECE of that run alone


def collect_reliability(plan: list[RunSpec], store: Store, done: set[str], *, n_bins: int = N_BINS,
                        ) -> tuple[dict[tuple[str, str], dict[str, Reliability]], dict[str, str]]:
    """``(group -> objective -> Reliability, skipped run_id -> reason)`` over the finished runs in ``done``.

    Runs are visited grouped by their data (dataset, conditions, seed) so each
    conditioned dataset is built once. A checkpoint that cannot be rebuilt into a
    plain model (e.g. an objective that replaced the head) is skipped with its reason.
    """
    runs = sorted((r for r in plan if r.run_id in done), key=lambda r: (
        json.dumps(r.config["dataset"], sort_keys=True), json.dumps(r.config["conditions"], sort_keys=True), r.seed))
    out: dict[tuple[str, str], dict[str, Reliability]] = defaultdict(dict)
    skipped: dict[str, str] = {}
    for run in runs:
        state = store.checkpoint(run.run_id)
        if state is None:
            skipped[run.run_id] = "no stored checkpoint"
            continue
        try:
            probs, target = run_test_probs(run, state)
        except Exception as exc:  # one unloadable model must not cost the whole report
            skipped[run.run_id] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            continue
        bins = reliability_bins(probs, target, n_bins=n_bins)
        cell = out[(run.dataset, run.condition)]
        if run.objective in cell:
            cell[run.objective].bins = cell[run.objective].bins + bins
        else:
            cell[run.objective] = Reliability(bins)
        cell[run.objective].run_ece[run.run_id] = bins.ece
    order = {r.objective: i for i, r in enumerate(plan)}
    return ({g: dict(sorted(c.items(), key=lambda kv: order[kv[0]])) for g, c in out.items()}, skipped)
