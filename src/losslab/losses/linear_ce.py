"""Chunked linear + cross-entropy: the LM-head loss without the ``N x V`` logits.

For large vocabularies the logits alone (8192 tokens x 131072 words in
float32 is 4 GiB, and autograd keeps several such tensors) dominate memory.
:func:`linear_cross_entropy` fuses the output projection and the loss in
custom autograd Functions, with two strategies:

- ``reduction="none"`` (or no gradient needed): the forward pass walks the
  vocabulary in chunks with an online logsumexp, keeping only per-token
  running statistics; the backward pass recomputes each chunk's logits and
  turns them straight into gradients (four matmuls in all).
- ``"mean"``/``"sum"`` with gradients: the upstream gradient is a single
  scalar, so the gradients are formed during the forward pass over row tiles
  of the full vocabulary and merely rescaled in backward (three matmuls).

Peak extra memory is O(tile) instead of O(N x V), plus the gradients themselves.
The per-tile math lives in :mod:`losslab.losses.linear_ce_tiles` and runs
eagerly or through ``torch.compile`` (``compiled=``; automatic on CUDA).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from losslab.core.reduction import reduce_loss
from losslab.core.registry import REGISTRY, integer, real, register, twin
from losslab.core.validation import (
    check_floating,
    check_nonempty,
    check_number,
    check_rank,
    check_reduction,
    check_tensor,
    fail,
)
from losslab.losses.linear_ce_tiles import can_compile, tile_kernels

# Elements of one (N x chunk) logits tile; 2**24 float32 = 64 MiB per temporary.
_TILE_ELEMENTS = 2**24


def _acc_dtype(x: Tensor) -> torch.dtype:
    """Accumulate in float32, or float64 when given float64."""
    return torch.promote_types(x.dtype, torch.float32)


# c tanh(z / c) with c near 0 is a constant 0 (z / c overflows, 0/0 at z = 0): the registry
# fuzzing found NaN gradients at c = 1e-221, so a cap that small is refused.
_MIN_SOFTCAP = 1e-3


def _chunk_targets(tgt: Tensor, v0: int, width: int) -> tuple[Tensor, Tensor]:
    """The target's column inside chunk ``[v0, v0 + width)`` (clamped) and whether it falls there."""
    here = (tgt >= v0) & (tgt < v0 + width)
    return (tgt - v0).clamp_(0, width - 1), here


