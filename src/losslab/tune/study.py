"""``losslab tune``: Optuna studies over one spec objective's hyper-parameters.

A trial takes the objective's run config (its first dataset and condition
setting, and its first ``seeds`` seeds), writes the sampled values into it,
and trains it with a **validation split** carved out of the training data
(:func:`losslab.data.splits.validation_split`), so the test split is never
used to choose hyper-parameters. The trial's value is the spec's ranking
metric on that split, averaged over the seeds. Trial 0 of a new study is the
spec's own setting, the baseline the search has to beat. Each evaluated epoch of the
first seed is reported to Optuna, whose pruner may stop the trial there.

The study lives in the store's database through Optuna's RDB storage, so a
killed ``losslab tune`` resumes where it stopped, and several processes
(on one machine or many, against PostgreSQL) can work on one study at once:
``--trials N`` is the number of finished (complete or pruned) trials the
study should reach, counted across every worker. A worker that dies stops
sending heartbeats, and its trial is marked failed and retried once after
the lease (``LOSSLAB_LEASE_SECONDS``) runs out; one killed before its trial's
first heartbeat leaves a trial that is marked failed when the next worker
starts a lease later.
"""

from __future__ import annotations

import datetime
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from losslab.core.validation import check_choice, check_number, fail
from losslab.engine.plan import RunSpec
from losslab.engine.spec import Spec
from losslab.tune.space import Dim, apply, current_values, search_space, select

PRUNERS = ("median", "hyperband", "none")
_SCHEMA_ATTEMPTS = 20
DIRECTIONS = ("maximize", "minimize")


def metric_direction(metric: str) -> str:
    """Accuracies are maximised; losses, calibration errors and risk areas are minimised."""
    return "maximize" if "accuracy" in metric else "minimize"


@dataclass
class TuneResult:
    study: str
    direction: str
    metric: str
    space: list[str]
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        fail("losslab tune", "run with Optuna installed (pip install 'losslab[tune]')", "no module named optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage(url: str, lease_s: float) -> Any:
    """Optuna's RDB storage on the store's database, with heartbeats so a dead worker's trial is retried."""
    optuna = _optuna()
    from losslab.engine.store_backend import parse_url

    parsed = parse_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 60}  # several workers may write at once
    import sqlalchemy.exc

    for attempt in range(_SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna; resuming needs them
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    parsed.render_as_string(hide_password=False), engine_kwargs=kwargs,
                    heartbeat_interval=max(1, int(lease_s / 4)), grace_period=max(2, int(lease_s)),
                    **_retry_stale(optuna))
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            # Workers started together race to create Optuna's tables (one inserts alembic_version first, or
            # holds SQLite's lock); the loser finds them made a moment later.
            if attempt == _SCHEMA_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def _retry_stale(optuna: Any) -> dict[str, Any]:
    """Optuna's callback that re-queues a dead worker's trial once (renamed in Optuna 4.9)."""
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
        return {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
    return {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=1)}


def _fail_silent_trials(optuna: Any, study: Any, rdb: Any, lease_s: float) -> None:
    """Mark failed the running trials that never sent a heartbeat and started over a lease ago.

    A worker killed between creating a trial and its first heartbeat leaves
    such a trial behind, and Optuna's stale-trial check only looks at trials
    that have a heartbeat: it would stay "running" for ever. A live worker
    records its first heartbeat milliseconds after creating the trial, so one
    without any after a whole lease is dead.
    """
    import sqlalchemy as sa

    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if not running:
        return
    with rdb.engine.connect() as conn:  # Optuna's own table: one row per trial that ever beat
        beating = {row[0] for row in conn.execute(sa.text("SELECT trial_id FROM trial_heartbeats"))}
    now = datetime.datetime.now()  # Optuna stamps datetime_start with naive local time
    for trial in running:
        started = trial.datetime_start
        if trial._trial_id not in beating and started is not None and (now - started).total_seconds() > lease_s:
            rdb.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def base_runs(spec: Spec, plan: list[RunSpec], objective: str | None, seeds: int) -> list[RunSpec]:
    """The runs a trial re-trains: the objective's first dataset/condition cell, first ``seeds`` seeds."""
    labels = list(dict.fromkeys(r.objective for r in plan))
    label = objective if objective is not None else labels[0]
    check_choice(label, "--objective", labels)
    runs = [r for r in plan if r.objective == label]
    first = (runs[0].dataset, runs[0].condition)
    cell = [r for r in runs if (r.dataset, r.condition) == first]
    if any(r.config["objective"].get("teacher") for r in cell):
        fail("--objective", "an objective without a teacher (a teacher's run is not re-trained per trial)", label)
    check_number(seeds, "--seeds", low=1, high=len(cell), integer=True)
    return cell[:seeds]


