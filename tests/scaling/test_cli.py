"""`losslab scaling fit` end to end: the shared Chinchilla CSV, a tiny CSV, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from losslab.cli import app
from scaling_cases import one_line_error

CSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "chinchilla_svg_extracted.csv"
EPOCH = {"E": 1.82, "A": 482.01, "alpha": 0.3478, "B": 2085.43, "beta": 0.3658}
runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, ["scaling", "fit", *[str(a) for a in args]])




@pytest.fixture
def tiny(tmp_path):
    """A power law in a column whose name has a space, plus an unused text column."""
    x = np.logspace(2, 5, 12)
    y = 2.0 + 30.0 * x**-0.5
    path = tmp_path / "tiny.csv"
    rows = "".join(f"r{i},{a:.17g},{b:.17g}\n" for i, (a, b) in enumerate(zip(x, y)))
    path.write_text("run,train steps,val loss\n" + rows)
    return path


@pytest.mark.skipif(not CSV.exists(), reason="shared/data is not beside the checkout")
def test_chinchilla_csv_reproduces_epoch_with_intervals():
    res = _invoke(CSV, "--form", "chinchilla", "--col", "N=Model Size", "--col", "D=Training FLOP/(6*Model Size)",
                  "--drop-highest", "5", "--boot", "20", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n"] == 240 and out["n_boot"] == 20 and out["dropped"] == 5
    for name, value in EPOCH.items():
        assert out["params"][name] == pytest.approx(value, rel=0.05)
        lo, hi = out["ci"][name]
        assert lo <= out["params"][name] <= hi
    assert out["derived"]["a"] + out["derived"]["b"] == pytest.approx(1.0)
    assert out["columns"]["D"] == "Training FLOP/(6*Model Size)" and out["wall_s"] > 0


def test_tiny_csv_text_and_json(tiny):
    res = _invoke(tiny, "--form", "power_law", "--col", "x=train steps", "--target", "val loss", "--boot", "10")
    assert res.exit_code == 0, res.output
    assert "power_law" in res.stdout and "95% CI" in res.stdout and "12 rows used" in res.stdout
    res = _invoke(tiny, "--form", "power_law", "--col", "x=`train steps`", "--target", "val loss", "--boot", "0",
                  "--json")
    out = json.loads(res.stdout)
    assert out["params"]["alpha"] == pytest.approx(0.5, rel=1e-4) and out["ci"] == {}


def test_a_variable_named_like_a_column_needs_no_col(tmp_path):
    path = tmp_path / "d.csv"
    d = np.logspace(9, 12, 8)
    path.write_text("D,bs\n" + "".join(f"{a:.17g},{0.58 * a**0.571:.17g}\n" for a in d))
    res = _invoke(path, "--form", "step_law_batch", "--target", "bs", "--boot", "0", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["params"]["g"] == pytest.approx(0.571, rel=1e-4)


def test_unknown_column_lists_the_valid_ones(tiny):
    res = _invoke(tiny, "--form", "power_law", "--col", "x=train step", "--target", "val loss")
    one_line_error(res, "Unknown column 'train step'", "valid columns: 'run', 'train steps', 'val loss'")
    res = _invoke(tiny, "--form", "power_law", "--col", "x=train steps")  # default target `loss` is absent
    one_line_error(res, "Unknown column 'loss'", "'val loss'")


def test_too_few_rows_non_positive_logs_and_bad_options(tiny, tmp_path):
    few = tmp_path / "few.csv"
    few.write_text("n,loss\n1,3\n2,2.5\n3,2.4\n")
    one_line_error(_invoke(few, "--form", "power_law", "--col", "x=n"), "at least 4 rows", "3 free parameters")
    one_line_error(_invoke(tiny, "--form", "power_law", "--col", "x=train steps - 1000", "--target", "val loss"),
                    "data['x']", "positive", "non-positive")
    one_line_error(_invoke(tiny, "--form", "power_law", "--col", "x=train steps", "--target", "val loss - 3"),
                    "`target`", "positive")
    one_line_error(_invoke(tiny, "--form", "power_law", "--col", "x=run", "--target", "val loss"),
                    "column 'run'", "numeric")
    one_line_error(_invoke(tiny, "--form", "chinchilla", "--col", "N=train steps", "--target", "val loss"),
                    "none for D")
    one_line_error(_invoke(tiny, "--form", "power_law", "--col", "N=train steps", "--target", "val loss"),
                    "variables of 'power_law' (x)")
    one_line_error(_invoke(tiny, "--form", "power_law", "--col", "x", "--target", "val loss"), "NAME=VALUE")
    one_line_error(_invoke(tiny, "--form", "powerlaw", "--col", "x=train steps"), "Did you mean 'power_law'")
    one_line_error(_invoke(tiny, "--form", "data_mixture", "--hyper", "domains=1"), "data_mixture.domains")
    one_line_error(_invoke(tmp_path / "missing.csv", "--form", "power_law"), "readable CSV")


def test_non_convergence_is_reported_not_returned(tiny, monkeypatch):
    monkeypatch.setattr("losslab.scaling.fitting._converged", lambda prob, res: False)
    res = _invoke(tiny, "--form", "power_law", "--col", "x=train steps", "--target", "val loss", "--json")
    one_line_error(res, "did not converge", "no result is returned")
    assert res.stdout == ""


def test_list_shows_the_scaling_forms():
    res = runner.invoke(app, ["list", "--kind", "scaling", "--json"])
    entries = {e["name"]: e for e in json.loads(res.stdout)}
    assert entries["lr_annealing"]["papers"] == [273] and entries["crossover"]["papers"] == [198]
    assert entries["data_mixture"]["hyper"]["domains"]["default"] == 3
    assert "Hoffmann" in entries["chinchilla"]["reference"]
