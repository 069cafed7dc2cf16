"""Validation of a scaling-law fit: leave-largest-out extrapolation and a bootstrap over runs.

A law is only useful if it extrapolates. :func:`leave_largest_out` fits on all
but the ``k`` largest runs (by a variable such as ``N`` or compute) and reports
the relative error of the prediction on the held-out ones. :func:`bootstrap`
resamples runs to give intervals for every parameter (see ``Fit.ci``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from losslab.core.validation import check_number, fail
from losslab.scaling.fitting import Fit, fit, with_bootstrap
from losslab.scaling.forms import get_form


@dataclass(frozen=True)
class HoldoutResult:
    """The fit on the smaller runs and its predictions for the held-out larger ones.

    Attributes:
        fit: the :class:`Fit` on the kept rows.
        held_out: ``(k,)`` row indices of the held-out runs, largest last.
        predicted: ``(k,)`` predictions of the law at the held-out runs.
        observed: ``(k,)`` their observed targets.
    """

    fit: Fit
    held_out: np.ndarray
    predicted: np.ndarray
    observed: np.ndarray
    held_data: Mapping[str, np.ndarray] | None = None  # the form's variables at the held-out runs

    @property
    def rel_error(self) -> np.ndarray:
        """``(predicted - observed) / observed`` for each held-out run."""
        return (self.predicted - self.observed) / self.observed

    @property
    def mean_abs_rel_error(self) -> float:
        return float(np.mean(np.abs(self.rel_error)))

    def boot_predictions(self) -> np.ndarray:
        """``(B', k)`` predictions at the held-out runs of each converged bootstrap replicate.

        Raises:
            ValueError: if the fit has no bootstrap (``n_boot=0``) or none of it converged.
        """
        if self.fit.boot is None or self.held_data is None:
            raise ValueError("Expected a held-out fit with bootstrap samples (pass n_boot > 0), but got none.")
        ok = self.fit.boot[~np.isnan(self.fit.boot).any(axis=1)]
        if ok.shape[0] == 0:
            raise ValueError("Expected at least one converged bootstrap replicate, but none converged.")
        names = list(self.fit.boot_names)
        params = {p: ok[:, names.index(p)][:, None] for p in self.fit.form.param_names}
        with np.errstate(all="ignore"):
            return np.asarray(self.fit.form.predict(self.held_data, params), dtype=float).reshape(ok.shape[0], -1)

    def prediction_band(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Percentile bootstrap interval of the prediction at each held-out run: two ``(k,)`` arrays."""
        check_number(level, "level", low=0.0, high=1.0, low_open=True, high_open=True)
        lo, hi = np.nanquantile(self.boot_predictions(), [(1 - level) / 2, (1 + level) / 2], axis=0)
        return lo, hi

    def error_ci(self, level: float = 0.95) -> tuple[float, float]:
        r"""Percentile bootstrap interval of the mean absolute relative held-out error.

        Each replicate's predictions give :math:`\frac1k\sum_i |\hat f_b(x_i) - y_i| / y_i`.
        """
        check_number(level, "level", low=0.0, high=1.0, low_open=True, high_open=True)
        err = np.mean(np.abs(self.boot_predictions() - self.observed) / np.abs(self.observed), axis=1)
        lo, hi = np.nanquantile(err, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)


def leave_largest_out(
    form: Any,
    data: Mapping[str, Any],
    target: Any,
    *,
    by: str | Any,
    k: int = 1,
    **fit_kwargs: Any,
) -> HoldoutResult:
    r"""Fit on all but the ``k`` largest runs and predict those.

    Use it to check that a law extrapolates before trusting a prediction at a
    larger scale; the held-out error is the honest number to report.

    .. math::
        \mathrm{err}_i = \frac{\hat f(x_i) - y_i}{y_i}, \quad i \in \text{the } k \text{ largest by } s

    Args:
        form: a form name or :class:`~losslab.scaling.forms.Form`.
        data: variable name -> ``(n,)`` array.
        target: ``(n,)`` observed values.
        by: the variable that orders runs by size (a key of ``data``), or an ``(n,)``
            array of sizes (e.g. compute ``6 * N * D``). Ties keep the data order.
        k: how many of the largest runs to hold out, ``1 <= k < n``.
        **fit_kwargs: passed to :func:`losslab.scaling.fit` (``groups`` is subset with the rows).

    Returns:
        A :class:`HoldoutResult`.

    Raises:
        ValueError: on an unknown ``by``, a bad ``k``, or any error of :func:`losslab.scaling.fit`.

    Example:
        >>> x = np.logspace(1, 4, 12)
        >>> res = leave_largest_out("power_law", {"x": x}, 2.0 + 30.0 * x**-0.5, by="x", k=2)
        >>> bool(res.mean_abs_rel_error < 1e-4)
        True
    """
    y = np.asarray(target, dtype=float)
    sizes = _sizes(data, by, y.size)
    k = int(check_number(k, "k", low=1, high=max(1, y.size - 1), integer=True))
    order = np.argsort(sizes, kind="stable")
    keep, held = np.sort(order[: y.size - k]), order[y.size - k :]
    form_ = get_form(form, **dict(fit_kwargs.pop("hyper", None) or {}))
    cols = {name: _sizes(data, name, y.size) for name in form_.variables if name in data}
    if fit_kwargs.get("groups") is not None:  # run labels follow their rows
        fit_kwargs["groups"] = np.asarray(fit_kwargs["groups"])[keep]
    result = fit(form_, {name: col[keep] for name, col in cols.items()}, y[keep], **fit_kwargs)
    held_data = {name: col[held] for name, col in cols.items()}
    return HoldoutResult(result, held, result.predict(held_data), y[held], held_data)


def _sizes(data: Mapping[str, Any], by: str | Any, n: int) -> np.ndarray:
    """The column ``by`` of ``data`` (or the array ``by``) as floats of shape ``(n,)``."""
    name = "by"
    if isinstance(by, str):
        if by not in data:
            fail("by", f"a variable of `data` ({', '.join(map(str, data))})", repr(by))
        name, by = f"data['{by}']", data[by]
    sizes = np.asarray(by, dtype=float)
    if sizes.shape != (n,):
        fail(name, f"an array of shape ({n},) like `target`", f"shape {sizes.shape}")
    return sizes


def bootstrap(result: Fit, *, n_boot: int = 200, seed: int = 0) -> Fit:
    """Bootstrap a fit over runs: ``result`` with ``n_boot`` resampled refits attached.

    Rows are runs unless the fit was made with ``groups`` (e.g. one label per
    loss curve), in which case whole groups are resampled. Read the intervals
    with ``.ci(level)``; the samples are in ``.boot``.

    Raises:
        ValueError: if ``n_boot < 1`` or ``result`` did not come from :func:`losslab.scaling.fit`.

    Example:
        >>> x = np.logspace(1, 4, 15)
        >>> y = (2.0 + 30.0 * x**-0.5) * np.exp(0.01 * np.random.default_rng(0).standard_normal(15))
        >>> lo, hi = bootstrap(fit("power_law", {"x": x}, y), n_boot=20).ci(0.9)["alpha"]
        >>> bool(lo < 0.5 < hi)
        True
    """
    return with_bootstrap(result, n_boot=n_boot, seed=seed)
