"""One tiny finished store shared by the report tests: 3 objectives × 2 conditions × 2 seeds, 2 epochs,
with one cheap diagnostic, so every section of the page has something to show."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from losslab.cli import app
from specs import TINY, write_spec

REPORT_SPEC = copy.deepcopy(TINY) | {
    "name": "tiny-report",
    "description": "Three objectives on a Gaussian mixture, clean and with 30% symmetric noise.",
    "objectives": [{"name": "ce"}, {"name": "gce", "params": {"q": 0.7}}, {"name": "label_smoothing"}],
    "train": {"optimizer": "adam", "lr": 0.05, "batch_size": 32, "epochs": 2, "eval_every": 1},
    "diagnostics": [{"name": "gradsign", "every": 1, "samples": 32, "params": {"normalize": True}},
                    {"name": "quantized_accuracy", "every": 2, "samples": 32}],  # a per-level diagnostic
    "reference": "ce",
}


@pytest.fixture(scope="session")
def report_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``(spec path, store URL)`` of the finished tiny grid."""
    root = tmp_path_factory.mktemp("report")
    spec = write_spec(root / "tiny-report.yaml", REPORT_SPEC)
    url = f"sqlite:///{root}/runs.db"
    res = CliRunner().invoke(app, ["run", str(spec), "--store", url])
    assert res.exit_code == 0, res.output
    return spec, url


@pytest.fixture(scope="session")
def report_html(report_store: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``(path, terminal stdout)`` of ``losslab report --html`` on the tiny store, written once."""
    spec, url = report_store
    out = tmp_path_factory.mktemp("page") / "report.html"
    res = CliRunner().invoke(app, ["report", str(spec), "--store", url, "--html", str(out)])
    assert res.exit_code == 0, res.output
    return out, res.stdout
