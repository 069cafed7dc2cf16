r"""The vectorized executor: the runs of a pack train as one stacked model in one process.

Member ``k`` is set up exactly as :func:`losslab.engine.train.train_run` sets
up its run, from the same seed streams: its own conditioned data, its model
built from ``derive_seed(seed, "model")``, its batch order from
``derive_seed(seed, "batches")`` and its LR schedule. Each step then does, for
all K members at once,

.. math::
    z_k = f(\theta_k; x_k[\pi_k]), \quad
    L = \sum_k w_k \frac{1}{B} \sum_i \ell_k(z_{k,i}, y_{k,i}), \quad
    \theta_k \leftarrow \mathrm{opt}_k(\theta_k, \nabla_{\theta_k} L)

and since :math:`\nabla_{\theta_k} L` is member ``k``'s own gradient, its
result is the sequential run's (bit for bit on CPU for the MLP with SGD/Adam
and per-sample losses; see ``tests/engine/test_vmap.py``). Evaluation,
checkpoints and the stored result go through the sequential path's own
functions, per member. A member whose epoch loss is not finite fails with the
sequential error text and leaves the pack; the others go on.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from losslab.core.seeding import derive_seed, make_generator
from losslab.engine.executor import _labels
from losslab.engine.objective import build_loss, checkpoint_bytes
from losslab.engine.packing import Member, Pack, member_key, plan_packs
from losslab.engine.stacked import StackedOptimizer, stack_models
from losslab.engine.store import RunResult
from losslab.engine.train import (
    LRSchedule,
    build_model,
    check_train_loss,
    environment,
    error_text,
    evaluate,
    history_row,
)

__all__ = ["Pack", "plan_packs", "train_pack"]


class _Rates:
    """The one parameter group :class:`LRSchedule` sets, so a member's rate is read exactly as its run sets it."""

    def __init__(self, lr: float) -> None:
        self.param_groups = [{"lr": lr}]

    def __call__(self, schedule: LRSchedule, step: int) -> float:
        schedule.at(step)
        return self.param_groups[0]["lr"]


def _runs_of_equal(keys: list[str]) -> list[tuple[int, int]]:
    """Maximal ``[start, stop)`` ranges of equal consecutive keys."""
    out, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            out.append((start, i))
            start = i
    return out


