"""Spec -> plan: the grid of fully resolved run configs, each with a content-hashed id.

A run's id is the SHA-256 of its resolved config (every default filled in), so
the same run asked for by two specs, or twice by one, is the same row in the
store: a re-run is skipped and a crash is resumed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from losslab.engine.fingerprint import dataset_fingerprint
from losslab.engine.spec import (
    Component,
    Spec,
    diagnostic_configs,
    objective_settings,
    objective_train,
    resolve_component,
)

ID_LENGTH = 16


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid: its id, its resolved config and its display labels."""

    run_id: str
    config: dict[str, Any]
    dataset: str
    condition: str
    objective: str
    seed: int
    depends: tuple[str, ...] = ()  # teacher runs of this plan that must finish first


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def run_id(config: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:ID_LENGTH]


def _settings(kind: str, component: Component) -> list[tuple[dict[str, Any], str]]:
    return [({"name": component.name, "params": p}, label) for p, label in resolve_component(kind, component, kind)]


def _dataset_settings(spec: Spec) -> list[tuple[dict[str, Any], str]]:
    """Each dataset setting; data read from user files (or passed from Python) also carries a content fingerprint."""
    out = []
    for d in spec.datasets:
        for cfg, label in _settings("dataset", d):
            digest = dataset_fingerprint(cfg["name"], cfg["params"])
            out.append(({**cfg, "fingerprint": digest} if digest else cfg, label))
    return out


def _condition_settings(spec: Spec) -> list[tuple[list[dict[str, Any]], str]]:
    """Each condition item (one component or a chain) expands by the product of its sweeps."""
    out = []
    for item in spec.conditions:
        chain = item if isinstance(item, list) else [item]
        options = [_settings("condition", c) for c in chain]
        for combo in itertools.product(*options):
            cfgs = [cfg for cfg, _ in combo]
            label = " + ".join(lbl for _, lbl in combo) or "clean"
            out.append((cfgs, label))
    return out


def make_plan(spec: Spec) -> list[RunSpec]:
    """Expand a validated spec into its runs (dataset-major, seed-minor order).

    A distillation teacher given as another objective's label becomes the id of
    that objective's run with the same dataset, conditions and seed, so a
    student's id changes whenever its teacher's config does.
    """
    models = _settings("model", spec.model)
    diagnostics = diagnostic_configs(spec)
    trains = {}
    objectives = []
    for i, o in enumerate(spec.objectives):
        for setting in objective_settings(o, f"objectives.{i}"):
            objectives.append(setting)
            trains[setting[1]] = objective_train(spec, o)
    runs: list[RunSpec] = []
    # A model sweep (e.g. widths for a scaling fit) makes one cell per model setting; its label joins the
    # dataset's, and a spec with one model keeps its configs, labels and ids.
    cells = [(dataset, d_label if len(models) == 1 else f"{d_label} / {m_label}", model)
             for dataset, d_label in _dataset_settings(spec) for model, m_label in models]
    for dataset, d_label, model in cells:
        for conditions, c_label in _condition_settings(spec):
            cell: dict[tuple[str, int], RunSpec] = {}
            for objective, o_label in _teachers_first(objectives):
                for seed in spec.seed_list:
                    objective_cfg, depends = _resolve_teacher(objective, cell, seed)
                    config = {
                        "dataset": dataset,
                        "conditions": conditions,
                        "objective": objective_cfg,
                        "model": model,
                        "train": trains[o_label],
                        "seed": seed,
                    }
                    if diagnostics:  # absent otherwise, so runs without diagnostics keep their ids
                        config["diagnostics"] = diagnostics
                    cell[(o_label, seed)] = RunSpec(run_id(config), config, d_label, c_label, o_label, seed, depends)
            runs += [cell[(o_label, seed)] for _, o_label in objectives for seed in spec.seed_list]
    return _dedupe(runs)


def _teachers_first(objectives: list[tuple[dict[str, Any], str]]) -> list[tuple[dict[str, Any], str]]:
    """Objectives ordered so every teacher objective precedes its students (the spec has no cycles)."""
    by_label = dict((label, (cfg, label)) for cfg, label in objectives)
    out: list[tuple[dict[str, Any], str]] = []

    def visit(item: tuple[dict[str, Any], str]) -> None:
        if item in out:
            return
        ref = ((item[0].get("distill") or {}).get("teacher") or {}).get("objective")
        if ref is not None:
            visit(by_label[ref])
        out.append(item)

    for item in objectives:
        visit(item)
    return out


def _resolve_teacher(objective: dict[str, Any], cell: dict[tuple[str, int], RunSpec],
                     seed: int) -> tuple[dict[str, Any], tuple[str, ...]]:
    teacher = (objective.get("distill") or {}).get("teacher") or {}
    if "objective" not in teacher:
        return objective, ()
    teacher_run = cell[(teacher["objective"], seed)].run_id
    distill = {**objective["distill"], "teacher": {"runs": [teacher_run]}}
    return {**objective, "distill": distill}, (teacher_run,)


def _dedupe(runs: list[RunSpec]) -> list[RunSpec]:
    seen: set[str] = set()
    out = []
    for r in runs:
        if r.run_id not in seen:
            seen.add(r.run_id)
            out.append(r)
    return out


def reference_label(spec: Spec, plan: list[RunSpec]) -> str:
    """The objective every other one is compared with: the spec's, else the first."""
    return spec.reference or plan[0].objective
