"""The engine's stored runs as a table of columns, for fitting a scaling law to them.

``losslab scaling fit --store URL --spec SPEC`` reads the finished runs of the
spec's plan into one row per configuration and evaluates ``--col VAR=EXPR``
over these columns exactly as over a CSV's (:mod:`losslab.scaling.expr`).

Columns of a row:

* every final metric (``test_nll``, ``test_accuracy``, ``train_loss``, ...);
* the numeric settings of the config, flattened with dots: ``dataset.<param>``,
  ``model.<param>`` (e.g. ``model.width``), ``<condition>.<param>`` (e.g.
  ``subsample.fraction``), ``train.<key>`` (e.g. ``train.lr``) and ``loss.<param>``;
* ``params``: trainable parameters of the run's model (rebuilt from its stored
  checkpoint's shapes, so nothing is retrained);
* ``n_train``: training samples after the conditions, ``samples_seen`` =
  ``train.epochs * n_train`` and ``steps`` = ``train.epochs * ceil(n_train / batch_size)``
  (these build the run's data, once per dataset and conditions, when used);
* ``n_seeds``: how many seeds the row averages.

Seeds are averaged: runs whose configs differ only in the seed make ONE row,
each metric the mean over its finished seeds. A scaling law describes the
expected loss at a size, the rows stay independent (a bootstrap over rows
resamples configurations), and a form's parameter count is compared with the
number of configurations, not of seeds.

This module reads the engine (plan and store): it sits above it, unlike the
rest of :mod:`losslab.scaling`, and is imported only by the CLI or by name.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from losslab.core.registry import REGISTRY
from losslab.engine.plan import RunSpec, canonical_json, make_plan
from losslab.engine.spec import Spec, load_spec
from losslab.engine.store import Store
from losslab.scaling.expr import Columns

DERIVED = ("params", "n_train", "samples_seen", "steps", "n_seeds")


def runs_table(spec: Spec | str | Path, store: Store | str) -> Columns:
    """One row per finished configuration of ``spec``'s plan in ``store``, seeds averaged.

    Args:
        spec: a validated :class:`Spec` or the path of its YAML.
        store: a :class:`Store` or its URL (opened read-only: nothing is created).

    Returns:
        A :class:`~losslab.scaling.expr.Columns` (``len`` = configurations with at
        least one finished seed) for :func:`~losslab.scaling.expr.evaluate`;
        ``.column(name)`` gives a ``(rows,)`` float array.

    Raises:
        ValueError: when the store does not exist or holds no finished run of the
            plan (one line naming the spec and the store).

    Example:
        >>> table = runs_table("examples/scaling.yaml", "sqlite:///scaling.db")  # doctest: +SKIP
        >>> evaluate("params * n_train", table)  # doctest: +SKIP
    """
    spec = load_spec(spec) if isinstance(spec, str | Path) else spec
    store = Store(store, create=False) if isinstance(store, str) else store
    plan = make_plan(spec)
    finals = store.final_metrics(r.run_id for r in plan)
    done = [r for r in plan if r.run_id in finals]
    if not done:
        raise ValueError(f"Expected finished runs of spec {spec.name!r} in store {store.url}, but none of its "
                         f"{len(plan)} runs is stored there; run `losslab run SPEC --store {store.url}` first.")
    groups: dict[str, list[RunSpec]] = {}
    for r in done:
        groups.setdefault(canonical_json({k: v for k, v in r.config.items() if k != "seed"}), []).append(r)
    rows = [_row(runs, finals) for runs in groups.values()]
    names = sorted({k for row in rows for k in row})
    columns = {k: [row.get(k) for row in rows] for k in names}
    heads = [runs[0] for runs in groups.values()]
    lazy = _lazy_columns(heads, store)
    return Columns(columns, len(rows), source=f"the runs of spec {spec.name!r}", lazy=lazy)


def _row(runs: list[RunSpec], finals: Mapping[str, Mapping[str, float | None]]) -> dict[str, Any]:
    """Config settings of the first run and each metric averaged over the runs (None where any lacks it)."""
    row = config_columns(runs[0].config)
    metrics = sorted({k for r in runs for k in finals[r.run_id]})
    for name in metrics:
        values = [finals[r.run_id].get(name) for r in runs]
        row[name] = None if any(v is None for v in values) else float(np.mean(values))
    row["n_seeds"] = len(runs)
    return row


def config_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a run config flattened to dotted names (scalars only; text kept for error messages).

    Example:
        >>> config_columns({"dataset": {"name": "d", "params": {"n": 5}}, "model": {"name": "mlp",
        ...     "params": {"width": 8}}, "conditions": [{"name": "subsample", "params": {"fraction": 0.5}}],
        ...     "train": {"lr": 0.1}, "objective": {"name": "ce", "params": {}}, "seed": 0})
        {'dataset.n': 5, 'model.width': 8, 'subsample.fraction': 0.5, 'train.lr': 0.1}
    """
    out: dict[str, Any] = {}
    parts = [("dataset", config["dataset"].get("params", {})), ("model", config["model"].get("params", {}))]
    seen: dict[str, int] = {}
    for cond in config.get("conditions", []):
        seen[cond["name"]] = seen.get(cond["name"], 0) + 1
        prefix = cond["name"] if seen[cond["name"]] == 1 else f"{cond['name']}_{seen[cond['name']]}"
        parts.append((prefix, cond.get("params", {})))
    parts.append(("train", config.get("train", {})))
    parts.append(("loss", config.get("objective", {}).get("params", {})))
    for prefix, params in parts:
        for key, value in params.items():
            if isinstance(value, bool):
                out[f"{prefix}.{key}"] = float(value)
            elif isinstance(value, int | float | str):
                out[f"{prefix}.{key}"] = value
    return out


