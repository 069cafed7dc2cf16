"""Specs on the user's own data: the CSV example end to end, content fingerprints, in-process datasets, preflight."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from losslab.cli import app
from losslab.data import from_arrays, register_dataset, unregister_dataset
from losslab.engine.plan import make_plan
from losslab.engine.spec import parse_spec
from losslab.engine.store import Store

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _csv_spec(path: Path, **train) -> dict:
    spec = yaml.safe_load((ROOT / "examples" / "my-csv.yaml").read_text())
    spec["datasets"][0]["params"]["path"] = str(path)
    spec["train"].update(train)
    return spec


def test_my_csv_example_runs_end_to_end_and_reports_like_the_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the example's path is relative to the repository root, as documented
    url = f"sqlite:///{tmp_path}/csv.db"
    res = _invoke("run", "examples/my-csv.yaml", "--store", url)
    assert res.exit_code == 0, res.output
    assert "done 24, failed 0" in res.stdout
    report = _invoke("report", "examples/my-csv.yaml", "--store", url, "--json")
    assert report.exit_code == 0, report.output
    rows = json.loads(report.stdout)["rows"]
    groups = {(r["dataset"], r["condition"]) for r in rows}
    assert len(groups) == 2 and {r["objective"] for r in rows} >= {"ce", "gce(q=0.7)"}
    clean = {r["objective"]: r for r in rows if "rate=0.0" in r["condition"]}
    assert clean["ce"]["score"]["mean"] > 0.9 and clean["ce"]["score"]["n"] == 3  # a real signal: breast cancer is easy when clean
    text = _invoke("report", "examples/my-csv.yaml", "--store", url)
    assert "Δ is the paired per-seed difference to ce" in text.stdout and "breast-cancer.csv" in text.stdout


def test_edited_file_gets_new_run_ids_and_identical_content_keeps_them(tmp_path):
    csv = tmp_path / "data.csv"
    shutil.copy(ROOT / "examples" / "data" / "breast_cancer.csv", csv)
    ids = [r.run_id for r in make_plan(parse_spec(_csv_spec(csv)))]
    assert "fingerprint" in make_plan(parse_spec(_csv_spec(csv)))[0].config["dataset"]
    assert ids == [r.run_id for r in make_plan(parse_spec(_csv_spec(csv)))]
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:-1]) + "\n")  # one row fewer
    edited = [r.run_id for r in make_plan(parse_spec(_csv_spec(csv)))]
    assert not set(ids) & set(edited)


def test_builtin_datasets_carry_no_fingerprint():
    spec = {"name": "t", "datasets": [{"name": "digits"}], "model": {"name": "mlp"}, "objectives": [{"name": "ce"}]}
    assert "fingerprint" not in make_plan(parse_spec(spec))[0].config["dataset"]


def test_missing_column_exits_before_writing(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    spec = _csv_spec(ROOT / "examples" / "data" / "breast_cancer.csv")
    spec["datasets"][0]["params"]["target"] = "label"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    db = tmp_path / "x.db"
    res = _invoke("run", path, "--store", f"sqlite:///{db}")
    assert res.exit_code == 2 and "label" in res.stderr and "diagnosis" in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and not db.exists()


@pytest.fixture
def tiny_images():
    g = torch.Generator().manual_seed(0)
    # two classes that differ by which half of the image is bright, plus noise: learnable by a small CNN
    y = torch.arange(120) % 2
    x = 0.3 * torch.rand(120, 1, 8, 8, generator=g)
    x[y == 0, :, :, :4] += 0.7
    x[y == 1, :, :, 4:] += 0.7
    register_dataset("tiny_images", from_arrays(x.numpy(), y.numpy(), test_fraction=0.25, name="tiny_images"))
    yield
    unregister_dataset("tiny_images")


def test_python_dataset_with_image_model_and_augmentation_runs_in_process(tmp_path, tiny_images):
    spec = {"name": "imgs", "datasets": [{"name": "tiny_images"}], "model": {"name": "auto"},
            "objectives": [{"name": "ce"}], "seeds": 1,
            "train": {"epochs": 15, "batch_size": 30, "lr": 0.01, "augment": "flip"}}
    plan = make_plan(parse_spec(copy.deepcopy(spec)))
    assert "fingerprint" in plan[0].config["dataset"] and plan[0].config["train"]["augment"] == "flip"
    path = tmp_path / "imgs.yaml"
    path.write_text(yaml.safe_dump(spec))
    url = f"sqlite:///{tmp_path}/i.db"
    res = _invoke("run", path, "--store", url)
    assert res.exit_code == 0, res.output
    run = Store(url).run(plan[0].run_id)
    assert run["status"] == "done"
    # a horizontal flip turns one class into the other here, so an augmented CNN cannot separate them
    # well; the run only has to train and be evaluated like any other
    assert 0.0 <= run["final"]["test_accuracy"] <= 1.0


def test_image_model_learns_the_python_dataset_without_augmentation(tmp_path, tiny_images):
    spec = {"name": "imgs", "datasets": [{"name": "tiny_images"}], "model": {"name": "cnn2d", "params": {"channels": 8}},
            "objectives": [{"name": "ce"}], "seeds": 1, "train": {"epochs": 15, "batch_size": 30, "lr": 0.01}}
    path = tmp_path / "imgs.yaml"
    path.write_text(yaml.safe_dump(spec))
    url = f"sqlite:///{tmp_path}/i.db"
    assert _invoke("run", path, "--store", url).exit_code == 0
    (rid,) = Store(url).find("")
    assert Store(url).run(rid)["final"]["test_accuracy"] >= 0.9


def test_changed_python_dataset_changes_run_ids(tiny_images):
    spec = {"name": "imgs", "datasets": [{"name": "tiny_images"}], "model": {"name": "auto"},
            "objectives": [{"name": "ce"}], "seeds": 1}
    before = make_plan(parse_spec(copy.deepcopy(spec)))[0].run_id
    register_dataset("tiny_images", from_arrays(np.ones((8, 3)), [0, 1] * 4, test_fraction=0.5))
    assert make_plan(parse_spec(copy.deepcopy(spec)))[0].run_id != before
