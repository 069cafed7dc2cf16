"""α-BN: test-time calibration of batch-normalisation statistics under covariate shift [348].

A BN layer normalises with statistics fixed at training time (source
statistics). When the test inputs drift, those statistics no longer centre
and scale the features; "test-time normalisation" swaps them for the test
batch's own statistics, which fixes the drift but is noisy on small batches
and may break the match between the normalised features and the learned
affine parameters. α-BN mixes the two.

Implemented with forward hooks rather than by swapping modules: a hook leaves
every BN layer in place (same object, same ``state_dict`` keys, optimiser and
user hooks still attached, any container type), is removed by its handle, and
needs no knowledge of how the parent stores its children. The price is one
eval-mode BN pass per layer whose output the hook discards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from losslab.core.validation import check_number, fail

#: BN layers whose statistics α-BN mixes (only those that track running statistics).
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _tracked_batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules()
            if isinstance(m, BATCH_NORMS) and m.track_running_stats and m.running_mean is not None]


def _alpha_bn_forward(bn: nn.modules.batchnorm._BatchNorm, x: Tensor, alpha: float) -> Tensor:
    r"""One BN layer's output with α-mixed statistics (no validation; the hook of :func:`alpha_bn`).

    Statistics are over every dim but the channel dim 1, computed in float32 for
    half-precision inputs; the result has ``x``'s dtype. Differentiable in ``x``
    and the affine parameters (the batch statistics included, as in training).
    """
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = x.to(work)
    dims = [0, *range(2, x.dim())]
    mean = alpha * bn.running_mean.to(work) + (1.0 - alpha) * xf.mean(dim=dims)
    var = alpha * bn.running_var.to(work) + (1.0 - alpha) * xf.var(dim=dims, correction=0)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    out = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.weight is not None:
        out = out * bn.weight.to(work).view(shape) + bn.bias.to(work).view(shape)
    return out.to(x.dtype)


def alpha_bn(model: nn.Module, alpha: float) -> AbstractContextManager[nn.Module]:
    r"""Context under which every BN layer of ``model`` normalises with a mix of source and test-batch statistics.

    Use it at test time when the inputs may be shifted (noise, contrast, new
    domain) and arrive in batches: no training, no labels, one forward per
    batch. ``alpha = 1`` is the usual eval-mode BN (source statistics);
    ``alpha = 0`` is test-time normalisation (the batch's own statistics), best
    under strong shift with large batches; in between it trades the shift
    correction against the noise of small batches ([348] uses about 0.9). With
    ``alpha < 1`` a sample's prediction depends on the rest of its batch, so
    evaluate on shuffled batches. For each BN layer (``BatchNorm1d/2d/3d``,
    ``SyncBatchNorm``) that tracks running statistics :math:`\mu_s, \sigma^2_s`,
    with batch statistics :math:`\mu_t, \sigma^2_t` over the batch and spatial
    dims (biased variance),

    .. math::
        \mu = \alpha\,\mu_s + (1-\alpha)\,\mu_t,\qquad
        \sigma^2 = \alpha\,\sigma^2_s + (1-\alpha)\,\sigma^2_t,\qquad
        y = \gamma\,\frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta

    keeping the layer's own :math:`\gamma, \beta, \epsilon`. The BN layers are
    put in eval mode inside the block, so ``running_mean``, ``running_var`` and
    ``num_batches_tracked`` are never updated; other layers (dropout) keep their
    mode, so call ``model.eval()`` yourself for inference. On exit, also when
    the body raises, the hooks are removed and each BN layer's mode restored.
    BN layers without running statistics always use batch statistics and are
    left alone.

    Args:
        model: an ``nn.Module`` holding at least one BN layer with running statistics.
        alpha: weight of the source statistics, in ``[0, 1]``.

    Yields:
        ``model`` itself, its BN layers hooked.

    Raises:
        ValueError: on ``alpha`` outside ``[0, 1]`` or not a number, or a ``model`` that
            is not an ``nn.Module`` or has no BN layer with running statistics (raised
            when ``alpha_bn`` is called, before the block).

    References:
        [348] Test-time Batch Statistics Calibration for Covariate Shift (α-BN).

    Example:
        >>> bn = nn.BatchNorm1d(2, eps=0.0).eval()  # source stats: mean 0, var 1
        >>> x = torch.tensor([[0.0, 0.0], [2.0, 4.0]])  # batch mean (1, 2), var (1, 4)
        >>> with alpha_bn(bn, 0.5):
        ...     y = bn(x)
        >>> [[round(v, 4) for v in row] for row in y.tolist()]  # mean (0.5, 1), var (1, 2.5)
        [[-0.5, -0.6325], [1.5, 1.8974]]
        >>> torch.equal(bn(x), x), bn.running_mean.tolist()  # eval BN again, stats untouched
        (True, [0.0, 0.0])
    """
    if not isinstance(model, nn.Module):
        fail("model", "a torch.nn.Module", type(model).__name__)
    alpha = float(check_number(alpha, "alpha", low=0.0, high=1.0))
    layers = _tracked_batch_norms(model)
    if not layers:
        fail("model", "a module with at least one BatchNorm1d/2d/3d layer that tracks running statistics",
             f"a {type(model).__name__} with none")
    return _hooked(model, layers, alpha)


@contextmanager
def _hooked(model: nn.Module, layers: list[nn.modules.batchnorm._BatchNorm], alpha: float) -> Iterator[nn.Module]:
    modes = [bn.training for bn in layers]
    handles: list[Any] = []

    def hook(bn: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor | None:
        # alpha = 1 keeps the eval-mode output itself: bit-identical to model.eval().
        return None if alpha == 1.0 else _alpha_bn_forward(bn, args[0], alpha)

    try:
        for bn in layers:
            bn.training = False  # eval mode: the layer's own pass reads, never updates, the running stats
            handles.append(bn.register_forward_hook(hook))
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for bn, mode in zip(layers, modes):
            bn.training = mode
