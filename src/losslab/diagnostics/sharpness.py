"""Sharpness of the loss landscape: top Hessian eigenvalues, the Hessian trace and the edge of stability.

All of them see the Hessian only through Hessian-vector products of the mean
per-sample loss over a fixed batch (double backpropagation, chunked over the
batch so memory stays bounded), so they scale to any model that fits a
backward pass. The Hessian is taken with respect to every trainable parameter
(``requires_grad=True``); freeze parameters to restrict it to a block (e.g.
DARTS's architecture weights). Models are measured in eval mode, so dropout is
off and batch-norm uses its running statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from losslab.core.registry import flag, integer, real, register
from losslab.core.validation import (
    check_consistent_batch,
    check_finite,
    check_nonempty,
    check_number,
    check_tensor,
    fail,
)
from losslab.diagnostics._base import restore_model_state
from losslab.diagnostics._hvp import (
    HessianOperator,
    LossFn,
    cross_entropy_per_sample,
    lanczos_tridiagonal,
    power_iteration,
    rademacher,
    random_normal,
)

_CHUNK = integer(512, 1, doc="samples per double-backward pass (bounds memory)")


def _operator(model: Any, inputs: Any, target: Any, loss_fn: Any, chunk_size: Any) -> HessianOperator:
    """Validate the shared arguments once and build the Hessian-vector product."""
    if not isinstance(model, nn.Module):
        fail("model", "a torch.nn.Module", type(model).__name__)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        fail("model", "a module with at least one trainable parameter", "none with requires_grad=True")
    check_nonempty(check_tensor(inputs, "inputs"), "inputs")
    check_nonempty(check_tensor(target, "target"), "target")
    check_consistent_batch(inputs=inputs, target=target)
    if inputs.dtype.is_floating_point:
        check_finite(inputs, "inputs")
    if loss_fn is not None and not callable(loss_fn):
        fail("loss_fn", "a callable loss_fn(logits, target) -> (n,) or None", type(loss_fn).__name__)
    chunk_size = check_number(chunk_size, "chunk_size", low=1, integer=True)
    names, params = zip(*named)
    return HessianOperator(model, tuple(params), tuple(names), inputs, target,
                           loss_fn or cross_entropy_per_sample, chunk_size)


def _generator(generator: Any) -> torch.Generator:
    """The caller's generator, or a fresh one seeded 0 so that a bare call is reproducible."""
    if generator is None:
        return torch.Generator().manual_seed(0)
    if not isinstance(generator, torch.Generator):
        fail("generator", "a torch.Generator or None", type(generator).__name__)
    return generator


def hessian_vector_product(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    vector: Tensor,
    *,
    loss_fn: LossFn | None = None,
    chunk_size: int = 512,
) -> Tensor:
    r"""The product :math:`Hv` of the Hessian of the mean loss with a flat parameter vector.

    Use it to build your own curvature estimator; the registered diagnostics
    below are built on it. ``vector`` uses the layout of
    :func:`torch.nn.utils.parameters_to_vector` over the trainable parameters.

    .. math::
        Hv = \frac{1}{n}\sum_{c}\nabla_\theta\Big\langle \nabla_\theta
        \sum_{i \in c} \ell(f_\theta(x_i), y_i),\ v\Big\rangle

    summed over chunks :math:`c` of at most ``chunk_size`` samples.

    Args:
        model: the network; its trainable parameters define :math:`\theta`.
        inputs: a batch ``(n, ...)``; target: its labels ``(n,)`` (or what ``loss_fn`` takes).
        vector: ``(P,)`` with ``P`` the number of trainable scalars, in the parameters' dtype.
        loss_fn: per-sample loss ``loss_fn(logits, target) -> (n,)``; cross-entropy if None.
        chunk_size: samples per double-backward pass, at least 1.

    Returns:
        ``(P,)``, the product :math:`Hv`; the model is left as found.

    Raises:
        ValueError: on a bad ``model``, ``inputs``, ``target``, ``vector``, ``loss_fn`` or ``chunk_size``.

    References:
        Pearlmutter, *Fast exact multiplication by the Hessian*, Neural Computation 1994.

    Example:
        >>> model = torch.nn.Linear(2, 2)
        >>> x, y = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
        >>> tuple(hessian_vector_product(model, x, y, torch.ones(6)).shape)
        (6,)
    """
    op = _operator(model, inputs, target, loss_fn, chunk_size)
    check_tensor(vector, "vector")
    dtype, device = op.like_params()
    if tuple(vector.shape) != (op.dim,) or vector.dtype != dtype:
        fail("vector", f"a {dtype} tensor of shape ({op.dim},)", f"{vector.dtype} of shape {tuple(vector.shape)}")
    with restore_model_state(model):
        return op(vector.to(device)).detach()


