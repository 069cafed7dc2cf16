"""Figures of a scaling-law fit (matplotlib, Agg backend: no display needed).

:func:`figure_for` picks the figure by form: a one-variable law is drawn as
observed points and the fitted curve with its bootstrap band; Chinchilla as loss
against ``N`` per ``D`` bucket plus iso-loss contours with the compute-optimal
frontier; any other form as predicted against observed. Held-out runs are drawn
as open black squares with their bootstrap prediction intervals.
:func:`save_figure` writes a PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: figures render off-screen in workers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from losslab.core.validation import check_number, fail  # noqa: E402
from losslab.scaling.fitting import Fit  # noqa: E402
from losslab.scaling.forms import compute_optimal  # noqa: E402

_MAX_BUCKETS = 6
_CURVE_POINTS = 100


def figure_for(fit: Fit, data: Mapping[str, Any], target: Any, heldout: Sequence[int] | np.ndarray | None = None,
               *, level: float = 0.95, title: str | None = None, ylabel: str = "target") -> Figure:
    """A matplotlib figure of ``fit`` against all the rows it was asked to explain.

    Args:
        fit: a :class:`~losslab.scaling.fitting.Fit` (bootstrap bands need ``n_boot > 0``).
        data: variable name -> ``(n,)`` array for every row, held-out ones included.
        target: ``(n,)`` observed values.
        heldout: indices (or an ``(n,)`` boolean mask) of rows left out of the fit.
        level: level of the bootstrap bands.
        title: figure title; the form and its formula when ``None``.
        ylabel: name of the target on the axes (e.g. ``"test_nll"``).

    Returns:
        A :class:`matplotlib.figure.Figure` (not shown; embed it or :func:`save_figure` it).

    Raises:
        ValueError: on missing variables, mismatched lengths or bad ``heldout`` indices.

    Example:
        >>> x = np.logspace(1, 3, 8)
        >>> from losslab.scaling import fit as fit_law
        >>> fig = figure_for(fit_law("power_law", {"x": x}, 1 + 5 * x**-0.5), {"x": x}, 1 + 5 * x**-0.5)
        >>> len(fig.axes)
        1
    """
    y = np.asarray(target, dtype=float)
    if y.ndim != 1:
        fail("target", "a 1-D array", f"shape {y.shape}")
    v = {}
    for name in fit.form.variables:
        if name not in data:
            fail("data", f"the variables {', '.join(fit.form.variables)} of form {fit.form.name!r}", f"no {name!r}")
        v[name] = np.asarray(data[name], dtype=float)
        if v[name].shape != y.shape:
            fail(f"data['{name}']", f"shape {y.shape} like `target`", f"shape {v[name].shape}")
    held = _mask(heldout, y.size)
    check_number(level, "level", low=0.0, high=1.0, low_open=True, high_open=True)
    if fit.form.name == "chinchilla":
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
        _chinchilla_curves(axes[0], fit, v, y, held, level, ylabel)
        _chinchilla_frontier(axes[1], fit, v, y, held)
    elif len(fit.form.variables) == 1:
        fig, ax = plt.subplots(figsize=(6, 4.3))
        _one_variable(ax, fit, fit.form.variables[0], v, y, held, level, ylabel)
    else:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        _parity(ax, fit, v, y, held, level, ylabel)
    fig.suptitle(title if title is not None else f"{fit.form.name}: {fit.form.formula}", fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (a ``.png`` name in an existing folder); closes the figure.

    Raises:
        ValueError: one line, for a name not ending in ``.png``, a missing folder or an unwritable file.
    """
    p = Path(path)
    if p.suffix.lower() != ".png":
        plt.close(fig)
        fail("--plot", "a path ending in .png", repr(str(path)))
    if not p.parent.is_dir():
        plt.close(fig)
        fail("--plot", "a path in an existing folder", f"{str(p.parent)!r}, which does not exist")
    try:
        fig.savefig(p, dpi=110)
    except OSError as exc:
        raise ValueError(f"Expected `--plot` to be a writable file, but {p} gave: {exc}".replace("\n", " ")) from None
    finally:
        plt.close(fig)
    return p


