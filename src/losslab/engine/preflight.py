"""Checks a plan against its data before anything is written: every dataset loads, every model fits it.

A spec can name a CSV column that does not exist, an image folder of the
wrong layout or a model that cannot take the data's shape; those are only
visible once the data is read. ``losslab run`` calls :func:`preflight` on the
pending runs first, so such a spec exits with one line and writes nothing,
instead of storing one failed run per seed and objective.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from losslab.core.seeding import seeded
from losslab.engine.plan import RunSpec
from losslab.engine.train import AUGMENT_RANK, _dataset

# Samples pushed through each model: enough for batch-statistics layers, cheap for a ResNet.
_PROBE = 2


def preflight(runs: list[RunSpec]) -> None:
    """Raise ``ValueError`` (one line) if a run's dataset cannot be built or its model cannot take the data.

    Each distinct dataset is built once (and stays in the per-process cache the
    in-process executor reuses); each distinct (dataset, model) pair builds the
    model and runs a forward pass on two training samples.
    """
    checked: set[tuple[str, str, str]] = set()
    for run in runs:
        ds, model, train = run.config["dataset"], run.config["model"], run.config["train"]
        augment = train.get("augment", "none")
        key = (json.dumps(ds, sort_keys=True), json.dumps(model, sort_keys=True), augment)
        if key in checked:
            continue
        checked.add(key)
        where = f"dataset {ds['name']!r}"
        try:
            data = _dataset(ds["name"], json.dumps(ds["params"], sort_keys=True), ds.get("fingerprint"))
        except (ValueError, OSError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        _check_model(model, data, where)
        if augment != "none" and len(data.input_shape) != AUGMENT_RANK:
            raise ValueError(f"train.augment {augment!r} needs image inputs (C, H, W), but {where} has samples "
                             f"of shape {tuple(data.input_shape)}; use augment: none")


def _check_model(model: dict[str, Any], data: Any, where: str) -> None:
    from losslab.core.registry import REGISTRY

    label = f"model {model['name']!r} on {where} (samples {tuple(data.input_shape)}, {data.num_classes} classes)"
    try:
        with seeded(0), torch.no_grad():
            net = REGISTRY.get("model", model["name"]).obj(data.input_shape, data.num_classes, **model["params"])
            was_training = net.training
            net.eval()
            out = net(data.x_train[:_PROBE])
            net.train(was_training)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ValueError(f"{label}: {str(exc).splitlines()[0]}") from None
    want = (min(_PROBE, len(data.x_train)), data.num_classes)
    if tuple(out.shape) != want:
        raise ValueError(f"{label}: expected logits of shape {want}, but the model returns {tuple(out.shape)}")