class _LinearCrossEntropy(torch.autograd.Function):
    """Per-token losses ``(N,)``; ignored tokens give 0. See :func:`linear_cross_entropy`."""

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor,
                ignore_index: int, smoothing: float, z_weight: float, softcap: float, chunk: int,
                compiled: bool) -> Tensor:
        kernels = tile_kernels(compiled)
        h = hidden.to(_acc_dtype(hidden))
        n, vocab = h.shape[0], weight.shape[0]
        valid = target != ignore_index
        tgt = torch.where(valid, target, torch.zeros_like(target))
        run_max = h.new_full((n,), -torch.inf)
        run_sum = h.new_zeros(n)
        target_logit = h.new_zeros(n)
        logit_sum = h.new_zeros(n)
        for v0 in range(0, vocab, chunk):
            w = weight[v0: v0 + chunk]
            local, here = _chunk_targets(tgt, v0, w.shape[0])
            top, total, picked, zsum = kernels.chunk_stats(
                h, w, None if bias is None else bias[v0: v0 + chunk], local, here, softcap, smoothing > 0)
            new_max = torch.maximum(run_max, top)
            # Online logsumexp: rescale both running sums to the new maximum, then add this chunk's.
            run_sum = run_sum * torch.exp(run_max - new_max) + total * torch.exp(top - new_max)
            run_max = new_max
            target_logit += picked
            if zsum is not None:
                logit_sum += zsum
        lse = run_max + torch.log(run_sum)
        loss = (1.0 - smoothing) * (lse - target_logit) + z_weight * lse * lse
        if smoothing > 0:
            loss = loss + smoothing * (lse - logit_sum / vocab)
        loss = torch.where(valid, loss, torch.zeros_like(loss))
        ctx.save_for_backward(hidden, weight, bias, tgt, valid, lse)
        ctx.params = (smoothing, z_weight, softcap, chunk, compiled)
        return loss

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        hidden, weight, bias, tgt, valid, lse = ctx.saved_tensors
        smoothing, z_weight, softcap, chunk, compiled = ctx.params
        kernels = tile_kernels(compiled)
        h = hidden.to(_acc_dtype(hidden))
        vocab = weight.shape[0]
        coef = torch.where(valid, grad.to(h.dtype), torch.zeros_like(lse))
        # d loss / d z_k = p_k (1 + 2 lambda lse) - (1 - eps) [k = y] - eps / V
        scale = coef * (1.0 + 2.0 * z_weight * lse)
        shift = (smoothing / vocab) * coef if smoothing > 0 else None
        grad_h = torch.zeros_like(h)
        grad_w = torch.empty(weight.shape, dtype=h.dtype, device=weight.device)
        grad_b = None if bias is None else torch.empty(vocab, dtype=h.dtype, device=h.device)
        for v0 in range(0, vocab, chunk):
            w = weight[v0: v0 + chunk]
            local, here = _chunk_targets(tgt, v0, w.shape[0])
            hit = torch.where(here, (1.0 - smoothing) * coef, torch.zeros_like(coef))
            g = kernels.chunk_grads(
                h, w, None if bias is None else bias[v0: v0 + chunk], local, lse, scale, hit, shift, softcap)
            grad_h.addmm_(g, w.to(h.dtype))
            torch.mm(g.T, h, out=grad_w[v0: v0 + chunk])
            if grad_b is not None:
                torch.sum(g, dim=0, out=grad_b[v0: v0 + chunk])
        return (grad_h.to(hidden.dtype), grad_w.to(weight.dtype),
                None if grad_b is None else grad_b.to(bias.dtype), None, None, None, None, None, None, None)


