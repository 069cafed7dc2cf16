r"""Tile math of the chunked linear cross-entropy, as pure functions.

Each function takes one tile of the problem (a block of rows, or a block of
vocabulary columns), forms its logits, and returns small per-row statistics
or gradient pieces, so no caller ever holds more than one ``rows x chunk``
tile. The same functions run eagerly or through ``torch.compile``
(:func:`tile_kernels`): compiled, the element-wise work between the matmuls
(soft-cap, ``exp``, scaling, the one-hot correction, the soft-cap derivative)
fuses into a few kernels instead of one full pass over the tile per operation
(Triton on CUDA, C++/OpenMP on CPU).

Notation (shapes): ``h (n, d)``, ``w (c, d)`` a vocabulary chunk or the whole
vocabulary, ``b (c,)`` or ``None``, ``z = cap(h w^T + b)`` with
``cap(u) = s tanh(u / s)`` for a soft-cap ``s > 0``. The gradient of the
per-token loss
:math:`\ell = (1-\varepsilon)(\mathrm{lse} - z_y) + \varepsilon(\mathrm{lse} - \bar z) + \lambda\,\mathrm{lse}^2`
with respect to the logits is
:math:`p_k (1 + 2\lambda\,\mathrm{lse}) - (1-\varepsilon)[k=y] - \varepsilon/V`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import Tensor


def capped_logits(h: Tensor, w: Tensor, b: Tensor | None, softcap: float) -> Tensor:
    """``(n, c)`` logits in ``h``'s dtype, soft-capped as ``s tanh(z / s)`` when ``softcap = s > 0``."""
    z = h @ w.to(h.dtype).T
    if b is not None:
        z = z + b.to(h.dtype)
    return softcap * torch.tanh(z / softcap) if softcap > 0 else z


def row_tile(h: Tensor, w: Tensor, b: Tensor | None, target: Tensor, keep: Tensor, smoothing: float,
             z_weight: float, softcap: float) -> tuple[Tensor, Tensor]:
    """Loss sum of a block of rows against the whole vocabulary, and its gradient with respect to the logits.

    Args: ``h (n, d)``, ``w (V, d)``, ``b (V,)`` or ``None`` (all in the
    accumulation dtype), ``target (n,)`` in ``[0, V)``, ``keep (n,)`` 1 for a
    counted token and 0 for an ignored one.

    Returns ``(sum_i keep_i l_i, G (n, V))`` with ``G = dL/dz`` for
    ``L = sum_i keep_i l_i``; the logsumexp of each row is exact because the
    row sees every column. The caller turns ``G`` into ``G @ w`` and
    ``G^T @ h``: accumulating those in place keeps one ``(V, d)`` buffer,
    where returning them would allocate one per tile.
    """
    vocab = w.shape[0]
    z = capped_logits(h, w, b, softcap)
    lse = torch.logsumexp(z, dim=1)
    loss = (1.0 - smoothing) * (lse - z.gather(1, target[:, None]).squeeze(1)) + z_weight * lse * lse
    if smoothing > 0:
        loss = loss + smoothing * (lse - z.mean(dim=1))
    cap_grad = 1.0 - (z / softcap) ** 2 if softcap > 0 else None
    # In place over z: eagerly this keeps one tile alive instead of three.
    g = z.sub_(lse[:, None]).exp_().mul_((keep * (1.0 + 2.0 * z_weight * lse))[:, None])
    g.scatter_add_(1, target[:, None], -((1.0 - smoothing) * keep)[:, None])
    if smoothing > 0:
        g.sub_((smoothing / vocab) * keep[:, None])
    if cap_grad is not None:
        g.mul_(cap_grad)
    return (loss * keep).sum(), g


def chunk_stats(h: Tensor, w: Tensor, b: Tensor | None, local: Tensor, here: Tensor, softcap: float,
                with_sum: bool) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Per-row statistics of one vocabulary chunk, for an online logsumexp.

    Args: ``local (n,)`` the target's column inside this chunk (clamped into
    range), ``here (n,)`` whether the target falls in this chunk.

    Returns ``(max_k z (n,), sum_k exp(z - max) (n,), z_y or 0 (n,), sum_k z (n,) or None)``.
    """
    z = capped_logits(h, w, b, softcap)
    top = z.amax(dim=1)
    total = torch.exp(z - top[:, None]).sum(dim=1)
    picked = torch.where(here, z.gather(1, local[:, None]).squeeze(1), torch.zeros_like(top))
    return top, total, picked, z.sum(dim=1) if with_sum else None


def chunk_grads(h: Tensor, w: Tensor, b: Tensor | None, local: Tensor, lse: Tensor, scale: Tensor,
                hit: Tensor, shift: Tensor | None, softcap: float) -> Tensor:
    """Gradient with respect to one vocabulary chunk's logits, from recomputed logits.

    Returns ``G (n, c) = (exp(z - lse) * scale - hit * onehot(local) - shift) * cap'(z)``;
    ``scale``, ``hit`` (0 where the target is elsewhere) and ``shift`` are ``(n,)``.
    The caller accumulates ``G @ w`` and ``G^T @ h``.
    """
    z = capped_logits(h, w, b, softcap)
    cap_grad = 1.0 - (z / softcap) ** 2 if softcap > 0 else None
    g = z.sub_(lse[:, None]).exp_().mul_(scale[:, None])
    g.scatter_add_(1, local[:, None], -hit[:, None])
    if shift is not None:
        g.sub_(shift[:, None])
    if cap_grad is not None:
        g.mul_(cap_grad)
    return g


class TileKernels(NamedTuple):
    """The three tile functions, eager or compiled."""

    row_tile: object
    chunk_stats: object
    chunk_grads: object


EAGER = TileKernels(row_tile, chunk_stats, chunk_grads)


@functools.cache
def compiled_kernels() -> TileKernels:
    """The tile functions through ``torch.compile`` (compiled on first call, once per shape family)."""
    return TileKernels(*(torch.compile(fn, dynamic=None) for fn in EAGER))


def can_compile(device: torch.device) -> bool:
    """Whether ``compiled=None`` picks the compiled kernels: on CUDA with Triton available."""
    if device.type != "cuda":
        return False
    try:
        from torch.utils._triton import has_triton
    except ImportError:  # pragma: no cover - very old torch
        return False
    return bool(has_triton())


def tile_kernels(compiled: bool) -> TileKernels:
    return compiled_kernels() if compiled else EAGER
