"""Tuning end to end on a tiny spec: the study lives in the store's database, resumes, prunes, never reads the test split."""

from __future__ import annotations

import math

import optuna
import pytest

from losslab.engine.plan import make_plan
from losslab.engine.spec import parse_spec
from losslab.engine.train import train_run
from losslab.tune import apply, search_space, select, tune
from specs import TINY

SPEC = {**TINY, "conditions": [{"name": "symmetric_noise", "params": {"rate": 0.2}}],
        "objectives": [{"name": "gce", "params": {"q": 0.7}}], "train": {**TINY["train"], "epochs": 3}}


@pytest.fixture
def parsed():
    spec = parse_spec(SPEC)
    return spec, make_plan(spec)


def test_trials_reach_the_target_and_the_best_value_is_the_validation_score(tmp_path, parsed):
    spec, plan = parsed
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    res = tune(spec, plan, url, trials=4, params=["loss.q", "train.lr"], sampler_seed=0, pruner="none")
    assert res.counts["complete"] == 4 and res.direction == "maximize" and res.metric == "test_accuracy"
    assert 0.0 < res.best_value <= 1.0 and set(res.best_params) == {"loss.q", "train.lr"}
    first = optuna.load_study(study_name=res.study, storage=url).trials[0]
    assert first.params == {"loss.q": 0.7, "train.lr": TINY["train"]["lr"]}  # trial 0 is the spec's own setting
    # The trial's value is the run's accuracy on the validation split, re-trained here from the best params.
    dims = select(search_space(plan[0].config), ["loss.q", "train.lr"])
    config = {**apply(plan[0].config, res.best_params, dims), "validation": 0.2}
    again = train_run(config, "check", {})
    assert again.final["test_accuracy"] == res.best_value
    val = [r for r in again.records if r["name"] == "validation_split"]
    summary = val[0]["summary"]  # about 20% of the 120 training samples (per class, rounded), not the 60 test samples
    assert summary["num_train"] + summary["num_val"] == 120 and abs(summary["num_val"] - 24) <= 2


def test_a_second_call_resumes_the_study_from_the_database(tmp_path, parsed):
    spec, plan = parsed
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    first = tune(spec, plan, url, trials=2, sampler_seed=1, pruner="none")
    assert first.counts["complete"] == 2
    second = tune(spec, plan, url, trials=3, sampler_seed=1, pruner="none")
    assert second.counts["complete"] == 3 and second.study == first.study == "tiny:gce(q=0.7)"
    assert tune(spec, plan, url, trials=3, pruner="none").counts["complete"] == 3  # already there: no new trial


def test_the_pruner_stops_trials_at_a_reported_epoch(tmp_path, parsed):
    spec, plan = parsed
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    seen = []
    res = tune(spec, plan, url, trials=3, pruner=optuna.pruners.ThresholdPruner(lower=2.0), on_trial=seen.append)
    assert res.counts == {"complete": 0, "pruned": 3, "fail": 0, "running": 0} and res.best_value is None
    assert all(t.state == optuna.trial.TrialState.PRUNED and list(t.intermediate_values) == [1] for t in seen)


def test_a_failed_run_is_a_failed_trial_not_a_crash(tmp_path, parsed, monkeypatch):
    import losslab.engine.train as train

    real = train.train_run

    def diverging(config, run_id, labels, teacher_states=None, *, on_epoch=None):
        result = real(config, run_id, labels, teacher_states, on_epoch=on_epoch)
        result.status, result.error = "failed", "FloatingPointError: training diverged"
        return result

    monkeypatch.setattr(train, "train_run", diverging)
    spec, plan = parsed
    res = tune(spec, plan, f"sqlite:///{tmp_path / 'tune.db'}", trials=1, pruner="none")
    assert res.counts["fail"] == 1 and res.counts["complete"] == 0 and res.best_value is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"objective": "nope"}, "`--objective`"),
    ({"params": ["loss.z"]}, "`--param`"),
    ({"pruner": "sometimes"}, "`--pruner`"),
    ({"trials": 0}, "`--trials`"),
    ({"validation": 1.0}, "`--validation`"),
    ({"seeds": 5}, "`--seeds`"),
    ({"direction": "up"}, "`--direction`"),
])
def test_bad_arguments_name_themselves(tmp_path, parsed, kwargs, message):
    spec, plan = parsed
    with pytest.raises(ValueError, match=message):
        tune(spec, plan, f"sqlite:///{tmp_path / 'x.db'}", **{"trials": 1, **kwargs})
    assert not (tmp_path / "x.db").exists() or math.isfinite(0)


def test_a_trial_killed_before_its_first_heartbeat_is_failed_a_lease_later(tmp_path):
    """Optuna's stale check skips trials that never beat; such a trial must not stay 'running' for ever."""
    import time

    from losslab.tune.study import _fail_silent_trials, storage

    lease = 0.5
    rdb = storage(f"sqlite:///{tmp_path / 's.db'}", lease)
    study = optuna.create_study(study_name="s", storage=rdb)
    silent, beating = study.ask(), study.ask()  # ask() creates RUNNING trials, no heartbeat yet
    rdb.record_heartbeat(beating._trial_id)
    time.sleep(lease + 0.2)
    young = study.ask()
    _fail_silent_trials(optuna, study, rdb, lease)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    running, failed = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL
    assert states == {silent.number: failed, beating.number: running, young.number: running}