def _lazy_columns(runs: list[RunSpec], store: Store) -> dict[str, Callable[[], list[float]]]:
    """``params``, ``n_train``, ``samples_seen`` and ``steps``, computed only when an expression reads them."""
    cache: dict[str, list[float]] = {}

    def n_train() -> list[float]:
        if "n_train" not in cache:
            cache["n_train"] = [float(_data_size(r.config)) for r in runs]
        return cache["n_train"]

    def samples_seen() -> list[float]:
        return [n * r.config["train"]["epochs"] for n, r in zip(n_train(), runs)]

    def steps() -> list[float]:
        return [r.config["train"]["epochs"] * math.ceil(n / r.config["train"]["batch_size"])
                for n, r in zip(n_train(), runs)]

    return {"params": lambda: [float(_param_count(r, store)) for r in runs], "n_train": n_train,
            "samples_seen": samples_seen, "steps": steps}


def _data_size(config: Mapping[str, Any]) -> int:
    from losslab.engine.train import build_data  # the engine's own data path, with its per-process cache

    return int(build_data(dict(config)).y_train.numel())


def _param_count(run: RunSpec, store: Store) -> int:
    """Trainable parameters of the run's model, rebuilt at the input shape and classes its checkpoint records."""
    state = store.checkpoint(run.run_id)
    if state is not None:
        ckpt = torch.load(io.BytesIO(state), map_location="cpu", weights_only=True)
        shape, classes = tuple(ckpt["input_shape"]), int(ckpt["num_classes"])
    else:  # a run stored without weights: its data gives the shapes
        from losslab.engine.train import build_data

        data = build_data(dict(run.config))
        shape, classes = tuple(data.input_shape), data.num_classes
    return _count(run.config["model"]["name"], json.dumps(run.config["model"]["params"], sort_keys=True),
                  shape, classes)


def _count(name: str, params_json: str, shape: tuple[int, ...], classes: int) -> int:
    model = REGISTRY.get("model", name).obj(shape, classes, **json.loads(params_json))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
