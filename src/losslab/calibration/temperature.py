"""Temperature scaling: one scalar ``T > 0`` fitted on held-out logits by minimising the NLL.

The NLL of ``softmax(z / T)`` is convex in ``beta = 1 / T`` (a mean of
``logsumexp(beta z) - beta z_y``), so as a function of ``log T``, a monotone
reparametrisation, it has a single basin: a bounded Brent search on ``log T``
(``scipy.optimize.minimize_scalar``) finds its minimum inside the bracket
deterministically, without a learning rate or an initial guess.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torch import Tensor, nn

from losslab.core.validation import check_class_target, check_logits, check_number, fail

GUO = "Guo et al., *On Calibration of Modern Neural Networks*, ICML 2017, arXiv:1706.04599"
DEFAULT_BOUNDS = (1e-2, 1e2)


def _check_bounds(bounds: Any) -> tuple[float, float]:
    ok = isinstance(bounds, (tuple, list)) and len(bounds) == 2 and all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) and b > 0 for b in bounds)
    if not ok or not bounds[0] < bounds[1]:
        fail("bounds", "a pair (low, high) of finite temperatures with 0 < low < high", repr(bounds))
    return float(bounds[0]), float(bounds[1])


def temperature_nll(logits: Tensor, target: Tensor, temperature: float) -> float:
    """Mean NLL of ``softmax(logits / temperature)`` in float64 (no validation; a helper of the fit)."""
    with torch.no_grad():
        return float(F.cross_entropy(logits.detach().double() / temperature, target))


def fit_temperature(
    logits: Tensor,
    target: Tensor,
    *,
    max_iter: int = 100,
    bounds: tuple[float, float] = DEFAULT_BOUNDS,
    validate_args: bool = True,
) -> float:
    r"""The temperature that minimises the NLL of ``softmax(logits / T)`` on a held-out set.

    Use it as the standard post-hoc calibration baseline: fit ``T`` on
    validation logits of a trained classifier, then divide test logits by it.
    ``T > 1`` softens an over-confident model, ``T < 1`` sharpens an
    under-confident one; the argmax, hence accuracy, never changes.

    .. math::
        T^\star = \operatorname*{arg\,min}_{T \in [T_\text{lo}, T_\text{hi}]}
        \frac{1}{N}\sum_{i=1}^{N}\Big(\log\sum_{k} e^{z_{ik}/T} - z_{i y_i}/T\Big)

    searched over :math:`u = \log T` by bounded Brent (``scipy.optimize.minimize_scalar``,
    ``method="bounded"``, tolerance ``1e-6`` in :math:`u`); the NLL is convex in
    :math:`1/T`, so it is unimodal in :math:`u` and the search finds the minimum
    in the bracket. The bracket defaults to :math:`[10^{-2}, 10^{2}]`; when the
    optimum lies outside (e.g. perfectly separated data, where the NLL keeps
    falling as :math:`T \to 0`) the result is at or near the nearer end (anywhere the
    float64 NLL has become flat). The returned
    ``T`` never has a higher NLL than :math:`T = 1` when 1 is in the bracket
    (the fit falls back to 1 if the search ends worse).

    Args:
        logits: float tensor ``(N, C)``, ``C >= 2``, e.g. a validation set's logits.
        target: int tensor ``(N,)`` of class ids in ``[0, C)``.
        max_iter: most function evaluations of the search, an integer ``>= 1``.
        bounds: ``(low, high)`` bracket of temperatures, ``0 < low < high``.
        validate_args: check finiteness and the label range (forces a device sync).

    Returns:
        The fitted temperature, a Python float in ``bounds``.

    Raises:
        ValueError: on malformed ``logits`` or ``target``, or a bad ``max_iter`` or ``bounds``.

    References:
        Guo et al., *On Calibration of Modern Neural Networks*, ICML 2017, arXiv:1706.04599.

    Example:
        >>> z = torch.tensor([[4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [4.0, 0.0]])
        >>> t = fit_temperature(z, torch.tensor([0, 0, 0, 1]))  # 75% right: want sigmoid(4 / T) = 0.75
        >>> round(t, 3), round(4 / math.log(3), 3)
        (3.641, 3.641)
    """
    check_logits(logits, validate_args=validate_args)
    check_class_target(target, logits.shape[1], logits.shape[0], validate_args=validate_args)
    max_iter = check_number(max_iter, "max_iter", low=1, integer=True)
    lo, hi = _check_bounds(bounds)
    z, y = logits.detach().double(), target.detach()

    def nll(u: float) -> float:
        return temperature_nll(z, y, math.exp(u))

    res = minimize_scalar(nll, bounds=(math.log(lo), math.log(hi)), method="bounded",
                          options={"xatol": 1e-6, "maxiter": max_iter})
    t = min(max(math.exp(float(res.x)), lo), hi)
    if lo <= 1.0 <= hi and temperature_nll(z, y, 1.0) < temperature_nll(z, y, t):
        t = 1.0
    return t


class TemperatureScaler(nn.Module):
    """Temperature scaling as a module: :meth:`fit` finds ``T`` (:func:`fit_temperature`), ``forward`` divides by it.

    ``temperature`` is a float64 scalar buffer (1 before fitting), so it moves
    with ``.to(device)`` and is saved in the ``state_dict``. The formula is
    written once, in :func:`fit_temperature`.

    Example:
        >>> scaler = TemperatureScaler().fit(torch.tensor([[4.0, 0.0]] * 4), torch.tensor([0, 0, 0, 1]))
        >>> scaler(torch.tensor([[4.0, 0.0]])).softmax(-1)[0, 0].item()  # doctest: +ELLIPSIS
        0.75...
    """

    temperature: Tensor

    def __init__(self, *, max_iter: int = 100, bounds: tuple[float, float] = DEFAULT_BOUNDS) -> None:
        super().__init__()
        self.max_iter = check_number(max_iter, "max_iter", low=1, integer=True)
        self.bounds = _check_bounds(bounds)
        self.register_buffer("temperature", torch.tensor(1.0, dtype=torch.float64))

    def fit(self, logits: Tensor, target: Tensor, *, validate_args: bool = True) -> TemperatureScaler:
        """Fit ``T`` on ``(logits (N, C), target (N,))`` and return ``self``."""
        t = fit_temperature(logits, target, max_iter=self.max_iter, bounds=self.bounds, validate_args=validate_args)
        self.temperature.fill_(t)
        return self

    def forward(self, logits: Tensor) -> Tensor:
        """``logits / T``, shape ``(N, C)`` and dtype of ``logits``."""
        check_logits(logits, validate_args=False)
        return logits / self.temperature.to(logits.dtype)