def _max_eig(op: HessianOperator, generator: torch.Generator, tol: float, max_iters: int) -> float:
    """Power iteration; if it lands on a negative eigenvalue, a second run on ``H - mu I`` finds the top one."""
    start = random_normal(op, generator)
    mu = power_iteration(op, start, tol=tol, max_iters=max_iters)
    if not mu < 0.0:
        return mu
    # H - mu I is positive semi-definite with top eigenvalue lambda_max - mu.
    shifted = power_iteration(lambda v: op(v) - mu * v, start, tol=tol, max_iters=max_iters)
    return shifted + mu


@register("diagnostic", "hessian_max_eig", family="sharpness", papers=(59, 287),
          hyper={"tol": real(1e-4, 0.0, None, low_open=True, doc="relative change that stops the iteration"),
                 "max_iters": integer(100, 1, doc="most power-iteration steps (one HVP each)"),
                 "chunk_size": _CHUNK})
def hessian_max_eig(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    *,
    loss_fn: LossFn | None = None,
    generator: torch.Generator | None = None,
    tol: float = 1e-4,
    max_iters: int = 100,
    chunk_size: int = 512,
) -> float:
    r"""Sharpness: the largest eigenvalue of the loss Hessian, by power iteration on Hessian-vector products.

    Use it to track curvature over training: DARTS's collapse shows as a growing
    :math:`\lambda_{\max}` of the validation loss [59]; under muP it stays
    width-independent, which is why learning rates transfer [287]; compare it with
    ``2 / lr`` (see :func:`edge_of_stability`).

    .. math::
        v_{t+1} = \frac{H v_t}{\lVert H v_t\rVert},\qquad
        \lambda_t = v_t^\top H v_t \to \lambda_{\max}(H),\qquad
        H = \nabla^2_\theta \frac{1}{n}\sum_i \ell(f_\theta(x_i), y_i)

    from a Gaussian start drawn from ``generator``, stopping when
    :math:`|\lambda_t - \lambda_{t-1}| \le \mathrm{tol}\,|\lambda_t|`. Power
    iteration converges to the eigenvalue of largest *magnitude*; when that one is
    negative, a second run on :math:`H - \lambda_t I` (positive semi-definite)
    returns the algebraically largest eigenvalue, so the result is always
    :math:`\lambda_{\max}` (a choice here; the papers assume it is positive).
    Convergence is geometric in :math:`|\lambda_2/\lambda_1|`: with a small gap
    it stops on the relative-change rule before full accuracy.

    Args:
        model: the network; every trainable parameter enters the Hessian.
        inputs: a fixed batch ``(n, ...)``; target: its labels ``(n,)``.
        loss_fn: per-sample loss ``loss_fn(logits, target) -> (n,)``; cross-entropy if None.
        generator: draws the start vector; None uses a fresh generator seeded 0.
        tol: relative stopping tolerance in ``(0, inf)``.
        max_iters: most iterations, at least 1.
        chunk_size: samples per double-backward pass, at least 1.

    Returns:
        :math:`\lambda_{\max}` as a float (NaN if the loss is not finite).

    Raises:
        ValueError: on a bad ``model``, ``inputs``, ``target``, ``loss_fn``, ``generator``,
            ``tol``, ``max_iters`` or ``chunk_size``.

    References:
        [59] Zela et al., *Understanding and Robustifying Differentiable Architecture Search*, ICLR 2020.
        [287] Noci et al., *Why do Learning Rates Transfer? Reconciling Optimization and Scaling
        Limits for Deep Learning*, 2024.

    Example:
        >>> model = torch.nn.Linear(3, 2, dtype=torch.float64)
        >>> _ = [torch.nn.init.zeros_(p) for p in model.parameters()]  # softmax outputs (1/2, 1/2)
        >>> x, y = torch.eye(3, dtype=torch.float64), torch.tensor([0, 1, 0])
        >>> round(hessian_max_eig(model, x, y, tol=1e-10, max_iters=500), 4)
        0.6667
    """
    tol = check_number(tol, "tol", low=0.0, low_open=True)
    max_iters = check_number(max_iters, "max_iters", low=1, integer=True)
    op = _operator(model, inputs, target, loss_fn, chunk_size)
    generator = _generator(generator)
    with restore_model_state(model):
        return _max_eig(op, generator, tol, max_iters)


