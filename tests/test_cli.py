"""The command line end to end on a tiny synthetic spec."""

from __future__ import annotations

import copy
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from losslab.cli import app
from losslab.core.registry import KINDS
from losslab.engine.store import Store
from specs import TINY, write_spec


runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    return write_spec(tmp_path / "tiny.yaml", TINY)


def test_run_status_report_show_roundtrip(tmp_path, tiny_spec):
    url = f"sqlite:///{tmp_path}/r.db"
    res = _invoke("status", tiny_spec, "--store", url, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["pending"] == 8
    assert not (tmp_path / "r.db").exists()  # status never creates a store
    res = _invoke("run", tiny_spec, "--store", url, "--workers", "2")
    assert res.exit_code == 0, res.output
    assert json.loads(_invoke("status", tiny_spec, "--store", url, "--json").stdout) == {
        "spec": "tiny", "total": 8, "done": 8, "failed": 0, "pending": 0}
    res = _invoke("run", tiny_spec, "--store", url)
    assert "8 already stored, 0 to run" in res.stdout
    rep = json.loads(_invoke("report", tiny_spec, "--store", url, "--json").stdout)
    assert rep["reference"] == "ce" and rep["runs_done"] == 8 and len(rep["rows"]) == 4
    noisy = [r for r in rep["rows"] if r["condition"] == "symmetric_noise(rate=0.3)"]
    assert {r["objective"] for r in noisy} == {"ce", "gce(q=0.7)"} and all(r["score"]["n"] == 2 for r in noisy)
    assert "test_accuracy" in _invoke("report", tiny_spec, "--store", url).stdout
    rid = Store(url).find("")[0]
    shown = json.loads(_invoke("show", rid[:8], "--store", url, "--json").stdout)
    assert shown["run_id"] == rid and shown["status"] == "done"
    assert {"test_accuracy", "test_ece", "test_aurc", "test_brier"} <= set(shown["final"])
    assert len(shown["history"]) == 3 and shown["environment"]["torch"]
    assert _invoke("show", rid[:8], "--store", url).exit_code == 0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s["objectives"].append({"name": "focl"}), "Did you mean 'focal'"),
        (lambda s: s["objectives"].append({"name": "gce", "params": {"q": 2.0}, "label": "g2"}), "gce.q"),
        (lambda s: s.update(unknown_key=1), "unknown_key"),
        (lambda s: s["objectives"].append({"label": "kd", "distill": {"name": "kd", "teacher": {"runs": ["feed"]}}}),
         "teacher run(s) feed are not finished"),
        (lambda s: s["objectives"].append({"name": "ce", "regularizers": [{"name": "elr", "weight": -1}]}),
         "objectives.2.regularizers.0.weight"),
    ],
)
def test_malformed_spec_exits_2_with_one_line_and_writes_nothing(tmp_path, mutate, message):
    spec = copy.deepcopy(TINY)
    mutate(spec)
    path = write_spec(tmp_path / "bad.yaml", spec)
    res = _invoke("run", path, "--store", f"sqlite:///{tmp_path}/x.db")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error:")
    assert not (tmp_path / "x.db").exists()


def test_bad_yaml_and_bad_store_and_bad_kind(tmp_path, tiny_spec):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    res = _invoke("run", bad, "--store", f"sqlite:///{tmp_path}/x.db")
    assert res.exit_code == 2 and "not valid YAML" in res.stderr and not (tmp_path / "x.db").exists()
    res = _invoke("run", tiny_spec, "--store", "nonsense")
    assert res.exit_code == 2 and "--store" in res.stderr
    res = _invoke("list", "--kind", "losses")
    assert res.exit_code == 2 and "loss" in res.stderr
    res = _invoke("show", "feedface", "--store", f"sqlite:///{tmp_path}/x.db")
    assert res.exit_code == 2


def test_list_shows_registry_with_paper_ids():
    res = _invoke("list", "--json")
    entries = {(e["kind"], e["name"]): e for e in json.loads(res.stdout)}
    assert entries[("loss", "comp_sum")]["papers"] == [5]
    assert entries[("loss", "label_smoothing")]["hyper"]["epsilon"]["default"] == 0.1
    assert {k for k, _ in entries} == set(KINDS)
    assert "[141]" in _invoke("list", "--kind", "loss").stdout


def _stored_runs(db: Path) -> int:
    """Runs stored so far, read with a plain sqlite3 connection (cheap enough to poll)."""
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    except sqlite3.OperationalError:  # no file or no tables yet
        return 0


