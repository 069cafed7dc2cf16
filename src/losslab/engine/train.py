"""One run: build the data, apply the conditions, train, evaluate, return a RunResult.

Everything random is derived from the run's seed: the conditions draw from a
generator seeded by (seed, dataset, conditions), so every objective of a
comparison sees the same noisy labels for the same seed (a paired design);
the model's initialisation and the batch order come from their own streams.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

import losslab
from losslab.core.registry import REGISTRY
from losslab.core.seeding import derive_seed, make_generator, seeded
from losslab.data.base import SplitData
from losslab.data.conditions.bags import bag_proportions
from losslab.engine.diagnostics import DiagnosticRunner
from losslab.engine.objective import (
    Objective,
    ObjectiveClosure,
    checkpoint_bytes,
    freeze,
    load_teacher,
    make_optimizer,
)
from losslab.engine.store import RunResult
from losslab.metrics import (
    accuracy,
    aurc,
    brier_score,
    classwise_ece,
    expected_calibration_error,
    negative_log_likelihood,
)
from losslab.scaling.lr_schedule import decay_steps, lr_at_step

EVAL_BATCH = 4096
AUGMENT_RANK = 3  # augmentations act on images: per-sample shape (C, H, W)


@functools.lru_cache(maxsize=8)
def _dataset(name: str, params_json: str, fingerprint: str | None = None) -> SplitData:
    # `fingerprint` (of user files) only keys the cache: edited data is read again, not served stale
    return REGISTRY.get("dataset", name).obj(**json.loads(params_json))


def build_data(config: dict[str, Any]) -> SplitData:
    """The run's dataset with its conditions applied, in order.

    Every objective of a comparison shares the same conditioned data for a
    seed, so it is cached per process: a costly condition (Late Stopping
    trains models to clean the labels) runs once, not once per objective.
    """
    data = _conditioned(json.dumps(config["dataset"], sort_keys=True),
                        json.dumps(config["conditions"], sort_keys=True), config["seed"])
    if config.get("validation"):  # tuning trials only: evaluate on held-out training samples, never the test split
        from losslab.data.splits import validation_split

        generator = make_generator(derive_seed(config["seed"], "validation"))
        data = validation_split(data, fraction=config["validation"], generator=generator)
    return data


@functools.lru_cache(maxsize=4)
def _conditioned(dataset_json: str, conditions_json: str, seed: int) -> SplitData:
    ds, conditions = json.loads(dataset_json), json.loads(conditions_json)
    data = _dataset(ds["name"], json.dumps(ds["params"], sort_keys=True), ds.get("fingerprint"))
    generator = make_generator(derive_seed(seed, "conditions", ds, conditions))
    for cond in conditions:
        data = REGISTRY.get("condition", cond["name"]).obj(data, generator=generator, **cond["params"])
    return data


def clear_data_cache() -> None:
    """Drop the per-process dataset caches (after a preflight in a parent whose workers load their own)."""
    _conditioned.cache_clear()
    _dataset.cache_clear()


def build_model(config: dict[str, Any], data: SplitData) -> nn.Module:
    m = config["model"]
    with seeded(derive_seed(config["seed"], "model")):
        return REGISTRY.get("model", m["name"]).obj(data.input_shape, data.num_classes, **m["params"])


@torch.no_grad()
def predict_probs(model: nn.Module, x: Tensor) -> Tensor:
    """Softmax probabilities in float64 (so calibration metrics see no float32 rounding)."""
    model.eval()
    out = [torch.softmax(model(x[i: i + EVAL_BATCH]).double(), dim=-1) for i in range(0, len(x), EVAL_BATCH)]
    model.train()
    return torch.cat(out)


def evaluate(model: nn.Module, data: SplitData, device: torch.device, *, full: bool) -> dict[str, float]:
    """Test metrics (and train fit) of the current model; ``full`` adds the costlier final metrics."""
    p_test = predict_probs(model, data.x_test.to(device)).cpu()
    p_train = predict_probs(model, data.x_train.to(device)).cpu()
    y, y_tr, y_clean = data.y_test, data.y_train, data.y_train_clean
    out = {
        "test_accuracy": float(accuracy(p_test, y, validate_args=False)),
        "test_nll": float(negative_log_likelihood(p_test, y, validate_args=False)),
        "test_ece": float(expected_calibration_error(p_test, y, validate_args=False)),
        "train_accuracy": float(accuracy(p_train, y_tr, validate_args=False)),
        "train_clean_accuracy": float(accuracy(p_train, y_clean, validate_args=False)),
    }
    noisy = y_tr != y_clean
    if bool(noisy.any()):
        # Share of corrupted training labels the model reproduces: the memorisation of noise.
        out["noisy_memorized"] = float((p_train[noisy].argmax(-1) == y_tr[noisy]).double().mean())
    if full:
        out.update({
            "test_brier": float(brier_score(p_test, y, validate_args=False)),
            "test_ece_adaptive": float(expected_calibration_error(p_test, y, binning="mass", validate_args=False)),
            "test_mce": float(expected_calibration_error(p_test, y, norm="max", validate_args=False)),
            "test_classwise_ece": float(classwise_ece(p_test, y, validate_args=False)),
            "test_aurc": float(aurc(p_test, y, validate_args=False)),
            "test_probe_accuracy": linear_probe_accuracy(model, data, device),
        })
    return out


@torch.no_grad()
def linear_probe_accuracy(model: nn.Module, data: SplitData, device: torch.device) -> float:
    """Test accuracy of a logistic-regression probe fit on the frozen ``model.features`` of the train split.

    It judges the representation rather than the head, which is what matters
    when the outputs are not trained on labels (random-teacher distillation [290]).
    The probe sees the labels as the learner did (possibly noisy).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    model.eval()
    feats = [torch.cat([model.features(x[i: i + EVAL_BATCH].to(device)).double().cpu()
                        for i in range(0, len(x), EVAL_BATCH)]).numpy() for x in (data.x_train, data.x_test)]
    model.train()
    if len(torch.unique(data.y_train)) < 2:
        return float("nan")
    scaler = StandardScaler().fit(feats[0])
    with warnings.catch_warnings():  # an unconverged probe is still a probe; its score says how good
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe = LogisticRegression(max_iter=300).fit(scaler.transform(feats[0]), data.y_train.numpy())
    return float((probe.predict(scaler.transform(feats[1])) == data.y_test.numpy()).mean())