@register("diagnostic", "hessian_top_eigs", family="sharpness", papers=(59,),
          hyper={"k": integer(3, 1, doc="how many top eigenvalues"),
                 "num_iters": integer(30, 1, doc="Lanczos steps (one HVP each), at least k"),
                 "chunk_size": _CHUNK})
def hessian_top_eigs(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    *,
    loss_fn: LossFn | None = None,
    generator: torch.Generator | None = None,
    k: int = 3,
    num_iters: int = 30,
    chunk_size: int = 512,
) -> dict[str, float]:
    r"""The ``k`` largest eigenvalues of the loss Hessian, by Lanczos with full re-orthogonalisation.

    Use it when the top of the spectrum matters rather than one number: a gap
    between :math:`\lambda_1` and :math:`\lambda_k`, or outliers (about one per
    class) above the bulk. It is also the more accurate route to
    :math:`\lambda_{\max}` for the same number of HVPs.

    .. math::
        T_m = Q_m^\top H Q_m,\qquad
        Q_m = \operatorname{orth}\big[v, Hv, \dots, H^{m-1}v\big],\qquad
        \lambda_j(H) \approx \lambda_j(T_m),\ j = 1..k

    with ``m = min(num_iters, P)`` and every Lanczos vector orthogonalised against
    all previous ones (twice), which removes the spurious duplicate Ritz values of
    plain Lanczos. On breakdown a new random direction continues the basis, so
    repeated eigenvalues are resolved. With ``num_iters >= P`` the result is exact
    up to rounding. The Ritz values are the algebraically largest, in decreasing order.

    Args:
        model: the network; every trainable parameter enters the Hessian.
        inputs: a fixed batch ``(n, ...)``; target: its labels ``(n,)``.
        loss_fn: per-sample loss ``loss_fn(logits, target) -> (n,)``; cross-entropy if None.
        generator: draws the start vector; None uses a fresh generator seeded 0.
        k: how many eigenvalues, in ``[1, num_iters]`` and at most ``P``.
        num_iters: Lanczos steps, at least ``k``.
        chunk_size: samples per double-backward pass, at least 1.

    Returns:
        ``{"eig_1": lambda_1, ..., "eig_k": lambda_k}`` with :math:`\lambda_1 \ge \dots \ge \lambda_k`.

    Raises:
        ValueError: on a bad ``model``, ``inputs``, ``target``, ``loss_fn``, ``generator``,
            ``k`` (also when above ``num_iters`` or ``P``), ``num_iters`` or ``chunk_size``.

    References:
        [59] Zela et al., *Understanding and Robustifying Differentiable Architecture Search*, ICLR 2020.

    Example:
        >>> model = torch.nn.Linear(3, 2, dtype=torch.float64)
        >>> _ = [torch.nn.init.zeros_(p) for p in model.parameters()]  # softmax outputs (1/2, 1/2)
        >>> x, y = torch.eye(3, dtype=torch.float64), torch.tensor([0, 1, 0])
        >>> {key: round(v, 4) for key, v in hessian_top_eigs(model, x, y, k=3).items()}  # 1/6 is double
        {'eig_1': 0.6667, 'eig_2': 0.1667, 'eig_3': 0.1667}
    """
    k = check_number(k, "k", low=1, integer=True)
    num_iters = check_number(num_iters, "num_iters", low=1, integer=True)
    if k > num_iters:
        fail("k", f"at most num_iters ({num_iters})", k)
    op = _operator(model, inputs, target, loss_fn, chunk_size)
    if k > op.dim:
        fail("k", f"at most the number of trainable parameters ({op.dim})", k)
    generator = _generator(generator)
    with restore_model_state(model):
        start = random_normal(op, generator)
        tri = lanczos_tridiagonal(op, start, min(num_iters, op.dim), lambda: random_normal(op, generator))
    ritz = torch.linalg.eigvalsh(tri).flip(0)[:k]
    return {f"eig_{j + 1}": float(value) for j, value in enumerate(ritz)}


