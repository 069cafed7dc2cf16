"""Which pending runs can train together as one stacked model (a *pack*), and why the others cannot.

Runs pack when they share the model architecture, the data shapes, the
optimizer kind, batch size, epochs and evaluation cadence, and differ only in
their seed (hence their data, initialisation and batch order), in plain numbers
of the optimizer (``lr``, ``weight_decay``, ``momentum``, the LR schedule) and
in the loss (its name, hyper-parameters and weight). The packer is
conservative: anything it does not understand (regularizers, teachers, mixing,
optimizer wrappers, diagnostics, augmentation, bag data, batch-level or
sampling losses, models with buffers or dropout) trains on the ordinary
sequential path, and the reason is reported.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from losslab.core.registry import REGISTRY
from losslab.data.base import SplitData
from losslab.engine.plan import RunSpec, canonical_json

# Per-member train settings (each member gets its own optimizer slice and LR schedule).
SCHEDULE_KEYS = ("lr_schedule", "warmup_epochs", "decay_fraction")
MEMBER_KEYS = ("lr", "weight_decay", "momentum", *SCHEDULE_KEYS)
# Train settings the whole pack shares (one loop, one batch shape, one device).
SHARED_KEYS = ("optimizer", "batch_size", "epochs", "eval_every", "device", "augment")
# Loss tags whose losses are per-sample functions of (logits, hard labels): mean = sum of 'none' / N.
PACKABLE_LOSS_TAGS = frozenset({"soft_target"})
OBJECTIVE_KEYS = frozenset({"name", "params", "weight"})
MAX_PACK = 64  # bounds the work a crash loses and the activations held at once
STACK_BYTES = 2**31  # stacked training inputs above this split a pack (when members do not share them)


@dataclass
class Member:
    """One run of a pack with its conditioned data (built once, at planning)."""

    run: RunSpec
    data: SplitData


@dataclass
class Pack:
    members: list[Member]

    @property
    def runs(self) -> list[RunSpec]:
        return [m.run for m in self.members]


@dataclass
class PackPlan:
    """Packs to train vectorized, and the runs left to the sequential path with the reason for each."""

    packs: list[Pack] = field(default_factory=list)
    alone: list[tuple[RunSpec, str]] = field(default_factory=list)

    def describe(self) -> str:
        """One line: how many runs train in how many packs, and why the rest do not."""
        packed = sum(len(p.members) for p in self.packs)
        total = packed + len(self.alone)
        sizes = ", ".join(str(len(p.members)) for p in self.packs)
        head = (f"{packed} of {total} runs train vectorized in {len(self.packs)} pack(s) ({sizes})"
                if self.packs else f"none of {total} runs can train vectorized")
        if not self.alone:
            return head
        why = Counter(reason for _, reason in self.alone)
        reasons = "; ".join(f"{n}: {reason}" for reason, n in why.most_common())
        return f"{head}; {len(self.alone)} run sequentially ({reasons})"


def member_key(config: dict[str, Any]) -> str:
    """Members with equal keys share one optimizer slice and one loss call (same numbers, same loss)."""
    train = config["train"]
    objective = config["objective"]
    return canonical_json([[train.get(k) for k in MEMBER_KEYS], objective["name"], objective["params"],
                           float(objective.get("weight", 1.0))])


def config_problem(config: dict[str, Any]) -> str | None:
    """Why a run's config keeps it out of every pack (without building anything), or None."""
    if config.get("diagnostics"):
        return "diagnostics"
    objective = config["objective"]
    extra = sorted(set(objective) - OBJECTIVE_KEYS)
    if extra:
        names = {"distill": "distillation", "optimizer": "optimizer wrapper", "regularizers": "regularizers"}
        return ", ".join(names.get(k, k) for k in extra)
    if "name" not in objective:
        return "no loss"
    entry = REGISTRY.get("loss", objective["name"])
    if not entry.tags <= PACKABLE_LOSS_TAGS:
        return f"loss {entry.name!r} ({', '.join(sorted(entry.tags - PACKABLE_LOSS_TAGS))})"
    if {"generator", "prior"} & set(inspect.signature(entry.obj).parameters):
        return f"loss {entry.name!r} draws samples or needs a prior"
    train = config["train"]
    unknown = sorted(set(train) - set(MEMBER_KEYS) - set(SHARED_KEYS))
    if unknown:
        return f"train.{unknown[0]} is not supported vectorized"
    if train.get("augment", "none") != "none":
        return "augmentation"
    if train["optimizer"] not in ("adam", "adamw", "sgd"):
        return f"optimizer {train['optimizer']!r}"
    return None


