"""Figures of a fit: written, not blank, one per kind of form; bad paths are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from losslab.scaling import fit, leave_largest_out
from losslab.scaling.plot import figure_for, save_figure


def _pixels(path):
    return np.asarray(Image.open(path).convert("L"), dtype=float)


@pytest.fixture(scope="module")
def chinchilla_holdout():
    rng = np.random.default_rng(0)
    n, d = np.meshgrid(np.logspace(3, 6, 5), np.logspace(4, 7, 4))
    n, d = n.ravel(), d.ravel()
    y = (1.5 + 400 * n**-0.35 + 900 * d**-0.37) * np.exp(0.01 * rng.standard_normal(n.size))
    return {"N": n, "D": d}, y, leave_largest_out("chinchilla", {"N": n, "D": d}, y, by=n * d, k=2, n_boot=20)


def test_chinchilla_figure_has_curves_and_frontier(chinchilla_holdout, tmp_path):
    data, y, held = chinchilla_holdout
    fig = figure_for(held.fit, data, y, held.held_out)
    assert len(fig.axes) >= 2
    path = save_figure(fig, tmp_path / "c.png")
    px = _pixels(path)
    assert px.std() > 5 and (px < 50).mean() > 0.001  # drawn: dark ink on a light page


@pytest.mark.parametrize("form, data, y", [
    ("power_law", {"x": np.logspace(1, 4, 12)}, 2.0 + 30.0 * np.logspace(1, 4, 12) ** -0.5),
    ("lr_annealing", {"S1": np.linspace(1, 20, 15), "S2": np.linspace(0, 0.5, 15)},
     1.0 + 2.0 * np.linspace(1, 20, 15) ** -0.5 - 0.3 * np.linspace(0, 0.5, 15)),
])
def test_other_forms_plot_with_a_band(form, data, y, tmp_path):
    f = fit(form, data, y, n_boot=10)
    path = save_figure(figure_for(f, data, y, heldout=np.arange(y.size) >= y.size - 2), tmp_path / "f.png")
    assert _pixels(path).std() > 5


@pytest.mark.parametrize("name, fragment", [("fig.jpg", ".png"), ("missing/fig.png", "does not exist")])
def test_bad_plot_paths_are_one_line(chinchilla_holdout, tmp_path, name, fragment):
    data, y, held = chinchilla_holdout
    with pytest.raises(ValueError, match=fragment) as err:
        save_figure(figure_for(held.fit, data, y), tmp_path / name)
    assert "\n" not in str(err.value) and not (tmp_path / name).exists()


def test_bad_arguments_name_themselves(chinchilla_holdout):
    data, y, held = chinchilla_holdout
    with pytest.raises(ValueError, match="heldout"):
        figure_for(held.fit, data, y, heldout=[99])
    with pytest.raises(ValueError, match="data"):
        figure_for(held.fit, {"N": data["N"]}, y)


def test_holdout_band_and_error_ci(chinchilla_holdout):
    _, _, held = chinchilla_holdout
    lo, hi = held.prediction_band(0.9)
    assert np.all(lo <= hi) and lo.shape == (2,)
    e_lo, e_hi = held.error_ci(0.9)
    assert 0 <= e_lo <= e_hi
    preds = held.boot_predictions()
    assert preds.shape[1] == 2 and np.all(np.isfinite(preds))