def _probe_estimates(op: HessianOperator, generator: torch.Generator, num_probes: int) -> Tensor:
    """``(num_probes, L)``: each probe's ``v_l^T (Hv)_l`` split over the ``L`` parameter tensors."""
    rows = []
    for _ in range(num_probes):
        v = rademacher(op, generator)
        products = (v * op(v)).to(torch.float64)
        rows.append(torch.stack([piece.sum() for piece in products.split(op.sizes)]))
    return torch.stack(rows)


@register("diagnostic", "hessian_trace", family="sharpness", papers=(106,),
          hyper={"num_probes": integer(100, 1, doc="Rademacher probes (one HVP each)"),
                 "per_layer": flag(False, doc="also report the trace of each parameter tensor's block"),
                 "exact": flag(False, doc="sum the exact diagonal (P products) instead of sampling probes"),
                 "chunk_size": _CHUNK})
def hessian_trace(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    *,
    loss_fn: LossFn | None = None,
    generator: torch.Generator | None = None,
    num_probes: int = 100,
    per_layer: bool = False,
    exact: bool = False,
    chunk_size: int = 512,
) -> dict[str, float]:
    r"""Flatness: the trace of the loss Hessian, by Hutchinson's estimator with Rademacher probes.

    Use it to compare models at the same loss: [106] finds that among language
    models with the same (optimal) pre-training loss the flatter ones, lower
    :math:`\operatorname{tr} H`, transfer better downstream, and that SGD noise
    drives the trace down after convergence. Unlike :math:`\lambda_{\max}` it sums
    the curvature over all directions.

    .. math::
        \operatorname{tr} H \approx \frac{1}{m}\sum_{j=1}^{m} v_j^\top H v_j,\qquad
        v_j \in \{-1, +1\}^P \text{ i.i.d. uniform},\qquad
        \mathrm{stderr} = \frac{s}{\sqrt{m}}

    where :math:`s` is the sample standard deviation of the :math:`m` per-probe
    values. The estimate is unbiased, and exact for a diagonal Hessian. With
    ``per_layer`` the same probes give each parameter tensor's diagonal block
    trace :math:`\operatorname{tr} H_{ll} \approx \frac1m\sum_j v_{j,l}^\top (Hv_j)_l`
    (cross-block terms vanish in expectation), as [106] reports per layer.

    With ``exact`` the diagonal is read off one product per parameter,
    :math:`\operatorname{tr} H = \sum_{i=1}^{P} e_i^\top H e_i` (``stderr`` 0): the
    reference for small models and for checking the estimator, at P products.

    Args:
        model: the network; every trainable parameter enters the Hessian.
        inputs: a fixed batch ``(n, ...)``; target: its labels ``(n,)``.
        loss_fn: per-sample loss ``loss_fn(logits, target) -> (n,)``; cross-entropy if None.
        generator: draws the probes; None uses a fresh generator seeded 0.
        num_probes: :math:`m`, at least 1 (``stderr`` is NaN for ``m = 1``).
        per_layer: also return ``"trace.<parameter name>"`` for each trainable tensor.
        chunk_size: samples per double-backward pass, at least 1.

    Returns:
        ``{"trace": ..., "stderr": ...}``, plus ``"trace.<name>"`` entries when ``per_layer``.

    Raises:
        ValueError: on a bad ``model``, ``inputs``, ``target``, ``loss_fn``, ``generator``,
            ``num_probes``, ``per_layer`` or ``chunk_size``.

    References:
        [106] Liu et al., *Same Pre-training Loss, Better Downstream: Implicit Bias Matters for
        Language Models*, ICML 2023. Hutchinson, *A stochastic estimator of the trace of the
        influence matrix*, 1989.

    Example:
        >>> model = torch.nn.Linear(3, 2, dtype=torch.float64)
        >>> _ = [torch.nn.init.zeros_(p) for p in model.parameters()]  # softmax outputs (1/2, 1/2)
        >>> x, y = torch.eye(3, dtype=torch.float64), torch.tensor([0, 1, 0])
        >>> out = hessian_trace(model, x, y, num_probes=10, generator=torch.Generator().manual_seed(0))
        >>> sorted(out)  # the exact trace is 1
        ['stderr', 'trace']
    """
    num_probes = check_number(num_probes, "num_probes", low=1, integer=True)
    for flag_name, value in (("per_layer", per_layer), ("exact", exact)):
        if not isinstance(value, bool):
            fail(flag_name, "true or false", repr(value))
    op = _operator(model, inputs, target, loss_fn, chunk_size)
    generator = _generator(generator)
    if exact:
        with restore_model_state(model):
            diag = _exact_diagonal(op)
        out = {"trace": float(diag.sum()), "stderr": 0.0}
        if per_layer:
            out.update({f"trace.{name}": float(block.sum()) for name, block in zip(op.names, diag.split(op.sizes))})
        return out
    with restore_model_state(model):
        blocks = _probe_estimates(op, generator, num_probes)
    totals = blocks.sum(dim=1)
    stderr = float(totals.std() / math.sqrt(num_probes)) if num_probes > 1 else math.nan
    out = {"trace": float(totals.mean()), "stderr": stderr}
    if per_layer:
        out.update({f"trace.{name}": float(value) for name, value in zip(op.names, blocks.mean(dim=0))})
    return out