class _GradInForwardLinearCrossEntropy(torch.autograd.Function):
    """``scale * sum_i loss_i`` with the gradients computed during the forward pass.

    For ``mean``/``sum`` the upstream gradient is one scalar, so the gradients
    can be formed tile by tile while the logits are at hand: rows are taken in
    tiles of about 2^24 logits, each tile's logsumexp is exact, and three
    matmuls per tile (logits, grad_hidden, grad_weight) replace the four of
    the recompute path. The backward pass only rescales the stored gradients.
    """

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor,
                ignore_index: int, smoothing: float, z_weight: float, softcap: float, scale: float,
                compiled: bool) -> Tensor:
        kernels = tile_kernels(compiled)
        acc = _acc_dtype(hidden)
        h, w = hidden.to(acc), weight.to(acc)
        b = None if bias is None else bias.to(acc)
        n, vocab = h.shape[0], w.shape[0]
        valid = target != ignore_index
        tgt = torch.where(valid, target, torch.zeros_like(target))
        grad_h, grad_w = torch.empty_like(h), torch.zeros_like(w)
        grad_b = None if b is None else torch.zeros_like(b)
        total = h.new_zeros(())
        rows = max(1, _TILE_ELEMENTS // vocab)
        for r0 in range(0, n, rows):
            hc = h[r0: r0 + rows]
            part, g = kernels.row_tile(hc, w, b, tgt[r0: r0 + rows], valid[r0: r0 + rows].to(acc),
                                       smoothing, z_weight, softcap)
            total += part
            torch.mm(g, w, out=grad_h[r0: r0 + rows])
            grad_w.addmm_(g.T, hc)
            if grad_b is not None:
                grad_b += g.sum(dim=0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.meta = (scale, hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        return total * scale

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale, h_dtype, w_dtype, b_dtype = ctx.meta
        c = grad.to(grad_h.dtype) * scale
        return ((grad_h * c).to(h_dtype), (grad_w * c).to(w_dtype),
                None if grad_b is None else (grad_b * c).to(b_dtype), None, None, None, None, None, None, None)


def _check_compiled(compiled: Any) -> None:
    if compiled is not None and not isinstance(compiled, bool):
        fail("compiled", "True, False or None (auto: compiled on CUDA with Triton)", repr(compiled))


def _check_linear_inputs(hidden: Any, weight: Any, bias: Any, target: Any, ignore_index: int,
                         validate_args: bool) -> None:
    check_floating(hidden, "hidden")
    check_rank(hidden, 2, "hidden")
    check_nonempty(hidden, "hidden")
    check_floating(weight, "weight")
    check_rank(weight, 2, "weight")
    if weight.shape[1] != hidden.shape[1]:
        fail("weight", f"of shape (V, {hidden.shape[1]}) to match `hidden`'s d", f"shape {tuple(weight.shape)}")
    if bias is not None:
        check_floating(bias, "bias")
        if tuple(bias.shape) != (weight.shape[0],):
            fail("bias", f"of shape ({weight.shape[0]},)", f"shape {tuple(bias.shape)}")
    check_tensor(target, "target")
    if target.dtype.is_floating_point or target.dtype == torch.bool or target.shape != hidden.shape[:1]:
        fail("target", f"an integer tensor of shape ({hidden.shape[0]},)", f"{target.dtype} {tuple(target.shape)}")
    if validate_args:
        for x, name in ((hidden, "hidden"), (weight, "weight"), (bias, "bias")):
            if x is not None and not bool(torch.isfinite(x).all()):
                fail(name, "finite (no NaN or Inf)", "non-finite values")
        kept = target[target != ignore_index]
        if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= weight.shape[0]):
            bad = int(kept.min()) if int(kept.min()) < 0 else int(kept.max())
            fail("target", f"class ids in [0, {weight.shape[0]}) or ignore_index={ignore_index}", f"a label {bad}")


@register("loss", "linear_ce", family="llm", papers=(254, 33, 274), tags=("linear",),
          hyper={"label_smoothing": real(0.0, 0.0, 1.0, doc="uniform smoothing mass"),
                 "z_loss": real(0.0, 0.0, None, doc="weight of the log^2 Z penalty (PaLM z-loss)"),
                 "softcap": real(0.0, 0.0, None, doc="logit soft-cap c (c*tanh(z/c)); 0 disables"),
                 "ignore_index": integer(-100, None, None, doc="target value that is skipped"),
                 "chunk_size": integer(None, 1, doc="vocabulary chunk; None picks ~2^24 / N")})
def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    *,
    bias: Tensor | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float = 0.0,
    ignore_index: int = -100,
    chunk_size: int | None = None,
    reduction: str = "mean",
    validate_args: bool = True,
    compiled: bool | None = None,
) -> Tensor:
    r"""Cross-entropy of ``hidden @ weight.T`` computed in vocabulary chunks, never materialising the logits.

    Use it for the output layer of a language model (or any classifier with a
    very large label space) when the ``N x V`` logits would not fit in memory.

    .. math::
        z = \operatorname{cap}(h W^\top + b),\quad
        \ell_i = (1-\varepsilon)\,(\mathrm{lse}_i - z_{i,y_i})
        + \varepsilon\,\big(\mathrm{lse}_i - \tfrac{1}{V}\textstyle\sum_k z_{ik}\big)
        + \lambda\,\mathrm{lse}_i^2

    where :math:`\mathrm{lse}_i = \log\sum_k e^{z_{ik}}` is accumulated online
    over chunks, :math:`\operatorname{cap}(u) = c\tanh(u/c)` when ``softcap``
    :math:`c > 0`, and :math:`\lambda` is the z-loss weight. Accumulation is in
    float32 for float16/bfloat16 inputs; gradients are returned in the input dtypes.

    Args:
        hidden: float ``(N, d)`` final hidden states.
        weight: float ``(V, d)`` output projection.
        target: int ``(N,)`` token ids in ``[0, V)`` or ``ignore_index``.
        bias: optional float ``(V,)``.
        label_smoothing: :math:`\varepsilon \in [0, 1]`.
        z_loss: :math:`\lambda \ge 0`, the log-partition penalty.
        softcap: :math:`c = 0` (off) or :math:`c \ge 10^{-3}`.
        ignore_index: targets equal to it contribute nothing (and are left out of the mean).
        chunk_size: vocabulary chunk; ``None`` picks one so a tile holds about 2^24 values.
        reduction: ``"none"`` (``(N,)``, 0 at ignored tokens) | ``"mean"`` (over kept tokens) | ``"sum"``.
        validate_args: check finiteness and the target range (forces a sync).
        compiled: run the tile math through ``torch.compile`` (element-wise work
            fused between the matmuls; Triton kernels on CUDA, C++ on CPU). ``None``
            picks it on CUDA when Triton is available and stays eager elsewhere. The
            first call of each shape family compiles (seconds).

    Returns:
        ``(N,)`` for ``reduction="none"``, else a scalar (float32, or float64 for float64 inputs).

    Raises:
        ValueError: on mismatched ``d`` between ``hidden`` and ``weight``, targets
        outside ``[0, V)``, an empty batch, or hyper-parameters out of range.

    References:
        [254], [33], [274] motivate large-vocabulary and logit-growth losses;
        the chunked form follows Wijmans et al., *Cut Your Losses in Large-Vocabulary
        Language Models*, 2024 (cut cross-entropy).

    Example:
        >>> h, w = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), torch.eye(16, 8)
        >>> t = torch.tensor([0, 1, 2, -100])
        >>> torch.allclose(linear_cross_entropy(h, w, t, chunk_size=5),
        ...                torch.nn.functional.cross_entropy(h @ w.T, t))
        True
    """
    check_reduction(reduction)
    check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    check_number(z_loss, "z_loss", low=0.0)
    check_number(softcap, "softcap", low=0.0)
    if 0.0 < softcap < _MIN_SOFTCAP:
        fail("softcap", f"0 (off) or at least {_MIN_SOFTCAP:g}", repr(softcap))
    check_number(ignore_index, "ignore_index", integer=True)
    _check_compiled(compiled)
    _check_linear_inputs(hidden, weight, bias, target, ignore_index, validate_args)
    n = hidden.shape[0]
    chunk = chunk_size if chunk_size is not None else max(128, _TILE_ELEMENTS // n)
    chunk = check_number(chunk, "chunk_size", low=1, integer=True)
    params = (ignore_index, float(label_smoothing), float(z_loss), float(softcap))
    compiled = can_compile(hidden.device) if compiled is None else compiled
    wants_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (hidden, weight, bias))
    if reduction != "none" and wants_grad:
        kept = int((target != ignore_index).sum()) if reduction == "mean" else 1
        return _GradInForwardLinearCrossEntropy.apply(hidden, weight, bias, target, *params, 1.0 / max(kept, 1),
                                                      compiled)
    per_token = _LinearCrossEntropy.apply(hidden, weight, bias, target, *params, chunk, compiled)
    if reduction == "mean":
        return reduce_loss(per_token, "mean", (target != ignore_index).to(per_token.dtype))
    return reduce_loss(per_token, reduction)


@twin("loss", "linear_ce")
class LinearCrossEntropyLoss(nn.Module):
    """Module twin of :func:`linear_cross_entropy`: ``forward(hidden, weight, target, bias=None)``."""

    def __init__(self, *, reduction: str = "mean", validate_args: bool = True, compiled: bool | None = None,
                 **hyper: Any) -> None:
        super().__init__()
        check_reduction(reduction)
        _check_compiled(compiled)
        self.reduction = reduction
        self.validate_args = validate_args
        self.compiled = compiled
        self.hyper = REGISTRY.get("loss", "linear_ce").resolve(hyper)

    def forward(self, hidden: Tensor, weight: Tensor, target: Tensor, bias: Tensor | None = None) -> Tensor:
        return linear_cross_entropy(hidden, weight, target, bias=bias, reduction=self.reduction,
                                    validate_args=self.validate_args, compiled=self.compiled, **self.hyper)