def _pruner(optuna: Any, name: Any, epochs: int) -> Any:
    if not isinstance(name, str):
        return name  # an Optuna pruner object, from Python
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def tune(spec: Spec, plan: list[RunSpec], url: str, *, trials: int, objective: str | None = None,
         params: list[str] | None = None, metric: str | None = None, direction: str | None = None,
         study_name: str | None = None, pruner: Any = "median", validation: float = 0.2, seeds: int = 1,
         sampler_seed: int | None = None, lease_s: float = 120.0,
         on_trial: Callable[[Any], None] | None = None) -> TuneResult:
    """Run (or resume) the study until it holds ``trials`` finished trials; see the module docstring."""
    check_number(trials, "--trials", low=1, integer=True)
    if isinstance(pruner, str):
        check_choice(pruner, "--pruner", PRUNERS)
    check_number(validation, "--validation", low=0.0, high=1.0, low_open=True, high_open=True)
    metric = metric or spec.metric
    direction = direction or metric_direction(metric)
    check_choice(direction, "--direction", DIRECTIONS)
    runs = base_runs(spec, plan, objective, seeds)
    dims = select(search_space(runs[0].config), params)
    name = study_name or f"{spec.name}:{runs[0].objective}"
    optuna = _optuna()
    rdb = storage(url, lease_s)
    study = optuna.create_study(
        study_name=name, storage=rdb, direction=direction, load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=sampler_seed), pruner=_pruner(optuna, pruner, runs[0].config[
            "train"]["epochs"]))
    _fail_silent_trials(optuna, study, rdb, lease_s)
    if not study.get_trials(deepcopy=False):
        # The spec's own setting is trial 0, so the study always scores the baseline it has to beat.
        study.enqueue_trial(current_values(runs[0].config, dims), skip_if_exists=True)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    todo = trials - len(study.get_trials(deepcopy=False, states=finished))
    if todo > 0:
        stop = optuna.study.MaxTrialsCallback(trials, states=finished)
        callbacks = [stop] + ([lambda s, t: on_trial(t)] if on_trial else [])
        study.optimize(_objective(optuna, runs, dims, metric, validation), n_trials=todo, callbacks=callbacks,
                       gc_after_trial=False)
    return _result(optuna, study, metric, dims)


def _objective(optuna: Any, runs: list[RunSpec], dims: list[Dim], metric: str, validation: float) -> Callable:
    from losslab.engine.train import StopRun, train_run

    def run_trial(trial: Any) -> float:
        values = {d.name: d.suggest(trial) for d in dims}
        scores = []
        for k, run in enumerate(runs):
            config = {**apply(run.config, values, dims), "validation": validation}

            def report(epoch: int, row: dict[str, float], first: bool = k == 0) -> None:
                value = row.get(metric)
                if not first or value is None or not math.isfinite(value):
                    return
                trial.report(value, epoch)
                if trial.should_prune():
                    raise StopRun(f"pruned at epoch {epoch}")

            try:
                result = train_run(config, f"tune-{trial.number}-{k}", {}, on_epoch=report)
            except StopRun:
                raise optuna.TrialPruned() from None
            if result.status != "done":
                trial.set_user_attr("error", result.error)
                return math.nan  # Optuna records a NaN value as a failed trial: a diverged setting
            value = result.final.get(metric)
            if value is None:
                fail("--metric", f"a metric the runs record ({', '.join(sorted(result.final))})", repr(metric))
            scores.append(value)
        return float(sum(scores) / len(scores))

    return run_trial


def _result(optuna: Any, study: Any, metric: str, dims: list[Dim]) -> TuneResult:
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(1 for t in trials if t.state == s)
              for s in (states.COMPLETE, states.PRUNED, states.FAIL, states.RUNNING)}
    complete = [t for t in trials if t.state == states.COMPLETE]
    best = study.best_trial if complete else None
    return TuneResult(study.study_name, study.direction.name.lower(), metric, [d.describe() for d in dims],
                      None if best is None else best.value, {} if best is None else dict(best.params),
                      None if best is None else best.number, counts)
