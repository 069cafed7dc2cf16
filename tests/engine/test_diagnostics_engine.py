"""Diagnostics as run callbacks: stored per epoch, shown by report and plot, and never fatal."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest
from typer.testing import CliRunner

from losslab.cli import app
from losslab.core.registry import REGISTRY
from losslab.engine.executor import execute
from losslab.engine.plan import make_plan
from losslab.engine.spec import SpecError, parse_spec
from losslab.engine.store import Store
from losslab.engine.train import train_run

from specs import TINY, write_spec

DIAGS = [{"name": "weight_norm", "every": 2}, {"name": "softmax_collapse_fraction", "every": 1, "samples": 50}]


def _spec(**changes):
    spec = copy.deepcopy(TINY)
    spec.update(conditions=[], seeds=2, diagnostics=copy.deepcopy(DIAGS))
    spec["train"]["epochs"] = 4
    spec.update(changes)
    return spec


def test_diagnostics_run_at_init_on_schedule_and_at_the_end():
    run = make_plan(parse_spec(_spec()))[0]
    assert [d["name"] for d in run.config["diagnostics"]] == ["weight_norm", "softmax_collapse_fraction"]
    result = train_run(run.config, run.run_id, {})
    assert result.status == "done", result.error
    by_epoch: dict[int, dict] = {}
    for row in result.history:
        by_epoch.setdefault(row["epoch"], {}).update(row)
    assert sorted(e for e, r in by_epoch.items() if "weight_norm.total" in r) == [0, 2, 4]
    assert sorted(e for e, r in by_epoch.items() if "softmax_collapse_fraction.fraction" in r) == [0, 1, 2, 3, 4]
    assert "test_accuracy" not in by_epoch[0]  # epoch 0 holds diagnostics only
    assert all(math.isfinite(v) for r in by_epoch.values() for v in r.values())


def test_a_failing_diagnostic_is_recorded_and_the_run_goes_on(monkeypatch):
    key = ("diagnostic", "weight_norm")

    def broken(model, per_layer=False):
        """A diagnostic that always fails."""
        raise RuntimeError("boom")

    monkeypatch.setitem(REGISTRY._entries, key, dataclasses.replace(REGISTRY._entries[key], obj=broken))
    run = make_plan(parse_spec(_spec()))[0]
    result = train_run(run.config, run.run_id, {})
    assert result.status == "done"
    values = [r["weight_norm"] for r in result.history if "weight_norm" in r]
    assert values and all(math.isnan(v) for v in values)
    errors = [r for r in result.records if r["name"] == "diagnostic_errors"]
    assert "boom" in errors[0]["summary"]["weight_norm"]


def test_unknown_diagnostic_and_duplicate_labels_are_spec_errors():
    with pytest.raises(SpecError, match=r"spec error at diagnostics\.0: .*Did you mean 'weight_norm'"):
        parse_spec(_spec(diagnostics=[{"name": "weight_nrom"}]))
    with pytest.raises(SpecError, match="duplicate diagnostic label"):
        parse_spec(_spec(diagnostics=[{"name": "weight_norm"}, {"name": "weight_norm"}]))
    with pytest.raises(SpecError, match="diagnostics.0.every"):
        parse_spec(_spec(diagnostics=[{"name": "weight_norm", "every": 0}]))


def test_report_plot_and_milestones_read_the_stored_series(tmp_path):
    spec = _spec()
    path = write_spec(tmp_path / "d.yaml", spec)
    url = f"sqlite:///{tmp_path}/d.db"
    execute(make_plan(parse_spec(spec)), Store(url))
    runner = CliRunner()
    res = runner.invoke(app, ["report", str(path), "--store", url, "--json", "--milestone", "train_accuracy=0.5"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    names = {k for d in out["diagnostics"] for k in d["last"]}
    assert "weight_norm.total" in names and "softmax_collapse_fraction.fraction" in names
    assert {m["metric"] for m in out["milestones"]} == {"train_accuracy"}
    assert all(m["total"] == 2 for m in out["milestones"])
    text = runner.invoke(app, ["report", str(path), "--store", url, "--milestone", "test_accuracy=0.2"]).stdout
    flat = " ".join(text.split())
    assert "diagnostics, last value" in flat and "weight_norm.total" in flat and "first epoch with" in flat
    png = tmp_path / "curves.png"
    res = runner.invoke(app, ["plot", str(path), "--store", url, "--metric", "weight_norm.total",
                              "--metric", "test_accuracy", "--out", str(png)])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = runner.invoke(app, ["report", str(path), "--store", url, "--milestone", "test_accuracy"])
    assert bad.exit_code == 2 and "METRIC=LEVEL" in bad.stderr
    bad = runner.invoke(app, ["plot", str(path), "--store", url, "--metric", "nope", "--out", str(tmp_path / "x.png")])
    assert bad.exit_code == 2 and not (tmp_path / "x.png").exists()
    bad = runner.invoke(app, ["plot", str(path), "--store", url, "--metric", "test_accuracy", "--out", "x.gif"])
    assert bad.exit_code == 2 and "--out" in bad.stderr


def test_report_ranks_by_a_stored_series_with_paired_intervals(tmp_path):
    """`report --metric` takes any stored series (a diagnostic's key) at each run's last epoch."""
    spec = _spec()
    path = write_spec(tmp_path / "d.yaml", spec)
    url = f"sqlite:///{tmp_path}/d.db"
    plan = make_plan(parse_spec(spec))
    execute(plan, Store(url))
    runner = CliRunner()
    res = runner.invoke(app, ["report", str(path), "--store", url, "--json", "--metric", "weight_norm.total",
                              "--direction", "min"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["metric"] == "weight_norm.total" and out["higher_is_better"] is False
    # each row's mean is the mean over seeds of the runs' last stored value, computed here independently
    store = Store(url)
    last = {}
    for run_id, epoch, name, value in store.epoch_rows(r.run_id for r in plan):
        if name == "weight_norm.total" and epoch >= last.get(run_id, (-1, 0.0))[0]:
            last[run_id] = (epoch, value)
    for row in out["rows"]:
        mine = [last[r.run_id][1] for r in plan if r.objective == row["objective"]]
        assert row["score"]["mean"] == pytest.approx(sum(mine) / len(mine)) and row["score"]["n"] == len(mine)
    means = [row["score"]["mean"] for row in out["rows"]]
    assert means == sorted(means)  # lower is better: best (smallest) first
    assert [r["rank"] for r in out["rows"]] == [1, 2]
    other = next(row for row in out["rows"] if row["objective"] != out["reference"])
    assert other["delta"]["n"] == 2  # paired per seed against the reference
    bad = runner.invoke(app, ["report", str(path), "--store", url, "--metric", "weight_norm.totl"])
    assert bad.exit_code == 2 and "Did you mean 'weight_norm.total'" in bad.stderr
    bad = runner.invoke(app, ["report", str(path), "--store", url, "--metric", "test_nll", "--direction", "max"])
    assert bad.exit_code == 2 and "--direction" in bad.stderr
    bad = runner.invoke(app, ["report", str(path), "--store", url, "--direction", "up"])
    assert bad.exit_code == 2 and "max, min" in bad.stderr
