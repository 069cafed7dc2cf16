"""The experiment spec: YAML validated by pydantic, then resolved through the registry.

A spec names datasets, condition settings, objectives and seeds; the plan is
their product. Every component name and hyper-parameter is checked against
the registry here, before anything runs or is written, and any problem comes
back as one :class:`SpecError` line.

Example::

    name: noisy-labels
    datasets: [{name: mnist1d}]
    model: {name: mlp}
    conditions:
      - {name: symmetric_noise, sweep: {rate: [0.0, 0.2, 0.4]}}
    objectives:
      - {name: ce}
      - {name: gce, params: {q: 0.7}}
      - label: elr+mixup
        loss: {name: ce}
        regularizers: [{name: elr, weight: 1.0, params: {lam: 3.0}}]
        mixing: {name: mixup, params: {alpha: 0.2}}
        optimizer: {name: sam, params: {rho: 0.05}}
      - label: kd
        distill: {name: kd, params: {temperature: 4.0}, teacher: {objective: ce}}
    seeds: 3
    train: {optimizer: adam, lr: 0.01, batch_size: 100, epochs: 50}
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from losslab.core.registry import REGISTRY

RANKING_METRICS = {
    # name -> higher is better
    "test_accuracy": True,
    "test_nll": False,
    "test_brier": False,
    "test_ece": False,
    "test_aurc": False,
    "test_probe_accuracy": True,
}


class SpecError(ValueError):
    """A spec problem, reported as one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Component(_Strict):
    """A registry component with hyper-parameters; ``sweep`` expands into several settings."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    label: str | None = None

    @field_validator("sweep")
    @classmethod
    def _non_empty_sweep(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"sweep over {key!r} has no values")
        return v


class Weighted(Component):
    """A component whose value enters the objective multiplied by ``weight``."""

    weight: float = Field(1.0, ge=0, allow_inf_nan=False)


class TeacherSpec(_Strict):
    """Where a distillation term's teacher comes from: exactly one source.

    ``objective``: the run of another objective of this spec with the same
    dataset, conditions and seed (trained first). ``runs``: stored run ids (an
    ensemble when several). ``random``: a freshly initialised, frozen copy of the
    model; ``init_eps`` then starts the student at the teacher's weights plus
    noise of that relative size.
    """

    objective: str | None = None
    runs: list[str] | None = Field(None, min_length=1)
    random: bool = False
    init_eps: float | None = Field(None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_source(self) -> TeacherSpec:
        given = [k for k in ("objective", "runs") if getattr(self, k) is not None] + (["random"] if self.random else [])
        if len(given) != 1:
            raise ValueError("a teacher needs exactly one of `objective`, `runs` or `random: true`, "
                             f"but got {', '.join(given) or 'none'}")
        if self.init_eps is not None and not self.random:
            raise ValueError("`init_eps` (start the student near the teacher) needs `random: true`")
        return self


class DistillSpec(Weighted):
    """A distillation term and its teacher (none for teacher-free terms such as PS-KD or USKD)."""

    teacher: TeacherSpec | None = None


class Objective(_Strict):
    """What a run minimises: a loss, weighted regularizers, a distillation term, mixing, an optimizer wrapper.

    ``{name: ce, params: ...}`` is shorthand for ``{loss: {name: ce, params: ...}}``.
    """

    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    label: str | None = None
    loss: Weighted | None = None
    regularizers: list[Weighted] = Field(default_factory=list)
    distill: DistillSpec | None = None
    mixing: Component | None = None
    optimizer: Component | None = None
    train: dict[str, Any] | None = None  # overrides of the spec's `train` for this objective only

    @model_validator(mode="after")
    def _shape(self) -> Objective:
        if self.name is not None and self.loss is not None:
            raise ValueError("give the loss either as `name` (shorthand) or as `loss`, not both")
        if self.name is None and (self.params or self.sweep):
            raise ValueError("`params` and `sweep` at the objective level belong to the shorthand `name`; "
                             "put them inside `loss`")
        if self.name is None and self.loss is None and self.distill is None and not self.regularizers:
            raise ValueError("an objective needs a loss (`name` or `loss`), a `distill` term or a regularizer")
        if self.train is not None:
            unknown = sorted(set(self.train) - set(TrainSpec.model_fields))
            if unknown:
                raise ValueError(f"unknown `train` key(s) {', '.join(unknown)}; valid: "
                                 f"{', '.join(TrainSpec.model_fields)}")
        return self

    @property
    def loss_component(self) -> Weighted | None:
        if self.name is not None:
            return Weighted(name=self.name, params=self.params, sweep=self.sweep)
        return self.loss

    @property
    def is_plain(self) -> bool:
        """Only a loss with weight 1: stored exactly as before composition existed, so run ids are stable."""
        loss = self.loss_component
        return (loss is not None and loss.weight == 1.0 and not self.regularizers and self.distill is None
                and self.mixing is None and self.optimizer is None)


class DiagnosticSpec(_Strict):
    """A diagnostic run as a callback: at epoch 0 (initialisation), every ``every`` epochs and at the end.

    ``samples`` fixes the size of the training (and test) subset it sees, drawn
    once per run from the run's seed.
    """

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    every: int = Field(1, ge=1)
    samples: int = Field(512, ge=2)
    label: str | None = None


class TrainSpec(_Strict):
    """Training settings shared by every run of the spec."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(100, ge=1)
    epochs: int = Field(10, ge=1, le=100_000)
    eval_every: int = Field(1, ge=1)
    device: Literal["cpu", "cuda"] = "cpu"
    # Image augmentation of each training batch (random crop with 4-pixel padding, horizontal flip).
    augment: Literal["none", "flip", "crop_flip"] = "none"
    # Learning rate over training (per step), after an optional linear warm-up: constant, cosine decay to
    # zero, or warmup-stable-decay (constant, then linear decay to zero over the last `decay_fraction` of steps).
    lr_schedule: Literal["constant", "cosine", "wsd"] = "constant"
    warmup_epochs: int = Field(0, ge=0)
    decay_fraction: float = Field(0.2, gt=0, le=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _decay_needs_wsd(self) -> TrainSpec:
        if self.decay_fraction != 0.2 and self.lr_schedule != "wsd":
            raise ValueError(f"decay_fraction applies only to lr_schedule 'wsd', but lr_schedule is "
                             f"{self.lr_schedule!r}")
        return self


class ScalingSpec(_Strict):
    """How ``losslab scaling fit --store URL --spec SPEC`` fits this spec's finished runs.

    It is read by the fit only: no run's config (so no run id) depends on it.
    ``cols`` maps the form's variables to expressions over the run columns
    (``params``, ``n_train``, ``model.width``, ...), ``target`` is the fitted
    column, and ``holdout`` runs, the largest by the expression ``by`` (default:
    the form's first variable), are left out of the fit and predicted.
    """

    form: str
    cols: dict[str, str] = Field(default_factory=dict)
    target: str = "test_nll"
    hyper: dict[str, Any] = Field(default_factory=dict)
    holdout: int = Field(0, ge=0)
    by: str | None = None
    boot: int = Field(200, ge=0)


class Spec(_Strict):
    """The whole experiment: datasets × conditions × objectives × seeds."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    datasets: list[Component] = Field(min_length=1)
    model: Component
    conditions: list[Component | list[Component]] = Field(default_factory=lambda: [[]])
    objectives: list[Objective] = Field(min_length=1)
    seeds: int | list[int] = 3
    train: TrainSpec = Field(default_factory=TrainSpec)
    diagnostics: list[DiagnosticSpec] = Field(default_factory=list)
    reference: str | None = None
    metric: str = "test_accuracy"
    scaling: ScalingSpec | None = None

    @field_validator("conditions")
    @classmethod
    def _empty_means_clean(cls, v: list[Component | list[Component]]) -> list[Component | list[Component]]:
        # No condition listed means one setting: the clean data (never an empty grid).
        return v or [[]]

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | list[int]) -> int | list[int]:
        seeds = list(range(v)) if isinstance(v, int) else v
        if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be a positive count or a list of distinct non-negative ints")
        return v

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v not in RANKING_METRICS:
            raise ValueError(f"metric must be one of {', '.join(RANKING_METRICS)}")
        return v

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "spec"
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"spec error at {where}: {msg}{more}"


def load_spec(path: str | Path) -> Spec:
    """Read and validate a YAML spec; raise :class:`SpecError` with one line on any problem."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"spec is not valid YAML{where}: {problem}") from None
    return parse_spec(raw)


def parse_spec(raw: Any) -> Spec:
    """Validate a spec given as a mapping (already parsed YAML)."""
    if not isinstance(raw, dict):
        raise SpecError(f"spec must be a mapping of keys to values, but got {type(raw).__name__}")
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(_one_line(err)) from None
    check_components(spec)
    return spec


def expand(component: Component) -> list[tuple[dict[str, Any], str]]:
    """The settings of one component: ``(params, label)`` per point of its sweep."""
    keys = sorted(component.sweep)
    out = []
    for values in itertools.product(*(component.sweep[k] for k in keys)):
        params = {**component.params, **dict(zip(keys, values))}
        out.append((params, component_label(component, params)))
    return out


def component_label(component: Component, params: dict[str, Any]) -> str:
    """``name(k=v, ...)`` over the parameters the user set; a given label wins."""
    swept = {k: params[k] for k in sorted(component.sweep)}
    if component.label is not None:
        suffix = ",".join(f"{k}={v}" for k, v in swept.items())
        return f"{component.label}({suffix})" if suffix else component.label
    if not params:
        return component.name
    inner = ",".join(f"{k}={params[k]}" for k in sorted(params))
    return f"{component.name}({inner})"


def resolve_component(kind: str, component: Component, where: str) -> list[tuple[dict[str, Any], str]]:
    """Every setting of ``component``: ``(resolved params, label)``; problems become one SpecError line."""
    try:
        entry = REGISTRY.get(kind, component.name)
        return [(entry.resolve(params), label) for params, label in expand(component)]
    except ValueError as exc:
        raise SpecError(f"spec error at {where}: {exc}") from None


# The objective's parts: (config key, registry kind). Order fixes the config layout and the label.
PARTS = (("regularizers", "regularizer"), ("distill", "distill"), ("mixing", "mixing"), ("optimizer", "optimizer"))
TEACHER_NAMES = {"teacher", "teacher_logits", "teacher_features"}
# Losses whose inputs the engine's single-label classification runs do not produce.
OWN_INPUT_TAGS = {"multilabel": "multi-hot targets", "rejector": "a frozen predictor and a rejector",
                  "reference": "a frozen reference model", "linear": "hidden states and a projection",
                  "preference": "preference pairs (chosen and rejected ids) and a frozen reference model"}


def needs_teacher(kind: str, name: str) -> bool:
    """Whether the term's twin (or function) requires a teacher value (:mod:`losslab.core.terms`)."""
    from losslab.core.terms import needed_names

    entry = REGISTRY.get(kind, name)
    fns = [entry.module.__init__, entry.module.forward] if entry.module is not None else [entry.obj]
    return any(TEACHER_NAMES & set(needed_names(fn)[0]) for fn in fns)


def _part(kind: str, comp: Component, where: str, key: str | None = None, weight: float | None = None,
          extra: dict[str, Any] | None = None) -> list[tuple[dict[str, Any], str, list[str]]]:
    """One part's settings: ``(config fragment, label, swept 'k=v' strings)``."""
    out = []
    scale = "" if weight in (None, 1.0) else f"{weight:g}*"
    for params, label in resolve_component(kind, comp, where):
        cfg: dict[str, Any] = {"name": comp.name, "params": params}
        if weight is not None and (key is not None or weight != 1.0):
            cfg["weight"] = weight
        cfg.update(extra or {})
        fragment = cfg if key is None else {key: [cfg] if key == "regularizers" else cfg}
        out.append((fragment, scale + label, [f"{k}={params[k]}" for k in sorted(comp.sweep)]))
    return out


def objective_settings(obj: Objective, where: str) -> list[tuple[dict[str, Any], str]]:
    """Every setting of an objective: ``(config, label)``, the product of its parts' sweeps.

    A plain loss keeps the config ``{name, params}``; each other part adds its
    key (``weight``, ``regularizers``, ``distill``, ``mixing``, ``optimizer``) only
    when present. The teacher stays as written (the plan resolves it to run ids).
    A given ``label`` names the objective, suffixed with its swept values.
    """
    options = []
    loss = obj.loss_component
    if loss is not None:
        options.append(_part("loss", loss, where if obj.name is not None else f"{where}.loss", weight=loss.weight))
    for j, reg in enumerate(obj.regularizers):
        options.append(_part("regularizer", reg, f"{where}.regularizers.{j}", "regularizers", reg.weight))
    if obj.distill is not None:
        d = obj.distill
        teacher = None if d.teacher is None else d.teacher.model_dump(exclude_none=True, exclude_defaults=True)
        if d.teacher is not None and d.teacher.random:
            teacher = {**(teacher or {}), "random": True}
        options.append(_part("distill", d, f"{where}.distill", "distill", d.weight, {"teacher": teacher}))
    for key, kind in (("mixing", "mixing"), ("optimizer", "optimizer")):
        comp = getattr(obj, key)
        if comp is not None:
            options.append(_part(kind, comp, f"{where}.{key}", key))
    out = []
    for combo in itertools.product(*options):
        config: dict[str, Any] = {}
        for fragment, _, _ in combo:
            for k, v in fragment.items():
                config[k] = config.get(k, []) + v if k == "regularizers" else v
        swept = [kv for _, _, kvs in combo for kv in kvs]
        if obj.label is None:
            label = " + ".join(lbl for _, lbl, _ in combo)
        else:
            label = f"{obj.label}({','.join(swept)})" if swept else obj.label
        out.append((config, label))
    return out


def check_components(spec: Spec) -> None:
    """Resolve every component through the registry; labels must be unique; teachers must exist."""
    resolve_component("model", spec.model, "model")
    for i, d in enumerate(spec.datasets):
        resolve_component("dataset", d, f"datasets.{i}")
    for i, chain in enumerate(spec.conditions):
        for j, c in enumerate(chain if isinstance(chain, list) else [chain]):
            resolve_component("condition", c, f"conditions.{i}.{j}")
    labels = []
    for i, o in enumerate(spec.objectives):
        labels += [label for _, label in objective_settings(o, f"objectives.{i}")]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise SpecError(f"spec error at objectives: duplicate objective label(s) {', '.join(dupes)}; set `label`")
    _check_trainable_losses(spec)
    _check_bag_pairing(spec)
    _check_teachers(spec, labels)
    _check_train_overrides(spec)
    _check_diagnostics(spec)
    _check_scaling(spec)
    if spec.reference is not None and spec.reference not in labels:
        raise SpecError(
            f"spec error at reference: {spec.reference!r} is not an objective label; valid: {', '.join(labels)}"
        )


def _check_teachers(spec: Spec, labels: list[str]) -> None:
    """Teachers where a term needs one and nowhere else; objective teachers name a label, without cycles."""
    graph: dict[str, list[str]] = {}
    for i, o in enumerate(spec.objectives):
        where = f"spec error at objectives.{i}.distill"
        if o.distill is None:
            continue
        wants = needs_teacher("distill", o.distill.name)
        if wants and o.distill.teacher is None:
            raise SpecError(f"{where}: {o.distill.name!r} distils from a teacher; add `teacher` "
                            "(objective: <label>, runs: [<run id>, ...] or random: true)")
        if not wants and o.distill.teacher is not None:
            raise SpecError(f"{where}: {o.distill.name!r} is teacher-free (it learns from its own predictions); "
                            "remove `teacher`")
        ref = o.distill.teacher.objective if o.distill.teacher is not None else None
        if ref is None:
            continue
        if ref not in labels:
            raise SpecError(f"{where}.teacher.objective: {ref!r} is not an objective label; valid: {', '.join(labels)}")
        for _, label in objective_settings(o, f"objectives.{i}"):
            graph[label] = [ref]
    for start in graph:
        seen, node = {start}, start
        while node in graph:
            node = graph[node][0]
            if node in seen:
                raise SpecError(f"spec error at objectives: teacher references form a cycle through {node!r}")
            seen.add(node)


def objective_train(spec: Spec, objective: Objective) -> dict[str, Any]:
    """The spec's train settings with the objective's overrides, validated as a whole.

    Settings added after the first release (``augment``, ``lr_schedule``, ``warmup_epochs``,
    ``decay_fraction``) are kept only when set, so runs that do not use them keep the ids they had
    before they existed.
    """
    out = TrainSpec(**{**spec.train.model_dump(), **(objective.train or {})}).model_dump()
    for key, default in _LATER_SETTINGS.items():
        if out[key] == default:
            del out[key]
    if out.get("warmup_epochs", 0) >= out["epochs"]:
        raise SpecError(f"spec error at train.warmup_epochs: must be below epochs ({out['epochs']}), "
                        f"got {out['warmup_epochs']}")
    wsd = out.get("lr_schedule") == "wsd"
    if wsd and out.get("warmup_epochs", 0) + out.get("decay_fraction", 0.2) * out["epochs"] > out["epochs"]:
        raise SpecError(f"spec error at train.decay_fraction: the wsd decay ({out['decay_fraction']} of "
                        f"{out['epochs']} epochs) overlaps the warm-up ({out['warmup_epochs']} epochs)")
    return out


_LATER_SETTINGS = {"augment": "none", "lr_schedule": "constant", "warmup_epochs": 0, "decay_fraction": 0.2}


def _check_train_overrides(spec: Spec) -> None:
    for i, o in enumerate(spec.objectives):
        try:
            objective_train(spec, o)
        except ValidationError as err:
            raise SpecError(_one_line(err).replace("spec error at ", f"spec error at objectives.{i}.train.", 1)) from None


def diagnostic_configs(spec: Spec) -> list[dict[str, Any]]:
    """The resolved diagnostics, as stored in every run's config (absent when there are none)."""
    out = []
    for i, d in enumerate(spec.diagnostics):
        try:
            params = REGISTRY.get("diagnostic", d.name).resolve(d.params)
        except ValueError as exc:
            raise SpecError(f"spec error at diagnostics.{i}: {exc}") from None
        out.append({"name": d.name, "label": d.label or d.name, "params": params, "every": d.every,
                    "samples": d.samples})
    return out


def _check_diagnostics(spec: Spec) -> None:
    labels = [d["label"] for d in diagnostic_configs(spec)]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise SpecError(f"spec error at diagnostics: duplicate diagnostic label(s) {', '.join(dupes)}; set `label`")


def _check_scaling(spec: Spec) -> None:
    """The ``scaling`` block names a registered form (with valid hyper-parameters) and only its variables."""
    if spec.scaling is None:
        return
    from losslab.scaling.forms import get_form  # science layer; loaded only for specs that fit a law

    try:
        form = get_form(spec.scaling.form, **spec.scaling.hyper)
    except ValueError as exc:
        raise SpecError(f"spec error at scaling.form: {exc}") from None
    extra = sorted(set(spec.scaling.cols) - set(form.variables))
    if extra:
        raise SpecError(f"spec error at scaling.cols: {', '.join(map(repr, extra))} is not a variable of form "
                        f"{form.name!r}; valid: {', '.join(form.variables)}")


def _check_trainable_losses(spec: Spec) -> None:
    for i, o in enumerate(spec.objectives):
        loss = o.loss_component
        tags = set(REGISTRY.get("loss", loss.name).tags) & set(OWN_INPUT_TAGS) if loss is not None else set()
        if tags:
            needs = OWN_INPUT_TAGS[sorted(tags)[0]]
            raise SpecError(f"spec error at objectives.{i}: loss {loss.name!r} needs {needs}, which the engine's "
                            "classification runs do not provide; call it from your own loop")


def _check_bag_pairing(spec: Spec) -> None:
    """Bag losses need the ``bags`` condition, and bags hide labels from every other loss."""
    chains = [item if isinstance(item, list) else [item] for item in spec.conditions]
    bagged = {any(c.name == "bags" for c in chain) for chain in chains}
    for i, o in enumerate(spec.objectives):
        loss = o.loss_component
        needs_bags = loss is not None and "bag" in REGISTRY.get("loss", loss.name).tags
        if needs_bags and False in bagged:
            raise SpecError(f"spec error at objectives.{i}: loss {loss.name!r} learns from bag label proportions; "
                            "every condition setting must include the 'bags' condition")
        if not needs_bags and True in bagged:
            bag_losses = ", ".join(e.name for e in REGISTRY.entries("loss") if "bag" in e.tags)
            raise SpecError(f"spec error at objectives.{i}: the 'bags' condition hides instance labels, so "
                            f"objective {o.label or (loss.name if loss else o.distill.name)!r} cannot be trained; "
                            f"use a label-proportion loss ({bag_losses})")
        if needs_bags and (o.regularizers or o.distill is not None or o.mixing is not None):
            raise SpecError(f"spec error at objectives.{i}: bag losses see no instance labels, so they take no "
                            "regularizer, distillation or mixing here; only `optimizer` may be added")
