"""Spec -> store -> fit: `losslab scaling fit --store --spec` on a tiny MNIST-1D sweep, its table and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from losslab.cli import app
from losslab.data.conditions._common import round_half_up
from losslab.data.mnist1d import make_mnist1d
from losslab.engine.plan import make_plan
from losslab.engine.spec import SpecError, parse_spec
from losslab.engine.store import Store
from losslab.scaling.expr import evaluate
from losslab.scaling.runs import config_columns, runs_table
from scaling_cases import one_line_error

runner = CliRunner()
WIDTHS, FRACTIONS, SAMPLES = [4, 8, 16, 32], [0.5, 1.0], 300
SPEC = {
    "name": "tiny-scaling",
    "datasets": [{"name": "mnist1d", "params": {"num_samples": SAMPLES}}],
    "model": {"name": "mlp", "sweep": {"width": WIDTHS}},
    "conditions": [{"name": "subsample", "sweep": {"fraction": FRACTIONS}}],
    "objectives": [{"name": "ce"}],
    "seeds": 2,
    "train": {"lr": 0.01, "batch_size": 60, "epochs": 1},
    "scaling": {"form": "chinchilla", "cols": {"N": "params", "D": "n_train"}, "target": "test_nll",
                "holdout": 2, "by": "params*n_train", "boot": 20},
}




@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The tiny sweep trained once into a SQLite store: (spec path, store url)."""
    root = tmp_path_factory.mktemp("runs")
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    url = f"sqlite:///{root}/runs.db"
    res = runner.invoke(app, ["run", str(path), "--store", url])
    assert res.exit_code == 0, res.output
    return path, url


def test_table_columns_are_the_runs_seed_means(stored):
    path, url = stored
    table = runs_table(path, url)
    spec = parse_spec(SPEC)
    assert len(table) == len(WIDTHS) * len(FRACTIONS)
    assert evaluate("n_seeds", table).tolist() == [2.0] * len(table)
    # Each row's metric is the mean over its two seeds, read independently from the store.
    finals = Store(url, create=False).final_metrics(r.run_id for r in make_plan(spec))
    by_cfg: dict[tuple, list[float]] = {}
    for r in make_plan(spec):
        key = (r.config["model"]["params"]["width"], r.config["conditions"][0]["params"]["fraction"])
        by_cfg.setdefault(key, []).append(finals[r.run_id]["test_nll"])
    keys = list(zip(evaluate("model.width", table), evaluate("subsample.fraction", table)))
    np.testing.assert_allclose(evaluate("test_nll", table), [np.mean(by_cfg[k]) for k in keys], rtol=1e-12)
    # params: the 40-w-w-10 MLP's weights and biases; n_train: the stratified subsample's size.
    w = evaluate("model.width", table)
    np.testing.assert_array_equal(evaluate("params", table), 40 * w + w + w * w + w + 10 * w + 10)
    y = make_mnist1d(num_samples=SAMPLES).y_train
    sizes = {f: sum(max(1, round_half_up(f * int((y == c).sum()))) for c in range(10)) for f in FRACTIONS}
    np.testing.assert_array_equal(evaluate("n_train", table), [sizes[f] for _, f in keys])
    np.testing.assert_array_equal(evaluate("samples_seen", table), evaluate("n_train", table))  # 1 epoch