class PackTrainer:
    """Trains one :class:`~losslab.engine.packing.Pack`; :meth:`run` returns one RunResult per member."""

    def __init__(self, pack: Pack) -> None:
        if len(pack.members) < 1:
            raise ValueError("Expected a pack with at least one member, but it is empty.")
        self.members: list[Member] = list(pack.members)
        self.train = self.members[0].run.config["train"]
        self.device = torch.device(self.train["device"])
        self.started = time.time()
        env = {**environment(), "executor": "vmap", "pack_size": len(self.members)}
        self.results = [RunResult(m.run.run_id, "failed", m.run.config, _labels(m.run), environment=env,
                                  started_at=self.started) for m in self.members]
        for result, m in zip(self.results, self.members):
            result.records = [{"name": r.name, "params": r.params, "summary": r.summary} for r in m.data.records]
        self.models = [build_model(m.run.config, m.data).to(self.device) for m in self.members]
        self.losses = [self._loss(m) for m in self.members]
        self.orders = [make_generator(derive_seed(m.run.config["seed"], "batches")) for m in self.members]
        n = len(self.members[0].data.y_train)
        self.steps_per_epoch = -(-n // self.train["batch_size"])
        self.alive = list(range(len(self.members)))
        self.stack = stack_models(self.models)
        self.optimizer = StackedOptimizer(self.train["optimizer"], self.stack.params, [])
        self._arrange()

    def _loss(self, m: Member) -> tuple[Any, float]:
        _, per_sample = build_loss(m.run.config["objective"], m.data)
        return per_sample, float(m.run.config["objective"].get("weight", 1.0))

    def _arrange(self) -> None:
        """(Re)build the per-member structures for the members still alive."""
        alive = [self.members[i] for i in self.alive]
        keys = [member_key(m.run.config) for m in alive]
        ranges = _runs_of_equal(keys)
        trains = [alive[a].run.config["train"] for a, _ in ranges]
        self.optimizer.groups = [(a, b, {"weight_decay": t["weight_decay"], "momentum": t["momentum"]})
                                 for (a, b), t in zip(ranges, trains)]
        self.rates = [_Rates(t["lr"]) for t in trains]
        self.schedules = [LRSchedule(r, t, steps_per_epoch=self.steps_per_epoch) for r, t in zip(self.rates, trains)]
        self.loss_ranges = [(a, b, *self.losses[self.alive[a]]) for a, b in ranges]
        xs = [m.data.x_train for m in alive]
        self.shared_x = all(x is xs[0] for x in xs)
        self.x = (xs[0] if self.shared_x else torch.stack(xs)).to(self.device)
        self.y = torch.stack([m.data.y_train for m in alive]).to(self.device)
        self.rows = torch.arange(len(alive), device=self.device).unsqueeze(1)

    def _drop(self, dead: list[int]) -> None:
        """Members at positions ``dead`` (of the alive list) leave the pack."""
        keep = [p for p in range(len(self.alive)) if p not in dead]
        index = torch.tensor(keep, device=self.device)
        self.stack.keep(index)
        self.optimizer.keep(self.stack.params, index, [])
        self.alive = [self.alive[p] for p in keep]
        if self.alive:
            self._arrange()

    def _objective(self, logits: Tensor, target: Tensor) -> Tensor:
        """Per-member losses ``(K,)``: each member's loss, mean-reduced over its own batch, times its weight."""
        out = []
        for a, b, per_sample, weight in self.loss_ranges:
            per = per_sample(logits[a:b].flatten(0, 1), target[a:b].flatten()).view(b - a, -1)
            mean = per.sum(1) / per.shape[1]
            out.append(mean if weight == 1.0 else weight * mean)  # x 1.0 is exact: skipping it saves a kernel
        return out[0] if len(out) == 1 else torch.cat(out)

    def _batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        x = self.x[idx] if self.shared_x else self.x[self.rows, idx]
        return x, self.y.gather(1, idx)

    def step(self, idx: Tensor, step: int) -> Tensor:
        """One optimizer step of every member on its batch ``idx[k]``; returns the detached losses ``(K,)``."""
        lrs = [rate(schedule, step) for rate, schedule in zip(self.rates, self.schedules)]
        x, y = self._batch(idx)
        with torch.enable_grad():
            for p in self.stack.params:
                p.grad = None
            losses = self._objective(self.stack.forward(x), y)
            losses.sum().backward()
        self.optimizer.step(lrs)
        return losses.detach()

    def train_epoch(self, step: int) -> list[float]:
        """One epoch of steps from global step ``step``: each member's batches in its own order; its mean loss."""
        n, batch = len(self.members[0].data.y_train), self.train["batch_size"]
        perm = torch.stack([torch.randperm(n, generator=self.orders[i]) for i in self.alive]).to(self.device)
        total = torch.zeros(len(self.alive), device=self.device)
        for start in range(0, n, batch):
            idx = perm[:, start:start + batch]
            total += self.step(idx, step) * idx.shape[1]
            step += 1
        return [float(t) / n for t in total.cpu()]

    def run(self) -> list[RunResult]:
        epochs = self.train["epochs"]
        for epoch in range(1, epochs + 1):
            self._end_epoch(epoch, epochs, self.train_epoch((epoch - 1) * self.steps_per_epoch))
            if not self.alive:
                break
        return self.results

    def _end_epoch(self, epoch: int, epochs: int, train_loss: list[float]) -> None:
        dead = []
        for pos, loss in enumerate(train_loss):
            try:
                check_train_loss(loss, epoch)
            except FloatingPointError as exc:  # this member stops; the others go on
                result = self.results[self.alive[pos]]
                result.error, result.finished_at = error_text(exc), time.time()
                dead.append(pos)
        last = epoch == epochs
        for pos, i in enumerate(self.alive):
            if pos in dead or not (epoch % self.train["eval_every"] == 0 or last):
                continue
            m, model, result = self.members[i], self.models[i], self.results[i]
            metrics = evaluate(self.stack.unstack_into(pos, model), m.data, self.device, full=last)
            result.history.append({"epoch": epoch, **history_row(train_loss[pos], metrics)})
            if last:
                result.final = {"train_loss": train_loss[pos], **metrics}
                result.checkpoint = checkpoint_bytes(model, m.run.config["model"], m.data)
                result.status, result.finished_at = "done", time.time()
        if dead:
            self._drop(dead)


def train_pack(pack: Pack) -> list[RunResult]:
    """Train every member of ``pack`` together; one RunResult per member, as the sequential path stores it.

    Raises whatever setting up or stepping the pack raises (the executor then
    trains the members sequentially); a member's divergence is its own failed result.
    """
    return PackTrainer(pack).run()
