"""Hessian-vector products of a model's mean loss, and the Krylov solvers built on them; private.

Vectors are flat: the trainable parameters (``requires_grad``) in
``model.parameters()`` order, each flattened and concatenated, the layout of
:func:`torch.nn.utils.parameters_to_vector`. Working with one flat vector keeps
the solvers (power iteration, Lanczos, Hutchinson) plain linear algebra.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]


def cross_entropy_per_sample(logits: Tensor, target: Tensor) -> Tensor:
    """The default per-sample loss, as the engine's ``loss_fn`` when the objective has none."""
    return F.cross_entropy(logits, target, reduction="none")


@dataclass(frozen=True)
class HessianOperator:
    """``v -> H v`` for ``H`` the Hessian of the mean per-sample loss over ``(inputs, target)``.

    The batch is processed in chunks of ``chunk_size`` samples, each contributing
    ``(1/n) d/dtheta <d/dtheta sum_chunk loss, v>``, so memory is that of one
    chunk's double-backward graph whatever ``n`` is.

    When the whole batch is one chunk, the gradient's graph is built on the
    first product and kept: the parameters do not move while a solver runs, so
    every later product is one backward pass seeded with ``v`` (about 1.5x a
    gradient on an MLP, 2.8x on a CNN, against 2.6x and 3.3x when the forward
    and first backward are redone; ``benchmarks/hvp.py``).
    """

    model: nn.Module
    params: tuple[nn.Parameter, ...]
    names: tuple[str, ...]
    inputs: Tensor
    target: Tensor
    loss_fn: LossFn
    chunk_size: int

    @property
    def dim(self) -> int:
        return sum(p.numel() for p in self.params)

    @property
    def sizes(self) -> list[int]:
        return [p.numel() for p in self.params]

    def like_params(self) -> tuple[torch.dtype, torch.device]:
        first = self.params[0]
        return first.dtype, first.device

    def __call__(self, vector: Tensor) -> Tensor:
        pieces = [v.view_as(p) for v, p in zip(vector.split(self.sizes), self.params)]
        n = self.inputs.shape[0]
        if n <= self.chunk_size:
            cache = self.__dict__.get("_graph")
            if cache is None:
                cache = self._gradient_graph(self.inputs, self.target, n)
                object.__setattr__(self, "_graph", cache)  # frozen dataclass: a cache, not state
            return self._second_backward(cache, pieces, retain=True)
        out = torch.zeros_like(vector)
        for start in range(0, n, self.chunk_size):
            stop = min(start + self.chunk_size, n)
            grads = self._gradient_graph(self.inputs[start:stop], self.target[start:stop], n)
            out += self._second_backward(grads, pieces, retain=False)
        return out

    def _gradient_graph(self, x: Tensor, y: Tensor, n: int) -> list[Tensor | None]:
        """``d/dtheta (1/n) sum_chunk loss`` with its graph, ready for a second backward."""
        losses = self.loss_fn(self.model(x), y)
        if not isinstance(losses, Tensor) or tuple(losses.shape) != (x.shape[0],):
            got = f"shape {tuple(losses.shape)}" if isinstance(losses, Tensor) else type(losses).__name__
            raise ValueError(f"Expected `loss_fn` to be a per-sample loss returning shape ({x.shape[0]},), "
                             f"but got {got}.")
        total = losses.sum() / n
        return list(torch.autograd.grad(total, self.params, create_graph=True, allow_unused=True))

    def _second_backward(self, grads: list[Tensor | None], pieces: list[Tensor], *, retain: bool) -> Tensor:
        # The vector-Jacobian product of g(theta) with cotangent v is J_g^T v = H v (H is symmetric): the
        # second backward pass, seeded with v directly rather than through a scalar <g, v>.
        live = [(g, v) for g, v in zip(grads, pieces) if g is not None and g.requires_grad]
        if not live:  # the loss is (piecewise) linear in the parameters: H = 0
            return torch.zeros(sum(self.sizes), dtype=pieces[0].dtype, device=pieces[0].device)
        hv = torch.autograd.grad([g for g, _ in live], self.params, grad_outputs=[v for _, v in live],
                                 allow_unused=True, materialize_grads=True, retain_graph=retain)
        return torch.cat([h.reshape(-1) for h in hv])


def random_normal(op: HessianOperator, generator: torch.Generator) -> Tensor:
    """A unit start vector drawn on the generator's device, then moved to the parameters'."""
    dtype, device = op.like_params()
    v = torch.randn(op.dim, generator=generator, device=generator.device, dtype=torch.float64)
    return (v / v.norm()).to(device=device, dtype=dtype)


def rademacher(op: HessianOperator, generator: torch.Generator) -> Tensor:
    dtype, device = op.like_params()
    v = torch.randint(0, 2, (op.dim,), generator=generator, device=generator.device)
    return (2 * v - 1).to(device=device, dtype=dtype)


def power_iteration(apply: Callable[[Tensor], Tensor], v: Tensor, *, tol: float, max_iters: int) -> float:
    """The eigenvalue of largest magnitude (with its sign) of a symmetric operator.

    Stops when the Rayleigh quotient changes by at most ``tol`` relative to its size.
    """
    estimate = math.nan
    for _ in range(max_iters):
        w = apply(v)
        new = float(torch.dot(v, w))
        norm = float(w.norm())
        if norm == 0.0 or not math.isfinite(norm):
            return 0.0 if norm == 0.0 else math.nan
        v = w / norm
        converged = math.isfinite(estimate) and abs(new - estimate) <= tol * max(abs(new), 1e-30)
        estimate = new
        if converged:
            break
    return estimate


def lanczos_tridiagonal(apply: Callable[[Tensor], Tensor], v: Tensor, num_iters: int,
                        restart: Callable[[], Tensor]) -> Tensor:
    """The ``m x m`` Lanczos matrix ``T = Q^T H Q`` with fully re-orthogonalised ``Q``.

    Each new direction is orthogonalised against every previous one (twice, which
    keeps ``Q`` orthonormal to working precision, so no spurious copies of converged
    Ritz values appear). On breakdown (the Krylov space became invariant, e.g. a
    repeated eigenvalue) a fresh random direction orthogonal to ``Q`` continues the
    basis with a zero coupling, so repeated eigenvalues are still found.
    """
    basis = torch.zeros(num_iters, v.numel(), dtype=v.dtype, device=v.device)
    alpha = torch.zeros(num_iters, dtype=torch.float64)
    beta = torch.zeros(max(num_iters - 1, 0), dtype=torch.float64)
    q = v / v.norm()
    for j in range(num_iters):
        basis[j] = q
        w = apply(q)
        alpha[j] = float(torch.dot(q, w))
        for _ in range(2):
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        if j + 1 == num_iters:
            break
        b = float(w.norm())
        if b <= 1e-10 * max(float(alpha[: j + 1].abs().max()), 1e-30):
            b, w = 0.0, _orthogonal_restart(restart(), basis[: j + 1])
            if w is None:  # Q already spans the whole space
                return _tridiagonal(alpha[: j + 1], beta[:j])
            q = w
        else:
            q = w / b
        beta[j] = b
    return _tridiagonal(alpha, beta)


def _orthogonal_restart(w: Tensor, basis: Tensor) -> Tensor | None:
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    norm = float(w.norm())
    return None if norm <= 1e-8 else w / norm


def _tridiagonal(alpha: Tensor, beta: Tensor) -> Tensor:
    return torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)