def plan_packs(runs: list[RunSpec], *, max_pack: int = MAX_PACK) -> PackPlan:
    """Group ``runs`` into packs of at least two; every run lands in exactly one pack or in ``alone``.

    Builds each candidate's data (the per-process cache then serves it to
    training) and, once per architecture, a model to check that it stacks.
    """
    if not isinstance(max_pack, int) or isinstance(max_pack, bool) or max_pack < 2:
        raise ValueError(f"Expected `max_pack` to be an int of at least 2, but got {max_pack!r}.")
    from losslab.engine.train import build_data

    plan = PackPlan()
    buckets: dict[str, list[Member]] = {}
    model_problems: dict[str, str | None] = {}
    loss_problems: dict[str, str | None] = {}
    for run in runs:
        reason = config_problem(run.config)
        data = None
        if reason is None:
            try:
                data = build_data(run.config)
            except Exception as exc:  # the sequential path stores the same failure as a failed run
                reason = f"its data cannot be built ({type(exc).__name__})"
        if reason is None:
            reason = _data_problem(run, data, model_problems, loss_problems)
        if reason is not None:
            plan.alone.append((run, reason))
            continue
        buckets.setdefault(_pack_key(run, data), []).append(Member(run, data))
    for members in buckets.values():
        members.sort(key=lambda m: member_key(m.run.config))
        for chunk in _chunks(members, _chunk_limit(members, max_pack)):
            if len(chunk) == 1:
                plan.alone.append((chunk[0].run, "no other run to pack with"))
            else:
                plan.packs.append(Pack(chunk))
    return plan


def _pack_key(run: RunSpec, data: SplitData) -> str:
    train = run.config["train"]
    return canonical_json([run.config["model"], list(data.input_shape), data.num_classes, len(data.y_train),
                           len(data.y_test), str(data.x_train.dtype), [train.get(k) for k in SHARED_KEYS]])


def _data_problem(run: RunSpec, data: SplitData, models: dict[str, str | None],
                  losses: dict[str, str | None]) -> str | None:
    if data.bags is not None:
        return "bag dataset"
    if not data.x_train.dtype.is_floating_point:
        return "non-float inputs"
    key = canonical_json([run.config["model"], list(data.input_shape), data.num_classes])
    if key not in models:
        models[key] = _model_problem(run.config, data)
    if models[key] is not None:
        return models[key]
    key = canonical_json([run.config["objective"], data.num_classes])
    if key not in losses:
        losses[key] = _loss_problem(run.config["objective"], data)
    return losses[key]


def _model_problem(config: dict[str, Any], data: SplitData) -> str | None:
    from losslab.engine.stacked import stack_models, stacking_problem
    from losslab.engine.train import build_model

    try:
        model = build_model(config, data)
        problem = stacking_problem(model)
        if problem is None:
            with torch.no_grad():
                x = data.x_train[:2]
                stacked = stack_models([model, model])
                out = stacked.forward(torch.stack([x, x]))
                if not torch.allclose(out[0], model(x), rtol=1e-4, atol=1e-5):
                    problem = "the model's stacked forward differs from its own"
    except Exception as exc:  # anything the generic route cannot trace: leave it sequential
        problem = f"the model does not stack ({type(exc).__name__})"
    return None if problem is None else f"model {config['model']['name']!r}: {problem}"


def _loss_problem(objective: dict[str, Any], data: SplitData) -> str | None:
    """A packed loss is reduced per member as ``sum(per_sample) / B``; check that this is its mean."""
    from losslab.engine.objective import build_loss

    name = objective["name"]
    try:
        fn, per_sample = build_loss(objective, data)
        gen = torch.Generator().manual_seed(0)
        logits = torch.randn(16, data.num_classes, generator=gen) * 3
        target = torch.randint(0, data.num_classes, (16,), generator=gen)
        mean, per = fn(logits, target), per_sample(logits, target)
        ok = per.shape == (16,) and math.isclose(float(mean), float(per.sum() / 16), rel_tol=1e-5, abs_tol=1e-6)
    except Exception as exc:
        return f"loss {name!r} cannot be checked ({type(exc).__name__})"
    return None if ok else f"loss {name!r} is not a mean of per-sample losses"


def _chunk_limit(members: list[Member], max_pack: int) -> int:
    if len({id(m.data.x_train) for m in members}) == 1:
        return max_pack  # one shared input tensor: members index it, nothing is stacked
    per = members[0].data.x_train.element_size() * members[0].data.x_train.numel()
    return max(1, min(max_pack, STACK_BYTES // max(per, 1)))


def _chunks(items: list[Member], limit: int) -> list[list[Member]]:
    """Near-equal consecutive chunks of at most ``limit`` (16 + 1 splits 9 + 8, not 16 + 1)."""
    n = -(-len(items) // limit)
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        stop = start + size + (i < extra)
        out.append(items[start:stop])
        start = stop
    return out