def environment() -> dict[str, Any]:
    """What a difference between two stored runs could be explained by."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "losslab": losslab.__version__,
        "torch": torch.__version__,
        "numpy": __import__("numpy").__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


class StopRun(Exception):
    """Raised by an ``on_epoch`` callback to end a run early (a pruned tuning trial); not a failure."""


EpochCallback = Callable[[int, dict[str, float]], None]


def train_run(config: dict[str, Any], run_id: str, labels: dict[str, Any],
              teacher_states: dict[str, bytes] | None = None, *, on_epoch: EpochCallback | None = None) -> RunResult:
    """Run one config to completion; any exception becomes a failed RunResult, never a crash.

    ``teacher_states`` maps teacher run ids to their stored weights (:meth:`Store.checkpoint`).
    ``on_epoch(epoch, row)`` sees each stored history row as it is made; it may raise
    :class:`StopRun`, which ends the run and propagates to the caller.
    """
    started = time.time()
    result = RunResult(run_id, "failed", config, labels, environment=environment(), started_at=started)
    try:
        _train(config, result, teacher_states or {}, on_epoch)
        result.status = "done"
    except StopRun:
        raise
    except Exception as exc:  # a bad run must not take the grid down; the error is stored
        result.error = error_text(exc)
    result.finished_at = time.time()
    return result


def error_text(exc: BaseException) -> str:
    """A failed run's stored error: ``Type: message (file.py:line)`` of the frame that raised."""
    last = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{type(exc).__name__}: {exc} ({os.path.basename(last.filename)}:{last.lineno})"


def check_train_loss(train_loss: float, epoch: int) -> None:
    """Raise ``FloatingPointError`` on a non-finite epoch loss (every executor raises it here, so the text agrees)."""
    if train_loss != train_loss or abs(train_loss) == float("inf"):
        raise FloatingPointError(f"training diverged: non-finite loss at epoch {epoch}")


def history_row(train_loss: float, metrics: dict[str, float]) -> dict[str, float]:
    """An evaluated epoch's stored row: the train loss and the per-epoch metrics (final-only ones wait)."""
    return {"train_loss": train_loss, **{k: v for k, v in metrics.items() if not _final_only(k)}}


