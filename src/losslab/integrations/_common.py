"""What the framework adapters share: an objective description resolved like a spec and built by the engine.

Nothing here imports Lightning or transformers; the adapters add only the
framework glue. An objective description is what a spec's ``objectives:``
entry holds: a registry loss name (``"gce"``), ``{"name": "gce", "params":
{"q": 0.7}}``, or a composed objective ``{"loss": ..., "regularizers": [...],
"distill": ..., "mixing": ...}``. It is validated by the spec's own model and
resolved through the registry, so its errors read like spec errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from losslab.core.registry import REGISTRY
from losslab.core.seeding import derive_seed, make_generator
from losslab.core.validation import check_consistent_batch, check_number, check_rank, check_tensor, fail
from losslab.data.base import SplitData
from losslab.engine import spec as spec_mod
from losslab.engine.objective import Objective

# Parts of a spec objective that need the engine around them (its train loop, its run store).
_ENGINE_ONLY = {"train": "set training options in your own loop or Trainer",
                "optimizer": "wrap your optimizer yourself (e.g. losslab.optim.SAM) in configure_optimizers"}
_HINT = ("With an adapter, pass `train_data=(inputs, target)` for per-sample terms, `teacher=` for distillation, "
         "and give the model `features(x)` and a `head` module for feature terms.")


def missing_extra(module: str, extra: str) -> ImportError:
    """The one-line error an adapter raises when its optional dependency is not installed."""
    return ImportError(f"{module} needs `pip install 'losslab[{extra}]'`")


def objective_config(objective: str | Mapping[str, Any]) -> dict[str, Any]:
    """The engine config of one objective description (see the module docstring).

    Raises:
        ValueError: on an unknown component or hyper-parameter (with a did-you-mean and the valid
            names), a malformed description, a ``sweep`` giving several settings, a teacher given as a
            spec source (``runs``/``objective``), or an engine-only key (``train``, ``optimizer``).
    """
    if isinstance(objective, str):
        raw: dict[str, Any] = {"name": objective}
    elif isinstance(objective, Mapping):
        raw = dict(objective)
    else:
        fail("objective", "a registry loss name or a dict like {'name': 'gce', 'params': {'q': 0.7}}",
             type(objective).__name__)
    for key, why in _ENGINE_ONLY.items():
        if key in raw:
            raise ValueError(f"Expected no `objective.{key}` in an adapter objective, but got one; {why}.")
    distill = raw.get("distill")
    if isinstance(distill, Mapping) and distill.get("teacher") is not None:
        raise ValueError("Expected no `objective.distill.teacher` in an adapter objective (pass the teacher "
                         "module as `teacher=`), but got one.")
    try:
        parsed = spec_mod.Objective.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("objective", *first["loc"]))
        raise ValueError(f"Invalid {where}: {first['msg'].removeprefix('Value error, ')}.") from None
    settings = spec_mod.objective_settings(parsed, "objective")
    if len(settings) != 1:
        raise ValueError(f"Expected one objective setting, but its `sweep` gives {len(settings)}; an adapter "
                         "trains one objective (run a spec to compare several).")
    return settings[0][0]


class AdapterObjective(Objective):
    """The engine's :class:`~losslab.engine.objective.Objective` on a user's model and optional training set.

    Only the setup context differs: values the user did not supply are None, so
    a term that needs one fails at construction naming it, and ``feature_dim``
    is measured only on a model that has ``features``.
    """

    def __init__(self, config: dict[str, Any], data: SplitData, model: nn.Module, device: torch.device, *,
                 has_train: bool, teachers: Sequence[nn.Module], seed: int) -> None:
        self._has_train = has_train
        try:
            super().__init__(config, data, model, device, teachers,
                             make_generator(derive_seed(seed, "mixing"), device), seed)
        except ValueError as exc:
            if "Expected the objective to provide" not in str(exc):
                raise
            raise ValueError(f"{exc} {_HINT}") from None

    def _setup_context(self, data: SplitData, model: nn.Module, device: torch.device) -> dict[str, Any]:
        if self._has_train and callable(getattr(model, "features", None)):
            return super()._setup_context(data, model, device)
        given = self._has_train
        return {"num_samples": len(data.y_train) if given else None, "num_classes": data.num_classes,
                "feature_dim": None, "model": model,
                "teacher": self.teachers[0] if len(self.teachers) == 1 else None,
                "train_inputs": data.x_train.to(device) if given else None,
                "train_target": data.y_train.to(device) if given else None}


def check_pair(data: Any, name: str) -> tuple[Tensor, Tensor]:
    """``(inputs (n, ...), target (n,) int64)`` from a pair of tensors, or ValueError naming ``name``."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        fail(name, "a pair (inputs, target) of tensors", type(data).__name__)
    inputs, target = check_tensor(data[0], f"{name}[0]"), check_tensor(data[1], f"{name}[1]")
    check_rank(target, 1, f"{name}[1]")
    if target.dtype != torch.long:
        fail(f"{name}[1]", "int64 class ids", target.dtype)
    if target.numel() == 0:
        fail(name, "a non-empty pair", "0 samples")
    check_consistent_batch(inputs=inputs, target=target)
    return inputs, target