def test_fit_from_the_spec_block_alone_writes_json_and_a_plot(stored, tmp_path):
    path, url = stored
    png = tmp_path / "fit.png"
    res = runner.invoke(app, ["scaling", "fit", "--spec", str(path), "--store", url, "--json", "--plot", str(png)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["form"] == "chinchilla" and out["n"] == len(WIDTHS) * len(FRACTIONS) - 2
    hold = out["holdout"]
    assert hold["k"] == 2 and len(hold["observed"]) == 2
    np.testing.assert_allclose(hold["rel_error"], np.array(hold["predicted"]) / hold["observed"] - 1, rtol=1e-9)
    lo, hi = hold["mean_abs_rel_error_ci"]
    assert 0 <= lo <= hi
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.shape[0] > 100 and pixels.std() > 5  # drawn, not blank


def test_flags_override_the_block(stored):
    path, url = stored
    res = runner.invoke(app, ["scaling", "fit", "--spec", str(path), "--store", url, "--form", "power_law",
                              "--col", "x=params", "--target", "train_loss", "--holdout", "0", "--boot", "0",
                              "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["form"] == "power_law" and "holdout" not in out and out["n"] == len(WIDTHS) * len(FRACTIONS)


@pytest.mark.parametrize("args, fragments", [
    (["--col", "N=nope"], ["Unknown column 'nope'", "'params'", "'n_train'"]),
    (["--col", "N=model.activation"], ["'model.activation'", "numeric", "'relu'"]),
    (["--col", "N=params-params"], ["data['N']", "positive"]),
    (["--holdout", "4"], ["at least 6 rows", "4 row(s)"]),
    (["--plot", "fit.txt"], ["--plot", ".png"]),
    (["--plot", "/nonexistent-dir/fit.png"], ["--plot", "does not exist"]),
])
def test_bad_input_is_one_line(stored, args, fragments):
    path, url = stored
    one_line_error(runner.invoke(app, ["scaling", "fit", "--spec", str(path), "--store", url, "--boot", "0", *args]),
           *fragments)


def test_a_store_without_the_specs_runs_is_one_line(stored, tmp_path):
    path, _ = stored
    url = f"sqlite:///{tmp_path}/empty.db"
    Store(url)  # exists, holds nothing
    one_line_error(runner.invoke(app, ["scaling", "fit", "--spec", str(path), "--store", url]), "none of its 16 runs")
    missing = tmp_path / "missing.db"
    one_line_error(runner.invoke(app, ["scaling", "fit", "--spec", str(path), "--store", f"sqlite:///{missing}"]),
           "does not exist")
    assert not missing.exists()


def test_csv_and_spec_are_exclusive(stored, tmp_path):
    path, url = stored
    one_line_error(runner.invoke(app, ["scaling", "fit", str(tmp_path / "x.csv"), "--spec", str(path)]), "exactly one")
    one_line_error(runner.invoke(app, ["scaling", "fit"]), "exactly one")


def test_scaling_block_changes_no_run_id_and_is_validated():
    without = {k: v for k, v in SPEC.items() if k != "scaling"}
    assert [r.run_id for r in make_plan(parse_spec(SPEC))] == [r.run_id for r in make_plan(parse_spec(without))]
    for block, where in [({"form": "chinchila"}, "scaling.form"), ({"form": "chinchilla", "cols": {"x": "a"}},
                                                                     "scaling.cols"),
                         ({"form": "chinchilla", "holdout": -1}, "scaling.holdout"),
                         ({"form": "chinchilla", "colz": {}}, "scaling.colz")]:
        with pytest.raises(SpecError, match=where.replace(".", r"\.")) as err:
            parse_spec({**without, "scaling": block})
        assert "\n" not in str(err.value)


def test_a_model_sweep_makes_one_cell_per_model_and_keeps_single_model_ids():
    plan = make_plan(parse_spec(SPEC))
    assert len(plan) == len(WIDTHS) * len(FRACTIONS) * 2
    assert {r.dataset for r in plan} == {f"mnist1d(num_samples={SAMPLES}) / mlp(width={w})" for w in WIDTHS}
    one = {**SPEC, "model": {"name": "mlp", "params": {"width": 4}}}
    single = make_plan(parse_spec(one))
    assert {r.dataset for r in single} == {f"mnist1d(num_samples={SAMPLES})"}
    assert {r.run_id for r in single} < {r.run_id for r in plan}  # width 4 swept == width 4 fixed


def test_config_columns_flatten_numeric_settings():
    cfg = make_plan(parse_spec(SPEC))[0].config
    cols = config_columns(cfg)
    assert cols["model.width"] == 4 and cols["subsample.fraction"] == 0.5 and cols["train.lr"] == 0.01
    assert cols["model.activation"] == "relu" and cols["dataset.num_samples"] == SAMPLES
    assert "seed" not in cols


def test_the_html_report_carries_the_same_fit_as_the_cli(stored, tmp_path):
    import base64
    import io
    import json
    import re

    from PIL import Image, ImageStat

    path, url = stored
    page = tmp_path / "report.html"
    res = runner.invoke(app, ["report", str(path), "--store", url, "--html", str(page)])
    assert res.exit_code == 0, res.output
    html = page.read_text()
    section = html[html.index('id="scaling"'):]
    section = section[:section.index("</section>")]
    cli = json.loads(runner.invoke(app, ["scaling", "fit", "--spec", str(path), "--store", url, "--json"]).stdout)
    # the page's held-out table shows the CLI's predictions, to the digits it prints
    for pred in cli["holdout"]["predicted"]:
        assert f"{pred:.4g}" in section
    (uri,) = re.findall(r'src="data:image/png;base64,([^"]+)"', section)
    img = Image.open(io.BytesIO(base64.b64decode(uri))).convert("L")
    assert ImageStat.Stat(img).stddev[0] > 8  # a drawn figure, not a blank canvas