# ----------------------------------------------------------------------------- pieces
def _mask(heldout: Any, n: int) -> np.ndarray:
    if heldout is None:
        return np.zeros(n, dtype=bool)
    h = np.asarray(heldout)
    if h.dtype == bool:
        if h.shape != (n,):
            fail("heldout", f"a boolean mask of shape ({n},) or row indices", f"shape {h.shape}")
        return h
    if h.size and (not np.issubdtype(h.dtype, np.integer) or h.min() < -n or h.max() >= n):
        fail("heldout", f"row indices in [0, {n})", repr(h.tolist()))
    mask = np.zeros(n, dtype=bool)
    mask[h.astype(int)] = True
    return mask


def _boot_params(fit: Fit) -> dict[str, np.ndarray] | None:
    """Converged bootstrap parameters as ``(B', 1)`` arrays (the forms broadcast over them), or None."""
    if fit.boot is None:
        return None
    ok = fit.boot[~np.isnan(fit.boot).any(axis=1)]
    if ok.shape[0] < 2:
        return None
    names = list(fit.boot_names)
    return {p: ok[:, names.index(p)][:, None] for p in fit.form.param_names}


def _band(fit: Fit, v: Mapping[str, np.ndarray], level: float) -> tuple[np.ndarray, np.ndarray] | None:
    params = _boot_params(fit)
    if params is None:
        return None
    with np.errstate(all="ignore"):
        pred = np.asarray(fit.form.predict(v, params), dtype=float)
    lo, hi = np.nanquantile(pred, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def _mark_held(ax: Any, x: np.ndarray, y: np.ndarray, fit: Fit, v: Mapping[str, np.ndarray], held: np.ndarray,
               level: float) -> None:
    if not held.any():
        return
    ax.scatter(x[held], y[held], s=70, facecolors="none", edgecolors="black", marker="s", zorder=4,
               label="held out (observed)")
    sub = {k: a[held] for k, a in v.items()}
    band = _band(fit, sub, level)
    pred = fit.predict(sub)
    if band is not None:
        err = np.vstack([np.maximum(pred - band[0], 0), np.maximum(band[1] - pred, 0)])
        ax.errorbar(x[held], pred, yerr=err, fmt="x", color="black", capsize=3, zorder=5,
                    label=f"predicted, {level:.0%} bootstrap interval")
    else:
        ax.scatter(x[held], pred, marker="x", color="black", zorder=5, label="predicted")


def _curve_x(x: np.ndarray) -> np.ndarray:
    if np.all(x > 0):
        return np.geomspace(x.min(), x.max(), _CURVE_POINTS)
    return np.linspace(x.min(), x.max(), _CURVE_POINTS)


def _one_variable(ax: Any, fit: Fit, name: str, v: Mapping[str, np.ndarray], y: np.ndarray, held: np.ndarray,
                  level: float, ylabel: str) -> None:
    x = v[name]
    grid = {name: _curve_x(x)}
    ax.scatter(x[~held], y[~held], s=18, color="C0", label="fitted runs")
    ax.plot(grid[name], fit.predict(grid), color="C1", label="fit")
    band = _band(fit, grid, level)
    if band is not None:
        ax.fill_between(grid[name], band[0], band[1], color="C1", alpha=0.25, label=f"{level:.0%} bootstrap band")
    _mark_held(ax, x, y, fit, v, held, level)
    if np.all(x > 0):
        ax.set_xscale("log")
    if np.all(y > 0):
        ax.set_yscale("log")
    ax.set_xlabel(name)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def _buckets(d: np.ndarray) -> list[np.ndarray]:
    """Rows grouped by ``D``: each distinct value, or log-quantile bins when there are many."""
    values = np.unique(d)
    if values.size <= _MAX_BUCKETS:
        return [d == u for u in values]
    edges = np.quantile(np.log(d), np.linspace(0, 1, _MAX_BUCKETS + 1))
    idx = np.clip(np.searchsorted(edges, np.log(d), side="right") - 1, 0, _MAX_BUCKETS - 1)
    return [idx == b for b in range(_MAX_BUCKETS) if (idx == b).any()]


def _chinchilla_curves(ax: Any, fit: Fit, v: Mapping[str, np.ndarray], y: np.ndarray, held: np.ndarray,
                       level: float, ylabel: str) -> None:
    n, d = v["N"], v["D"]
    grid_n = np.geomspace(n.min(), n.max(), _CURVE_POINTS)
    buckets = _buckets(d)
    for j, rows in enumerate(buckets):
        color = plt.get_cmap("viridis")(j / max(1, len(buckets) - 1))
        d_mid = float(np.exp(np.median(np.log(d[rows]))))
        grid = {"N": grid_n, "D": np.full_like(grid_n, d_mid)}
        keep = rows & ~held
        ax.scatter(n[keep], y[keep], s=18, color=color)
        ax.plot(grid_n, fit.predict(grid), color=color, label=f"D = {d_mid:.3g}")
        band = _band(fit, grid, level)
        if band is not None:
            ax.fill_between(grid_n, band[0], band[1], color=color, alpha=0.18)
    _mark_held(ax, n, y, fit, v, held, level)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N")
    ax.set_ylabel(ylabel)
    ax.set_title(f"fit per D bucket ({level:.0%} bootstrap bands)", fontsize=9)
    ax.legend(fontsize=7)


def _chinchilla_frontier(ax: Any, fit: Fit, v: Mapping[str, np.ndarray], y: np.ndarray, held: np.ndarray) -> None:
    n, d = v["N"], v["D"]
    gn = np.geomspace(n.min() / 2, n.max() * 2, 120)
    gd = np.geomspace(d.min() / 2, d.max() * 2, 120)
    mn, md = np.meshgrid(gn, gd)
    loss = fit.predict({"N": mn.ravel(), "D": md.ravel()}).reshape(mn.shape)
    contours = ax.contour(mn, md, loss, levels=10, cmap="viridis", linewidths=0.8)
    ax.clabel(contours, fontsize=6, fmt="%.3g")
    ax.scatter(n[~held], d[~held], c=y[~held], cmap="viridis", s=20, edgecolors="grey", linewidths=0.3,
               label="fitted runs")
    if held.any():
        ax.scatter(n[held], d[held], s=70, facecolors="none", edgecolors="black", marker="s", label="held out")
    c = 6.0 * np.geomspace((gn * gd).min(), (gn * gd).max(), 60)
    n_opt, d_opt = compute_optimal(fit.params, c)
    inside = (n_opt >= gn[0]) & (n_opt <= gn[-1]) & (d_opt >= gd[0]) & (d_opt <= gd[-1])
    ax.plot(n_opt[inside], d_opt[inside], color="red", label="compute-optimal N*(C), D*(C)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(gn[0], gn[-1])
    ax.set_ylim(gd[0], gd[-1])
    ax.set_xlabel("N")
    ax.set_ylabel("D")
    ax.set_title("iso-loss contours of the fit, C = 6ND", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")


def _parity(ax: Any, fit: Fit, v: Mapping[str, np.ndarray], y: np.ndarray, held: np.ndarray, level: float,
            ylabel: str) -> None:
    pred = fit.predict(v)
    ax.scatter(y[~held], pred[~held], s=18, color="C0", label="fitted runs")
    _mark_held(ax, y, y, fit, v, held, level)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=0.8, label="predicted = observed")
    ax.set_xlabel(f"observed {ylabel}")
    ax.set_ylabel(f"predicted {ylabel}")
    ax.legend(fontsize=7)
