"""Per-epoch series across seeds: curves, last values and milestones (when a metric first crosses a level).

:func:`series` reads the store's ``epoch_metrics`` for the finished runs of a
plan once; the other functions group that read by ``(dataset, condition)`` and
objective, so training dynamics and diagnostics are compared on the same paired
seeds as the report.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from losslab.engine.plan import RunSpec
from losslab.engine.stats import Interval
from losslab.engine.store import Store

Group = tuple[str, str]
Series = dict[str, dict[str, list[tuple[int, float]]]]


def series(plan: list[RunSpec], store: Store) -> Series:
    """``run_id -> metric -> [(epoch, value)]`` for the finished runs of ``plan`` (NULLs left out)."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for run_id, epoch, name, value in store.epoch_rows(r.run_id for r in plan):
        if value is not None:
            out[run_id][name].append((epoch, value))
    return out


@dataclass(frozen=True)
class Curve:
    """One objective's metric over epochs: mean and min/max across seeds at each epoch all seeds reached."""

    epochs: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]
    n: int


def curves(plan: list[RunSpec], data: Series, metric: str) -> dict[Group, dict[str, Curve]]:
    """``(dataset, condition) -> objective -> Curve`` of ``metric`` in ``data`` (from :func:`series`)."""
    grouped: dict[Group, dict[str, list[dict[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for run in plan:
        points = dict(data.get(run.run_id, {}).get(metric, []))
        if points:
            grouped[(run.dataset, run.condition)][run.objective].append(points)
    out: dict[Group, dict[str, Curve]] = {}
    for group, objectives in grouped.items():
        out[group] = {}
        for objective, runs in objectives.items():
            epochs = sorted(set.intersection(*(set(r) for r in runs)))
            values = np.array([[r[e] for e in epochs] for r in runs])
            out[group][objective] = Curve(epochs, values.mean(0).tolist(), values.min(0).tolist(),
                                          values.max(0).tolist(), len(runs))
    return out


def last_values(plan: list[RunSpec], data: Series, prefix_metrics: list[str]) -> dict[Group, dict[str, dict]]:
    """``group -> objective -> metric -> mean over seeds`` of each run's last value of every series whose
    name equals or starts with one of ``prefix_metrics`` + ``.``."""
    acc: dict[Group, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run in plan:
        for name, points in data.get(run.run_id, {}).items():
            if any(name == p or name.startswith(p + ".") for p in prefix_metrics):
                acc[(run.dataset, run.condition)][run.objective][name].append(max(points)[1])
    return {g: {o: {m: float(np.mean(v)) for m, v in ms.items()} for o, ms in objs.items()} for g, objs in acc.items()}


def last_per_run(plan: list[RunSpec], data: Series, metric: str) -> dict[str, float]:
    """``run_id -> the value of series `metric` at the run's last stored epoch``, for runs that have it."""
    out = {}
    for run in plan:
        points = data.get(run.run_id, {}).get(metric)
        if points:
            out[run.run_id] = max(points)[1]
    return out


def ranking_values(metric: str, direction: str | None, finals: dict[str, dict[str, float | None]],
                   plan: list[RunSpec], data: Series) -> tuple[dict[str, dict[str, float | None]], bool]:
    """Per-run values to rank by, and whether higher is better.

    ``metric`` is a final metric (``RANKING_METRICS``: ``finals`` as they are,
    its own direction; a contradicting ``direction`` is refused) or any series
    in ``data`` (each run's last value added to its finals; ``direction`` "max"
    unless "min"). ValueError names the stored series when ``metric`` is neither.
    """
    from losslab.engine.spec import RANKING_METRICS

    if direction is not None and direction not in ("max", "min"):
        raise ValueError(f"Expected `--direction` to be one of max, min, but got {direction!r}.")
    if metric in RANKING_METRICS:
        known = RANKING_METRICS[metric]
        if direction is not None and (direction == "max") != known:
            raise ValueError(f"Expected `--direction` {'max' if known else 'min'} for {metric} (or none), "
                             f"but got {direction!r}.")
        return finals, known
    lasts = last_per_run(plan, data, metric)
    if not lasts:
        stored = sorted({name for per_run in data.values() for name in per_run})
        hint = difflib.get_close_matches(metric, stored + list(RANKING_METRICS), n=1)
        shown = ", ".join(stored[:12]) + (f", ... ({len(stored)} in all)" if len(stored) > 12 else "")
        raise ValueError(f"Expected `--metric` to be a final metric ({', '.join(RANKING_METRICS)}) or a series "
                         f"stored for SPEC's runs ({shown or 'none stored yet'}), but got {metric!r}."
                         + (f" Did you mean {hint[0]!r}?" if hint else ""))
    return {rid: {**finals.get(rid, {}), metric: value} for rid, value in lasts.items()}, direction != "min"


# A diagnostic that reports one value per level: "<label>.<stem>@<level><unit>", e.g.
# "prune_lamp.acc@0.875" (sparsity) or "quantized_accuracy.acc@4bit" (bits).
_LEVEL_KEY = re.compile(r"^(?P<family>.+@)(?P<level>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)(?P<unit>[A-Za-z%]*)$")


def level_family(name: str) -> tuple[str, float] | None:
    """``("<label>.<stem>@<unit>", level)`` for a per-level series name, else None.

    >>> level_family("prune_lamp.acc@0.875"), level_family("q.acc@4bit"), level_family("weight_norm.total")
    (('prune_lamp.acc@', 0.875), ('q.acc@bit', 4.0), None)
    """
    m = _LEVEL_KEY.match(name)
    return None if m is None else (m["family"] + m["unit"], float(m["level"]))


def profiles(plan: list[RunSpec], data: Series, prefix_metrics: list[str], *,
             min_levels: int = 3) -> dict[str, dict[Group, dict[str, Curve]]]:
    """Per-level diagnostics as curves over their levels, at each run's last epoch.

    Returns ``family -> group -> objective -> Curve`` where ``Curve.epochs``
    holds the levels (sorted) present in every seed of that objective, and
    mean/min/max are over seeds of each run's last value. Only series named by
    ``prefix_metrics`` (as in :func:`last_values`) and families with at least
    ``min_levels`` levels are kept.
    """
    runs: dict[str, dict[Group, dict[str, list[dict[float, float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for run in plan:
        per_family: dict[str, dict[float, float]] = defaultdict(dict)
        for name, points in data.get(run.run_id, {}).items():
            parsed = level_family(name)
            if parsed and any(name.startswith(p + ".") for p in prefix_metrics):
                per_family[parsed[0]][parsed[1]] = max(points)[1]
        for family, values in per_family.items():
            runs[family][(run.dataset, run.condition)][run.objective].append(values)
    out: dict[str, dict[Group, dict[str, Curve]]] = {}
    for family, groups in runs.items():
        for group, objectives in groups.items():
            for objective, seeds in objectives.items():
                levels = sorted(set.intersection(*(set(v) for v in seeds)))
                if len(levels) < min_levels:
                    continue
                values = np.array([[v[x] for x in levels] for v in seeds])
                out.setdefault(family, {}).setdefault(group, {})[objective] = Curve(
                    levels, values.mean(0).tolist(), values.min(0).tolist(), values.max(0).tolist(), len(seeds))
    return out


@dataclass(frozen=True)
class Milestone:
    """When a metric first reached a level: the epoch per seed, and their interval over the seeds that did."""

    metric: str
    level: float
    reached: int
    total: int
    epoch: Interval | None


def milestones(plan: list[RunSpec], data: Series, metric: str, level: float,
               above: bool = True) -> dict[Group, dict[str, Milestone]]:
    """The first epoch at which ``metric`` is ``>= level`` (or ``<=`` when ``above`` is False), per objective."""
    firsts: dict[Group, dict[str, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    for run in plan:
        points = sorted(data.get(run.run_id, {}).get(metric, []))
        if not points:
            continue
        hit = next((e for e, v in points if (v >= level if above else v <= level)), None)
        firsts[(run.dataset, run.condition)][run.objective].append(hit)
    out: dict[Group, dict[str, Milestone]] = {}
    for group, objectives in firsts.items():
        out[group] = {}
        for objective, hits in objectives.items():
            reached = [float(h) for h in hits if h is not None]
            out[group][objective] = Milestone(metric, level, len(reached), len(hits),
                                              Interval.of(reached) if reached else None)
    return out


def plot_curves(by_metric: dict[str, dict[Group, dict[str, Curve]]], out: Path, *, log_x: bool = False) -> None:
    """One panel per (metric, group): the mean curve of every objective with its min-max band across seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(m, g, objs) for m, groups in by_metric.items() for g, objs in groups.items()]
    if not panels:
        raise ValueError("Expected stored per-epoch values for the requested metric(s), but found none.")
    fig, axes = plt.subplots(len(panels), 1, figsize=(7.5, 3.2 * len(panels)), squeeze=False)
    for ax, (metric, (dataset, condition), objs) in zip(axes[:, 0], panels):
        for objective, c in sorted(objs.items()):
            line, = ax.plot(c.epochs, c.mean, label=f"{objective} (n={c.n})")
            ax.fill_between(c.epochs, c.low, c.high, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_title(f"{metric} · {dataset} · {condition}", fontsize=10)
        ax.set_xlabel("epoch")
        if log_x:
            ax.set_xscale("symlog", linthresh=1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp" + out.suffix)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)  # never a half-written figure


def milestone_dict(m: Milestone) -> dict[str, Any]:
    return {"metric": m.metric, "level": m.level, "reached": m.reached, "total": m.total,
            "epoch": None if m.epoch is None else dataclasses.asdict(m.epoch)}


def fmt_interval(i: Interval | None) -> str:
    if i is None or math.isnan(i.mean):
        return "—"
    if math.isnan(i.low):
        return f"{i.mean:.0f}"
    return f"{i.mean:.0f} [{i.low:.0f}, {i.high:.0f}]"
