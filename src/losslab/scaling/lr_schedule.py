"""Learning-rate schedules and the areas S1 and S2 of the LR-annealing law [273].

See :func:`losslab.scaling.forms.lr_annealing` for the law itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.signal import lfilter

from losslab.core.validation import check_number, fail


def annealing_areas(lr: Any, *, decay: float = 0.999) -> tuple[np.ndarray, np.ndarray]:
    r"""Forward area S1 and annealing area S2 of an LR schedule, at every step.

    Use the two arrays as the variables ``S1`` and ``S2`` of the ``lr_annealing``
    form: entry ``t`` belongs to the loss measured after step ``t + 1``.

    .. math::
        S_1(s) = \sum_{i=1}^{s} \eta_i, \qquad S_2(s) = \sum_{i=1}^{s} m_i, \qquad
        m_i = \lambda\, m_{i-1} + (\eta_{i-1} - \eta_i), \quad m_0 = 0,\ \eta_0 = \eta_1

    where :math:`\lambda` is ``decay``. Steps where the LR rises (warm-up) give
    negative increments; the array is used as given. The momentum form of
    :math:`S_2` and :math:`\lambda = 0.999` follow ``reference/catalog.md`` and
    public reproductions of [273]; they were not checked against the paper's text.

    Args:
        lr: ``(T,)`` learning rate at each step, non-negative and finite.
        decay: the annealing-momentum factor :math:`\lambda` in ``[0, 1)``.

    Returns:
        ``(S1, S2)``, two ``(T,)`` float arrays.

    Raises:
        ValueError: on an empty, non-1-D, negative or non-finite ``lr``, or a bad ``decay``.

    References:
        [273] Tissue et al., *Scaling Law with Learning Rate Annealing*, 2024, arXiv:2408.11029.

    Example:
        >>> s1, s2 = annealing_areas([1.0, 1.0, 0.5, 0.5], decay=0.5)
        >>> s1.tolist(), s2.tolist()
        ([1.0, 2.0, 2.5, 3.0], [0.0, 0.0, 0.5, 0.75])
    """
    eta = np.asarray(lr, dtype=float)
    if eta.ndim != 1 or eta.size == 0:
        fail("lr", "a non-empty 1-D array", f"shape {eta.shape}")
    if not np.all(np.isfinite(eta)) or (eta < 0).any():
        fail("lr", "finite and non-negative", f"a minimum of {np.nanmin(eta):.4g}")
    check_number(decay, "decay", low=0.0, high=1.0, high_open=True)
    drops = np.concatenate([[0.0], eta[:-1] - eta[1:]])
    momentum = lfilter([1.0], [1.0, -decay], drops)  # m_i = decay * m_{i-1} + drop_i
    return np.cumsum(eta), np.cumsum(momentum)


def _check_steps(steps: int, peak: float, warmup: int) -> None:
    check_number(steps, "steps", low=1, integer=True)
    check_number(peak, "peak", low=0.0, low_open=True)
    check_number(warmup, "warmup", low=0, high=steps - 1, integer=True)


def _with_warmup(body: np.ndarray, peak: float, warmup: int) -> np.ndarray:
    ramp = peak * np.arange(1, warmup + 1) / warmup if warmup else np.empty(0)
    return np.concatenate([ramp, body])


def constant_schedule(steps: int, peak: float, *, warmup: int = 0) -> np.ndarray:
    """Linear warm-up to ``peak``, then constant: ``(steps,)`` learning rates.

    Example:
        >>> constant_schedule(4, 1.0, warmup=2).tolist()
        [0.5, 1.0, 1.0, 1.0]
    """
    _check_steps(steps, peak, warmup)
    return _with_warmup(np.full(steps - warmup, float(peak)), peak, warmup)


def cosine_schedule(steps: int, peak: float, *, final: float = 0.0, warmup: int = 0) -> np.ndarray:
    r"""Warm-up, then cosine decay from ``peak`` to ``final`` at the last step.

    .. math::
        \eta_t = \eta_{\min} + \tfrac12(\eta_{\max} - \eta_{\min})(1 + \cos(\pi t / (T-1)))

    Example:
        >>> cosine_schedule(3, 1.0).round(4).tolist()
        [1.0, 0.5, 0.0]
    """
    _check_steps(steps, peak, warmup)
    check_number(final, "final", low=0.0, high=peak)
    n = steps - warmup
    t = np.arange(n) / max(n - 1, 1)
    return _with_warmup(final + 0.5 * (peak - final) * (1 + np.cos(np.pi * t)), peak, warmup)


def wsd_schedule(steps: int, peak: float, *, decay_fraction: float = 0.2, final: float = 0.0,
                 warmup: int = 0) -> np.ndarray:
    """Warm-up, stable at ``peak``, then a linear decay to ``final`` over the last ``decay_fraction``.

    Example:
        >>> wsd_schedule(5, 1.0, decay_fraction=0.4).tolist()
        [1.0, 1.0, 1.0, 0.5, 0.0]
    """
    _check_steps(steps, peak, warmup)
    check_number(decay_fraction, "decay_fraction", low=0.0, high=1.0)
    check_number(final, "final", low=0.0, high=peak)
    n = steps - warmup
    n_decay = min(n, int(round(decay_fraction * steps)))
    decay = peak + (final - peak) * np.arange(1, n_decay + 1) / n_decay if n_decay else np.empty(0)
    return _with_warmup(np.concatenate([np.full(n - n_decay, float(peak)), decay]), peak, warmup)


# ----------------------------------------------------------------------------- the engine's schedules
ENGINE_SCHEDULES = ("constant", "cosine", "wsd")


def decay_steps(total: int, decay_fraction: float) -> int:
    """Steps of the WSD decay phase: ``max(1, round(decay_fraction * total))``."""
    return max(1, int(round(decay_fraction * total)))


def lr_at_step(kind: str, step: int, *, lr: float, warmup: int, total: int, decay: int = 1) -> float:
    r"""The learning rate the engine uses before optimizer step ``step`` (0-based) of ``total``.

    The single definition behind ``train.lr_schedule`` (the engine's ``LRSchedule``
    calls it) and behind :func:`training_schedule`, so S1 and S2 of a stored run
    come from exactly the rates it trained with. After a linear warm-up
    :math:`\eta_t = \eta (t + 1) / W` for :math:`t < W`:

    .. math::
        \text{constant: } \eta_t = \eta, \qquad
        \text{cosine: } \eta_t = \tfrac{\eta}{2}\big(1 + \cos(\pi (t - W) / (T - W))\big), \qquad
        \text{wsd: } \eta_t = \eta \min\big(1, (T - t) / D\big)

    so WSD is stable at :math:`\eta` and decays linearly over its last ``D`` steps,
    reaching :math:`\eta / D` at the last step (as cosine, it would reach 0 at ``t = T``).

    Args:
        kind: ``"constant"``, ``"cosine"`` or ``"wsd"``.
        step: 0-based step, ``0 <= step < total``.
        lr: peak learning rate.
        warmup: warm-up steps ``W`` (0: none), below ``total``.
        total: all steps ``T`` of the run.
        decay: WSD decay steps ``D`` (:func:`decay_steps`); ignored by the others.

    Example:
        >>> [round(lr_at_step("wsd", t, lr=1.0, warmup=0, total=4, decay=2), 3) for t in range(4)]
        [1.0, 1.0, 1.0, 0.5]
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    if kind == "constant":
        return lr
    if kind == "cosine":
        return 0.5 * lr * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))
    if kind == "wsd":
        return lr * min(1.0, (total - step) / decay)
    raise ValueError(f"Expected `kind` to be one of {', '.join(ENGINE_SCHEDULES)}, but got {kind!r}.")