def test_killed_run_resumes_without_duplicates(tmp_path):
    """SIGKILL `losslab run` mid-grid; the rerun does only the missing runs and stores nothing twice."""
    total = 12  # many short runs, so the kill lands mid-grid even on a loaded machine
    spec = copy.deepcopy(TINY)
    spec["datasets"][0]["params"].update(n_train=2000)
    spec["conditions"] = []
    spec["seeds"] = total // 2
    spec["train"]["epochs"] = 8
    path = write_spec(tmp_path / "kill.yaml", spec)
    url = f"sqlite:///{tmp_path}/k.db"
    cmd = [sys.executable, "-m", "losslab.cli", "run", str(path), "--executor", "local", "--store", url]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300  # generous: under a loaded parallel suite a run can take many seconds
    while time.time() < deadline and proc.poll() is None and _stored_runs(tmp_path / "k.db") < 2:
        time.sleep(0.02)
    assert proc.poll() is None, "losslab run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = Store(url)
    stored = {r: store.run(r)["finished_at"] for r in store.find("")}
    assert 2 <= len(stored) < total, f"the kill must land mid-grid, but {len(stored)} of {total} runs were stored"
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert f"{len(stored)} already stored, {total - len(stored)} to run" in out
    assert store.count("runs") == total
    assert {r: store.run(r)["finished_at"] for r in stored} == stored  # earlier runs were not redone
    n_final = store.count("final_metrics")
    assert n_final == total * len(store.run(store.find("")[0])["final"])  # no half-written or doubled rows


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_terminated_run_stops_its_workers(tmp_path):
    """SIGTERM takes Ctrl-C's path: exit 130, finished runs kept, and no worker process left behind."""
    spec = copy.deepcopy(TINY)
    spec["conditions"], spec["seeds"] = [], 10
    spec["train"]["epochs"] = 40
    path = write_spec(tmp_path / "term.yaml", spec)
    cmd = [sys.executable, "-m", "losslab.cli", "run", str(path), "--executor", "local",
           "--store", f"sqlite:///{tmp_path}/t.db", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and _stored_runs(tmp_path / "t.db") < 1:
        time.sleep(0.05)
    assert proc.poll() is None, "losslab run ended before it could be terminated"
    workers = _children(proc.pid)
    assert workers, "expected worker processes"
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    time.sleep(1.0)
    alive = [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in
             Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[:1]]
    assert not alive, f"worker processes {alive} outlived `losslab run`"


def test_label_proportion_spec_trains_on_whole_bags(tmp_path):
    spec = copy.deepcopy(TINY)
    spec["datasets"][0]["params"].update(n_train=400)
    spec["conditions"] = [{"name": "bags", "sweep": {"bag_size": [1, 8]}}]
    spec["objectives"] = [{"name": "easyllp"}, {"name": "dllp"}, {"name": "interpolating_bag"}]
    spec["seeds"] = 1
    spec["train"]["epochs"] = 15
    path = write_spec(tmp_path / "llp.yaml", spec)
    url = f"sqlite:///{tmp_path}/llp.db"
    assert _invoke("run", path, "--store", url).exit_code == 0
    rows = json.loads(_invoke("report", path, "--store", url, "--json").stdout)["rows"]
    assert len(rows) == 6
    # The mixture is separable: every proportion learner must beat chance (1/3) clearly.
    assert all(r["score"]["mean"] > 0.6 for r in rows), rows


def test_export_final_and_epochs_to_csv(tmp_path, tiny_spec):
    import csv

    url = f"sqlite:///{tmp_path}/e.db"
    assert _invoke("export", tiny_spec, "--store", url, "--out", tmp_path / "x.csv").exit_code == 2  # no store yet
    assert _invoke("run", tiny_spec, "--store", url).exit_code == 0
    out = tmp_path / "sub" / "final.csv"
    res = _invoke("export", tiny_spec, "--store", url, "--out", out)
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 8 and {"run_id", "objective", "seed", "test_accuracy", "test_ece"} <= set(rows[0])
    store = Store(url)
    for row in rows:
        assert float(row["test_accuracy"]) == store.run(row["run_id"])["final"]["test_accuracy"]
    res = _invoke("export", tiny_spec, "--store", url, "--out", tmp_path / "ep.csv", "--table", "epochs")
    long = list(csv.DictReader((tmp_path / "ep.csv").open()))
    assert len(long) == store.count("epoch_metrics") and {"epoch", "metric", "value"} <= set(long[0])
    bad = _invoke("export", tiny_spec, "--store", url, "--out", tmp_path / "x.xlsx", "--format", "xlsx")
    assert bad.exit_code == 2 and "csv, parquet" in bad.stderr
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "x.xlsx").exists()


def test_export_parquet_roundtrip_or_clear_error(tmp_path, tiny_spec):
    url = f"sqlite:///{tmp_path}/e.db"
    assert _invoke("run", tiny_spec, "--store", url).exit_code == 0
    out = tmp_path / "final.parquet"
    res = _invoke("export", tiny_spec, "--store", url, "--out", out, "--format", "parquet")
    try:
        import pyarrow.parquet as pq
    except ImportError:
        assert res.exit_code == 2 and "pyarrow" in res.stderr and not out.exists()
        return
    assert res.exit_code == 0 and pq.read_table(out).num_rows == 8