def _exact_diagonal(op: HessianOperator) -> Tensor:
    """``diag(H)`` from one product per basis vector, in float64."""
    dtype, device = op.like_params()
    diag = torch.empty(op.dim, dtype=torch.float64)
    basis = torch.zeros(op.dim, dtype=dtype, device=device)
    for i in range(op.dim):
        basis[i] = 1.0
        diag[i] = float(op(basis)[i])
        basis[i] = 0.0
    return diag


@register("diagnostic", "edge_of_stability", family="sharpness", papers=(287,),
          hyper={"lr": real(None, 0.0, None, low_open=True, doc="the run's learning rate (required)"),
                 "tol": real(1e-4, 0.0, None, low_open=True, doc="relative change that stops the iteration"),
                 "max_iters": integer(100, 1, doc="most power-iteration steps (one HVP each)"),
                 "chunk_size": _CHUNK})
def edge_of_stability(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    *,
    loss_fn: LossFn | None = None,
    generator: torch.Generator | None = None,
    lr: float | None = None,
    tol: float = 1e-4,
    max_iters: int = 100,
    chunk_size: int = 512,
) -> dict[str, float]:
    r"""Sharpness against the edge-of-stability threshold ``2 / lr`` of gradient descent.

    Use it to see whether training sits at the edge of stability: gradient
    descent on a quadratic diverges along directions with
    :math:`\lambda > 2/\eta`, and [287] plots :math:`\lambda_{\max}` over
    training against this threshold to show that under muP the sharpness
    reaches it at a width-independent time. ``ratio`` near 1 means at the edge.

    .. math::
        \mathrm{threshold} = \frac{2}{\eta},\qquad
        \mathrm{ratio} = \frac{\eta\,\lambda_{\max}}{2}

    with :math:`\lambda_{\max}` from :func:`hessian_max_eig`. For SGD with
    momentum or Adam the relevant threshold differs (e.g. preconditioned
    sharpness for Adam); this measure is the plain gradient-descent one.

    Args:
        model, inputs, target, loss_fn, generator, tol, max_iters, chunk_size: as in
            :func:`hessian_max_eig`.
        lr: the learning rate :math:`\eta` in ``(0, inf)``; required.

    Returns:
        ``{"lambda_max": ..., "threshold": 2 / lr, "ratio": lr * lambda_max / 2}``.

    Raises:
        ValueError: on a missing or non-positive ``lr``, or any argument
            :func:`hessian_max_eig` rejects.

    References:
        [287] Noci et al., *Why do Learning Rates Transfer? Reconciling Optimization and Scaling
        Limits for Deep Learning*, 2024. Cohen et al., *Gradient Descent on Neural Networks
        Typically Occurs at the Edge of Stability*, ICLR 2021.

    Example:
        >>> model = torch.nn.Linear(3, 2, dtype=torch.float64)
        >>> _ = [torch.nn.init.zeros_(p) for p in model.parameters()]  # softmax outputs (1/2, 1/2)
        >>> x, y = torch.eye(3, dtype=torch.float64), torch.tensor([0, 1, 0])
        >>> out = edge_of_stability(model, x, y, lr=2.0, tol=1e-10, max_iters=500)
        >>> out["threshold"], round(out["ratio"], 4)
        (1.0, 0.6667)
    """
    if lr is None:
        fail("lr", "a positive learning rate (the run's step size)", None)
    lr = check_number(lr, "lr", low=0.0, low_open=True)
    lam = hessian_max_eig(model, inputs, target, loss_fn=loss_fn, generator=generator, tol=tol,
                          max_iters=max_iters, chunk_size=chunk_size)
    return {"lambda_max": lam, "threshold": 2.0 / lr, "ratio": lr * lam / 2.0}