def training_schedule(train: Mapping[str, Any], steps_per_epoch: int) -> np.ndarray:
    """Every step's learning rate of a run with the engine's ``train`` settings (a run config's ``train``).

    Reads ``lr``, ``epochs`` and the optional ``lr_schedule`` (``"constant"``),
    ``warmup_epochs`` (0) and ``decay_fraction`` (0.2); pass the result to
    :func:`annealing_areas` for S1 and S2.

    Returns:
        ``(epochs * steps_per_epoch,)`` learning rates.

    Raises:
        ValueError: on an unknown schedule, missing ``lr``/``epochs`` or a bad ``steps_per_epoch``.

    Example:
        >>> training_schedule({"lr": 1.0, "epochs": 2, "lr_schedule": "wsd", "decay_fraction": 0.5}, 2).tolist()
        [1.0, 1.0, 1.0, 0.5]
    """
    if not isinstance(train, Mapping) or "lr" not in train or "epochs" not in train:
        fail("train", "a mapping with `lr` and `epochs` (a run config's `train`)", type(train).__name__)
    kind = train.get("lr_schedule", "constant")
    if kind not in ENGINE_SCHEDULES:
        fail("train['lr_schedule']", f"one of {', '.join(ENGINE_SCHEDULES)}", repr(kind))
    spe = int(check_number(steps_per_epoch, "steps_per_epoch", low=1, integer=True))
    total = int(check_number(train["epochs"], "train['epochs']", low=1, integer=True)) * spe
    warmup = int(check_number(train.get("warmup_epochs", 0), "train['warmup_epochs']", low=0, integer=True)) * spe
    if warmup >= total:
        fail("train['warmup_epochs']", "fewer warm-up steps than steps in all", f"{warmup} of {total}")
    decay = decay_steps(total, check_number(train.get("decay_fraction", 0.2), "train['decay_fraction']",
                                            low=0.0, high=1.0, low_open=True))
    lr = check_number(train["lr"], "train['lr']", low=0.0, low_open=True)
    return np.array([lr_at_step(kind, t, lr=lr, warmup=warmup, total=total, decay=decay) for t in range(total)])
