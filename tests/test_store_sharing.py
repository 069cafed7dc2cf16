"""A store is never wiped by accident: another spec writing to it only adds runs (issue 8)."""

from __future__ import annotations

from typer.testing import CliRunner

from losslab.cli import app
from losslab.engine.store import Store
from specs import TINY, write_spec

runner = CliRunner()


def _run(spec, url):
    res = runner.invoke(app, ["run", str(spec), "--store", url])
    assert res.exit_code == 0, res.output


def test_a_second_spec_adds_to_the_store_and_keeps_the_first_specs_runs(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = write_spec(tmp_path / "first.yaml", {**TINY, "name": "first", "seeds": 1,
                                                  "conditions": [], "train": {**TINY["train"], "epochs": 1}})
    second = write_spec(tmp_path / "second.yaml", {**TINY, "name": "second", "seeds": 1, "conditions": [],
                                                    "model": {"name": "mlp", "params": {"width": 8}},
                                                    "train": {**TINY["train"], "epochs": 1}})
    _run(first, url)
    store = Store(url, create=False)
    before = {rid: store.run(rid) for rid in store.find("")}
    assert len(before) == 2
    _run(second, url)
    after = {rid: store.run(rid) for rid in store.find("")}
    assert len(after) == 4 and before.keys() < after.keys()
    for rid, row in before.items():  # the first spec's runs are untouched, number for number
        assert after[rid]["final"] == row["final"] and after[rid]["history"] == row["history"]
    _run(first, url)  # running the first spec again trains nothing and changes nothing
    assert {rid: store.run(rid)["final"] for rid in before} == {rid: row["final"] for rid, row in before.items()}
    assert store.count() == 4