class InstanceBatches:
    """Shuffled mini-batches of instances with their (possibly corrupted) labels."""

    def __init__(self, data: SplitData, batch_size: int, device: torch.device) -> None:
        self.y, self.batch_size, self.n = data.y_train.to(device), batch_size, len(data.y_train)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __call__(self, order: torch.Generator) -> Iterator[tuple[Tensor, tuple[Tensor, ...]]]:
        for idx in torch.randperm(self.n, generator=order).split(self.batch_size):
            idx = idx.to(self.y.device)
            yield idx, (self.y[idx],)


class BagBatches:
    """Shuffled mini-batches of whole bags; the learner sees only each bag's label proportions.

    A batch holds about ``batch_size`` instances, never part of a bag, and
    passes ``(bag_proportions (b, C), bags (n,))`` with batch-local bag ids.
    """

    def __init__(self, data: SplitData, batch_size: int, device: torch.device) -> None:
        # Renumber bags densely: a later condition (e.g. long_tail) may have emptied some.
        _, bags = torch.unique(data.bags, return_inverse=True)
        self.props = bag_proportions(data.y_train, bags, data.num_classes).to(device)
        self.members = [m.to(device) for m in torch.argsort(bags, stable=True).split(
            torch.bincount(bags).tolist())]
        mean_size = len(bags) / len(self.members)
        self.bags_per_batch = max(1, round(batch_size / mean_size))

    def __len__(self) -> int:
        return -(-len(self.members) // self.bags_per_batch)

    def __call__(self, order: torch.Generator) -> Iterator[tuple[Tensor, tuple[Tensor, ...]]]:
        for chunk in torch.randperm(len(self.members), generator=order).split(self.bags_per_batch):
            parts = [self.members[b] for b in chunk.tolist()]
            local = torch.repeat_interleave(torch.arange(len(parts)), torch.tensor([len(p) for p in parts]))
            yield torch.cat(parts), (self.props[chunk.to(self.props.device)], local.to(self.props.device))


def build_teachers(config: dict[str, Any], data: SplitData, model: nn.Module, device: torch.device,
                   states: dict[str, bytes]) -> list[nn.Module]:
    """The distillation teachers: stored runs (an ensemble when several) or a random, frozen network."""
    teacher = (config["objective"].get("distill") or {}).get("teacher")
    if not teacher:
        return []
    if teacher.get("random"):
        with seeded(derive_seed(config["seed"], "random_teacher")):
            net = REGISTRY.get("model", config["model"]["name"]).obj(
                data.input_shape, data.num_classes, **config["model"]["params"]).to(device)
        if teacher.get("init_eps") is not None:  # the student starts near its random teacher [290]
            from losslab.distill import init_near  # a catalog helper, not a registry component

            init_near(model, net, teacher["init_eps"], generator=make_generator(derive_seed(config["seed"], "init")))
        return [freeze(net)]
    missing = [rid for rid in teacher["runs"] if states.get(rid) is None]
    if missing:
        raise ValueError(f"Expected stored weights for teacher run(s) {', '.join(missing)}, but the store has none; "
                         "run the teacher first (a teacher given by `objective` is run automatically).")
    return [load_teacher(states[rid], data, device, rid) for rid in teacher["runs"]]


def _train(config: dict[str, Any], result: RunResult, teacher_states: dict[str, bytes],
           on_epoch: EpochCallback | None = None) -> None:
    train = config["train"]
    device = torch.device(train["device"])
    data = build_data(config)
    result.records = [{"name": r.name, "params": r.params, "summary": r.summary} for r in data.records]
    model = build_model(config, data).to(device)
    teachers = build_teachers(config, data, model, device, teacher_states)
    mixing = make_generator(derive_seed(config["seed"], "mixing"), device)
    # Terms may change the model (parametrizations, a new head) here, before the optimizer sees it.
    objective = Objective(config["objective"], data, model, device, teachers, mixing, config["seed"]).to(device)
    params = list(model.parameters()) + objective.parameters()
    optimizer = make_optimizer(params, train, config["objective"].get("optimizer"))
    diagnostics = DiagnosticRunner(config.get("diagnostics", []), data, model, device, config["seed"],
                                   objective.per_sample)
    if config.get("diagnostics"):
        result.history.append({"epoch": 0, **diagnostics.run(model, epoch=0, step=0, last=False)})
    x = data.x_train.to(device)
    augment = _augmentation(train.get("augment", "none"), data, config["seed"], device)
    batches = (BagBatches if data.bags is not None else InstanceBatches)(data, train["batch_size"], device)
    order = make_generator(derive_seed(config["seed"], "batches"))
    step, epochs = 0, train["epochs"]
    schedule = LRSchedule(optimizer, train, steps_per_epoch=len(batches))
    for epoch in range(1, epochs + 1):
        total, seen = torch.zeros((), device=device), 0
        for idx, targets in batches(order):
            schedule.at(step)
            step += 1
            closure = ObjectiveClosure(objective, model, augment(x[idx]), targets, idx, params,
                                       epoch=epoch, epochs=epochs, step=step)
            loss = optimizer.step(closure)
            total += loss.detach() * len(idx)
            seen += len(idx)
        train_loss = float(total) / seen
        check_train_loss(train_loss, epoch)
        last = epoch == epochs
        row: dict[str, float] = {}
        if epoch % train["eval_every"] == 0 or last:
            metrics = evaluate(model, data, device, full=last)
            row.update(history_row(train_loss, metrics))
        row.update(diagnostics.run(model, epoch=epoch, step=step, last=last))
        if row:
            result.history.append({"epoch": epoch, **row})
            if on_epoch is not None:
                on_epoch(epoch, row)
    result.final = {"train_loss": train_loss, **metrics}
    if (record := diagnostics.record()) is not None:
        result.records.append(record)
    result.checkpoint = checkpoint_bytes(model, config["model"], data)


class LRSchedule:
    r"""Sets every parameter group's learning rate before each step.

    ``constant``: :math:`\eta_t = \eta`. ``cosine``: a linear warm-up over the first
    ``W`` steps, :math:`\eta_t = \eta (t + 1) / W`, then
    :math:`\eta_t = \tfrac{\eta}{2}\big(1 + \cos(\pi (t - W) / (T - W))\big)` down to 0 at
    :math:`t = T`, for ``T`` steps in all (``W`` = ``warmup_epochs`` x steps per epoch).
    ``wsd`` (warmup-stable-decay): the warm-up, then :math:`\eta` until the last
    :math:`D = \mathrm{round}(\text{decay\_fraction}\cdot T)` steps, which decay linearly,
    :math:`\eta_t = \eta (T - t) / D`. The rates come from
    :func:`losslab.scaling.lr_schedule.lr_at_step`, the one definition the LR-annealing
    law [273] reads a run's S1 and S2 from.
    Optimizer wrappers share their base optimizer's groups, so this reaches them too.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, train: dict[str, Any], *, steps_per_epoch: int) -> None:
        self.groups, self.base = optimizer.param_groups, train["lr"]
        self.kind = train.get("lr_schedule", "constant")
        self.warmup = train.get("warmup_epochs", 0) * steps_per_epoch
        self.total = train["epochs"] * steps_per_epoch
        self.decay = decay_steps(self.total, train.get("decay_fraction", 0.2))

    def lr(self, step: int) -> float:
        return lr_at_step(self.kind, step, lr=self.base, warmup=self.warmup, total=self.total, decay=self.decay)

    def at(self, step: int) -> None:
        if self.kind == "constant" and not self.warmup:
            return  # leave the optimizer's own value untouched (standalone optimizers may scale it)
        lr = self.lr(step)
        for group in self.groups:
            group["lr"] = lr


def _augmentation(name: str, data: SplitData, seed: int, device: torch.device) -> Any:
    """The batch transform of ``train.augment``, drawing from its own stream of the run's seed."""
    if name == "none":
        return lambda xb: xb
    from losslab.data.augment import AUGMENTATIONS

    if len(data.input_shape) != AUGMENT_RANK:
        raise ValueError(f"train.augment {name!r} needs image inputs (C, H, W), but the samples have shape "
                         f"{tuple(data.input_shape)}")
    fn, generator = AUGMENTATIONS[name], make_generator(derive_seed(seed, "augment"), device)
    return lambda xb: fn(xb, generator)


def _final_only(name: str) -> bool:
    return name in ("test_brier", "test_ece_adaptive", "test_mce", "test_classwise_ece", "test_aurc",
                    "test_probe_accuracy")