def test_lmc_between_stored_runs(tmp_path, tiny_spec):
    url = f"sqlite:///{tmp_path}/l.db"
    assert _invoke("run", tiny_spec, "--store", url).exit_code == 0
    store = Store(url)
    ids = sorted(store.find(""))
    res = _invoke("lmc", ids[0], ids[0], "--store", url, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["barrier"] == 0.0  # a model and itself
    same_data = [r for r in ids if store.run(r)["config"]["dataset"] == store.run(ids[0])["config"]["dataset"]]
    res = _invoke("lmc", same_data[0], same_data[1], "--store", url, "--json", "--points", "5", "--layerwise")
    out = json.loads(res.stdout)
    assert res.exit_code == 0 and len(out["curve"]) == 5 and out["barrier"] >= 0 and out["layer_barriers"]
    assert _invoke("lmc", "zzzz", ids[0], "--store", url).exit_code == 2
    bad = _invoke("lmc", ids[0], ids[1], "--store", url, "--metric", "acc")
    assert bad.exit_code == 2 and "--metric" in bad.stderr


def test_soup_of_stored_runs(tmp_path, tiny_spec):
    url = f"sqlite:///{tmp_path}/s.db"
    assert _invoke("run", tiny_spec, "--store", url).exit_code == 0
    store = Store(url)
    ids = sorted(store.find(""))
    same = [r for r in ids if store.run(r)["config"]["dataset"] == store.run(ids[0])["config"]["dataset"]]
    res = _invoke("soup", same[0], same[0][:8] + "x", "--store", url)
    assert res.exit_code == 2
    res = _invoke("soup", same[0], same[0], "--store", url)
    assert res.exit_code == 2 and "distinct" in res.stderr
    res = _invoke("soup", *same[:2], "--store", url, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["val_samples"] + out["held_out_samples"] > 0 and len(out["individual"]) == 2
    # the greedy soup starts from the best ingredient on the validation part, so it is one of the runs' weights or
    # a mean that did not lose on validation; every accuracy is a proper fraction
    assert all(0.0 <= a <= 1.0 for a in [*out["individual"], out["uniform"], out["greedy"]])
    assert out["greedy_ingredients"][0] in same[:2]
    # a lone ingredient is that run itself: its held-out accuracy is reproduced exactly
    if len(out["greedy_ingredients"]) == 1:
        assert out["greedy"] == out["individual"][same[:2].index(out["greedy_ingredients"][0])]
    assert _invoke("soup", same[0], "--store", url).exit_code == 2


@pytest.mark.parametrize("change, message", [
    ({"model": {"name": "embedding_mlp"}}, "model 'embedding_mlp' on dataset 'gaussian_mixture'"),
    ({"train": {**TINY["train"], "augment": "crop_flip"}}, "train.augment 'crop_flip' needs image inputs"),
    ({"datasets": [{"name": "gaussian_mixture", "params": {"num_classes": 1}}]}, "num_classes"),
])
def test_run_preflight_rejects_data_the_spec_cannot_train_on_and_writes_nothing(tmp_path, change, message):
    spec = {**copy.deepcopy(TINY), **change}
    path = write_spec(tmp_path / "bad.yaml", spec)
    db = tmp_path / "never.db"
    res = _invoke("run", path, "--store", f"sqlite:///{db}")
    assert res.exit_code == 2 and message in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and not db.exists()


def test_augment_is_absent_from_run_ids_unless_set():
    from losslab.engine.plan import make_plan
    from losslab.engine.spec import parse_spec

    plain = make_plan(parse_spec(copy.deepcopy(TINY)))
    explicit = make_plan(parse_spec({**copy.deepcopy(TINY), "train": {**TINY["train"], "augment": "none"}}))
    flipped = make_plan(parse_spec({**copy.deepcopy(TINY), "train": {**TINY["train"], "augment": "flip"}}))
    assert [r.run_id for r in plain] == [r.run_id for r in explicit]
    assert "augment" not in plain[0].config["train"] and flipped[0].config["train"]["augment"] == "flip"
    assert not {r.run_id for r in plain} & {r.run_id for r in flipped}


def test_cosine_schedule_with_warmup_follows_its_formula():
    import math

    import torch

    from losslab.engine.train import LRSchedule

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    s = LRSchedule(opt, {"lr": 0.1, "epochs": 10, "lr_schedule": "cosine", "warmup_epochs": 2}, steps_per_epoch=5)
    assert [round(s.lr(t), 12) for t in range(3)] == [0.01, 0.02, 0.03]
    assert s.lr(9) == pytest.approx(0.1) and s.lr(10) == pytest.approx(0.1)  # warm-up ends at the peak
    assert s.lr(30) == pytest.approx(0.05 * (1 + math.cos(math.pi * 20 / 40)))
    assert s.lr(50) == pytest.approx(0.0, abs=1e-15)
    s.at(30)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    flat = LRSchedule(opt, {"lr": 0.1, "epochs": 10}, steps_per_epoch=5)
    flat.at(3)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)  # constant without warm-up leaves it alone


def test_warmup_must_end_before_training_does(tmp_path):
    spec = {**copy.deepcopy(TINY), "train": {**TINY["train"], "lr_schedule": "cosine", "warmup_epochs": 3}}
    res = _invoke("run", write_spec(tmp_path / "w.yaml", spec), "--store", f"sqlite:///{tmp_path}/w.db")
    assert res.exit_code == 2 and "warmup_epochs" in res.stderr and not (tmp_path / "w.db").exists()
