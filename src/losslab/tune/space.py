"""Search spaces for tuning, read from the registry's declared hyper-parameter ranges.

Every part of a spec objective (the loss, each regularizer and distillation
term with its weight, the mixing scheme, the optimizer wrapper) declares its
hyper-parameters with a type and a valid range in the registry. A
:class:`Dim` turns one of them into an Optuna distribution, so a trial can
never propose a value the component would refuse:

- both bounds: uniform over them (log-uniform when they are positive and span
  two decades or more), open ends moved to the next float inward; a range
  that spans four decades or more, such as ``(0, 1]``, is searched
  log-uniformly over two decades either side of the spec's value, inside it;
- one bound: the declared side, and two decades beyond the spec's value on the
  other (log-uniform when the value is positive and the bound is not below 0);
- no bound: the spec's value ± 10·max(1, |value|);
- choices and flags: categorical.

Names are ``loss.<hyper>``, ``<part>.<hyper>`` and ``<part>.weight`` for the
objective's named parts (``confidence_penalty.beta``, ``mixup.alpha``,
``sam.rho``), and ``train.lr`` / ``train.weight_decay``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from losslab.core.registry import REGISTRY, Hyper
from losslab.core.validation import fail

_TRAIN_DIMS = ("lr", "weight_decay")
_PART_KINDS = (("regularizers", "regularizer"), ("distill", "distill"), ("mixing", "mixing"),
               ("optimizer", "optimizer"))


@dataclass(frozen=True)
class Dim:
    """One tunable value: where it lives in a run config, and its distribution."""

    name: str
    path: tuple[Any, ...]  # keys into the run config
    kind: str  # "float" | "int" | "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        return f"{self.name} in [{self.low:g}, {self.high:g}]{' (log)' if self.log else ''}"


def _range(h: Hyper, value: float, integer: bool) -> tuple[float, float, bool]:
    """``(low, high, log)`` inside the declared range of ``h``, centred on the spec's ``value``."""
    low = None if h.low is None else (math.nextafter(h.low, math.inf) if h.low_open and not integer else h.low)
    high = None if h.high is None else (math.nextafter(h.high, -math.inf) if h.high_open and not integer else h.high)
    if integer:
        low = None if low is None else (low + 1 if h.low_open else low)
        high = None if high is None else (high - 1 if h.high_open else high)
    spread = 10.0 * max(1.0, abs(value))
    if low is not None and high is not None:
        if value > 0 and low >= 0 and high / max(low, 1e-300) >= 1e4:
            # A range like (0, 1] spans 300 decades on a log scale: search two around the spec's value.
            return max(low, (math.ceil(value / 100) if integer else value / 100)), min(high, value * 100), True
        return low, high, low > 0 and high / low >= 100
    if low is not None:
        if value > 0 and low >= 0:
            lo = max(low, value / 100) if low > 0 else value / 100
            return (max(1, math.floor(lo)) if integer else lo), value * 100, True
        return low, low + spread, False
    if high is not None:
        return high - spread, high, False
    return value - spread, value + spread, False


def _dim(name: str, path: tuple[Any, ...], h: Hyper, value: Any) -> Dim | None:
    if h.type == "bool":
        return Dim(name, path, "categorical", choices=(False, True))
    if h.type == "choice":
        return Dim(name, path, "categorical", choices=tuple(h.choices or ()))
    if h.type not in ("float", "int") or value is None:
        return None  # text settings and unset optional numbers are not searched
    low, high, log = _range(h, float(value), h.type == "int")
    if h.type == "int":
        low, high = math.ceil(low), math.floor(high)
        if high <= low:
            return None
    return Dim(name, path, h.type, float(low), float(high), log)


def _weight_dim(name: str, path: tuple[Any, ...], value: float) -> Dim:
    if value > 0:
        return Dim(name, path, "float", value / 100, value * 100, True)
    return Dim(name, path, "float", 0.0, 1.0, False)


def _part_dims(prefix: str, kind: str, part: dict[str, Any], path: tuple[Any, ...]) -> list[Dim]:
    entry = REGISTRY.get(kind, part["name"])
    params = part.get("params", {})
    dims = [_dim(f"{prefix}.{h}", (*path, "params", h), hyper, params.get(h, hyper.default))
            for h, hyper in entry.hyper.items()]
    return [d for d in dims if d is not None]


def search_space(config: dict[str, Any]) -> list[Dim]:
    """Every tunable value of a run config's objective, and the train settings ``lr`` and ``weight_decay``."""
    objective = config["objective"]
    dims = _part_dims("loss", "loss", objective, ("objective",)) if "name" in objective else []
    for key, kind in _PART_KINDS:
        parts = objective.get(key)
        if parts is None:
            continue
        for i, part in enumerate(parts if isinstance(parts, list) else [parts]):
            path = ("objective", key, i) if isinstance(parts, list) else ("objective", key)
            dims += _part_dims(part["name"], kind, part, path)
            if "weight" in part:
                dims.append(_weight_dim(f"{part['name']}.weight", (*path, "weight"), float(part["weight"])))
    train = config["train"]
    # TrainSpec bounds the learning rate to (0, 10].
    dims.append(Dim("train.lr", ("train", "lr"), "float", train["lr"] / 100, min(train["lr"] * 100, 10.0), True))
    wd = float(train.get("weight_decay", 0.0))
    dims.append(Dim("train.weight_decay", ("train", "weight_decay"), "float", *((wd / 100, wd * 100, True) if wd > 0
                                                                                 else (1e-6, 1e-1, True))))
    return dims


def select(dims: list[Dim], names: list[str] | None) -> list[Dim]:
    """The dims named in ``names``; by default every objective dim (the train settings only when named)."""
    by_name = {d.name: d for d in dims}
    if not names:
        chosen = [d for d in dims if not d.name.startswith("train.")]
        if not chosen:
            fail("--param", f"given: the objective has no tunable hyper-parameter; choose from "
                 f"{', '.join(by_name)}", "none")
        return chosen
    unknown = [n for n in names if n not in by_name]
    if unknown:
        fail("--param", f"one of {', '.join(by_name)}", repr(unknown[0]))
    return [by_name[n] for n in dict.fromkeys(names)]


def apply(config: dict[str, Any], values: dict[str, Any], dims: list[Dim]) -> dict[str, Any]:
    """A copy of ``config`` with each dim's value written at its path."""
    out = copy.deepcopy(config)
    for d in dims:
        node = out
        for key in d.path[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        node[d.path[-1]] = values[d.name]
    return out


def current_values(config: dict[str, Any], dims: list[Dim]) -> dict[str, Any]:
    """Each dim's value in ``config`` (the spec's own setting), clipped into its searched range."""
    out = {}
    for d in dims:
        node: Any = config
        for key in d.path:
            node = node.get(key) if isinstance(node, dict) else node[key]
        if d.kind != "categorical":
            node = min(max(node, d.low), d.high)
            node = int(node) if d.kind == "int" else float(node)
        out[d.name] = node
    return out