def eigenvalue_early_stop(history: Sequence[float], *, window: int = 5, lag: int = 5,
                          threshold: float = 0.75) -> bool:
    r"""DARTS-ES: stop when the local average of :math:`\lambda_{\max}` has grown too much.

    Use it on the series recorded by :func:`hessian_max_eig` (one value per
    evaluation, oldest first) to stop a run, or an architecture search [59], before
    its curvature explodes. It is a rule over a run's history, not a per-epoch
    measurement, so it is a plain function rather than a registered diagnostic.

    .. math::
        \bar\lambda(i) = \frac{1}{w}\sum_{t=i-w+1}^{i}\lambda_t,\qquad
        \text{stop at } i \iff \frac{\bar\lambda(i - k)}{\bar\lambda(i)} < T

    with :math:`w` = ``window``, :math:`k` = ``lag``, :math:`T` = ``threshold``
    (the paper's :math:`k = 5, T = 0.75`; its code averages over a window of 5,
    centred, which here is trailing so the rule needs no future values).

    Args:
        history: the recorded :math:`\lambda_{\max}` values, oldest first.
        window: :math:`w`, at least 1.
        lag: :math:`k`, at least 1.
        threshold: :math:`T` in ``(0, 1]``.

    Returns:
        True when the rule fires; False while fewer than ``window + lag`` values
        exist or when :math:`\bar\lambda(i) \le 0`.

    Raises:
        ValueError: on a bad ``history``, ``window``, ``lag`` or ``threshold``.

    References:
        [59] Zela et al., *Understanding and Robustifying Differentiable Architecture Search*, ICLR 2020.

    Example:
        >>> eigenvalue_early_stop([1.0] * 10), eigenvalue_early_stop([1.0] * 5 + [2.0] * 5)
        (False, True)
    """
    window = check_number(window, "window", low=1, integer=True)
    lag = check_number(lag, "lag", low=1, integer=True)
    threshold = check_number(threshold, "threshold", low=0.0, high=1.0, low_open=True)
    values = _check_history(history)
    if len(values) < window + lag:
        return False
    current = sum(values[-window:]) / window
    previous = sum(values[-window - lag: len(values) - lag]) / window
    return current > 0.0 and previous / current < threshold


def _check_history(history: Any) -> list[float]:
    try:
        ok = not isinstance(history, (str, bytes))
        values = [float(v) for v in history] if ok else []
    except (TypeError, ValueError):
        ok, values = False, []
    if not ok or not all(math.isfinite(v) for v in values):
        fail("history", "a sequence of finite numbers", repr(history)[:60])
    return values


__all__ = ["edge_of_stability", "eigenvalue_early_stop", "hessian_max_eig", "hessian_top_eigs", "hessian_trace",
           "hessian_vector_product"]