def build_objective(objective: str | Mapping[str, Any], model: nn.Module, *, num_classes: int,
                    train_data: tuple[Tensor, Tensor] | None = None, teacher: nn.Module | Sequence[nn.Module] = (),
                    seed: int = 0, device: str | torch.device | None = None) -> AdapterObjective:
    """The composed objective of ``objective`` on ``model``, built by the engine.

    Args:
        objective: a loss name or an objective dict, as in a spec's ``objectives:``.
        model: the student; ``model(x)`` gives logits ``(N, C)``.
        num_classes: ``C``, at least 2.
        train_data: optional ``(inputs (n, ...), target (n,))``, the whole training set, for terms
            that keep per-sample buffers (ELR, PS-KD: the batch then carries its ``index``) or read it.
        teacher: a frozen teacher module, or several (an ensemble), for a distillation term.
        seed: seeds the mixing and every sampling term's own stream.
        device: where the objective's state and generators live; the model's device when None.

    Returns:
        An :class:`AdapterObjective`; call it like the engine does:
        ``objective(model, inputs, (target,), index, mixed=objective.draw(model, inputs, target), ...)``.

    Raises:
        ValueError: on a bad description (see :func:`objective_config`), ``num_classes`` or
            ``train_data``, or a term that needs something not supplied.
    """
    config = objective_config(objective)
    if not isinstance(model, nn.Module):
        fail("model", "a torch.nn.Module", type(model).__name__)
    num_classes = check_number(num_classes, "num_classes", low=2, integer=True)
    check_number(seed, "seed", low=0, integer=True)
    teachers = [teacher] if isinstance(teacher, nn.Module) else list(teacher)
    if not all(isinstance(t, nn.Module) for t in teachers):
        fail("teacher", "an nn.Module or a sequence of them", [type(t).__name__ for t in teachers])
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    if train_data is None:
        x, y = torch.empty(0), torch.empty(0, dtype=torch.long)
    else:
        x, y = check_pair(train_data, "train_data")
        if int(y.min()) < 0 or int(y.max()) >= num_classes:
            fail("train_data[1]", f"class ids in [0, {num_classes - 1}]", f"range [{int(y.min())}, {int(y.max())}]")
    if "distill" in config and not teachers and spec_mod.needs_teacher("distill", config["distill"]["name"]):
        raise ValueError(f"Expected `teacher=` (a frozen module) for the distillation term "
                         f"{config['distill']['name']!r}, but got none.")
    data = SplitData(name="adapter", x_train=x, y_train=y, x_test=x[:0], y_test=y[:0], num_classes=num_classes)
    return AdapterObjective(config, data, model, device, has_train=train_data is not None,
                            teachers=[t.eval() for t in teachers], seed=seed).to(device)


def diagnostic_configs(diagnostics: Iterable[str | Mapping[str, Any]], *, every: int,
                       samples: int) -> list[dict[str, Any]]:
    """Resolved diagnostic configs as the engine's runner reads them: ``{name, label, params, every, samples}``.

    Each item is a registry diagnostic name or ``{"name", "params", "label", "every", "samples"}``
    (a spec's ``diagnostics:`` entry); ``every`` and ``samples`` fill what an item leaves out.
    """
    if isinstance(diagnostics, (str, Mapping)):
        diagnostics = [diagnostics]
    out = []
    for i, item in enumerate(diagnostics):
        raw = {"name": item} if isinstance(item, str) else item
        if not isinstance(raw, Mapping):
            fail(f"diagnostics[{i}]", "a diagnostic name or a dict with `name`", type(item).__name__)
        raw = {"every": every, "samples": samples, **raw}
        try:
            d = spec_mod.DiagnosticSpec.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in (f"diagnostics[{i}]", *first["loc"]))
            raise ValueError(f"Invalid {where}: {first['msg'].removeprefix('Value error, ')}.") from None
        params = REGISTRY.get("diagnostic", d.name).resolve(d.params)
        out.append({"name": d.name, "label": d.label or d.name, "params": params, "every": d.every,
                    "samples": d.samples})
    if not out:
        fail("diagnostics", "at least one diagnostic", "none")
    labels = [c["label"] for c in out]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ValueError(f"Expected unique diagnostic labels, but got {', '.join(dupes)} twice; set `label`.")
    return out


def gather(data: Any, limit: int, name: str) -> tuple[Tensor, Tensor]:
    """``(inputs, target)`` from a pair of tensors or an iterable of ``(inputs, target, ...)`` batches.

    At most ``limit`` examples are taken from an iterable (a ``DataLoader``), in its order.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor):
        return check_pair(data, name)
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes, Tensor, Mapping)):
        fail(name, "a pair (inputs, target) of tensors or an iterable of such batches", type(data).__name__)
    xs, ys, n = [], [], 0
    for batch in data:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            fail(f"{name} batches", "(inputs, target, ...) tuples", type(batch).__name__)
        xs.append(batch[0])
        ys.append(batch[1])
        n += len(batch[1])
        if n >= limit:
            break
    if not xs:
        fail(name, "a non-empty iterable of batches", "no batches")
    return check_pair((torch.cat(xs)[:limit], torch.cat(ys)[:limit]), name)
