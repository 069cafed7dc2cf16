"""Wide residual networks WRN-d-k for small images (Zagoruyko & Komodakis, 2016)."""

from __future__ import annotations

from typing import Any

from torch import nn

from losslab.core.registry import integer, real, register
from losslab.core.validation import check_number, fail
from losslab.models._common import check_num_classes
from losslab.models.cnn2d import check_image_shape
from losslab.models.resnet import MIN_SIZE, PreActResNet


def check_depth(depth: Any) -> int:
    """A WRN depth ``d >= 10`` with ``(d - 4) % 6 == 0``: 3 stages of ``(d - 4) / 6`` two-conv blocks + stem + head.

    Example:
        >>> check_depth(28)
        28
    """
    ok = isinstance(depth, int) and not isinstance(depth, bool) and depth >= 10 and (depth - 4) % 6 == 0
    if not ok:
        fail("depth", "an integer d >= 10 with (d - 4) % 6 == 0 (10, 16, 22, 28, 34, 40, ...)", repr(depth))
    return depth


@register("model", "wide_resnet", family="resnet", tags=("image",),
          reference="Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016 (arXiv:1605.07146); "
                    "pre-activation basic blocks, WRN-16-4 by default (WRN-28-10 with depth=28, widen_factor=10).",
          hyper={"depth": integer(16, 10, doc="total depth d, with (d - 4) % 6 == 0"),
                 "widen_factor": integer(4, 1, doc="widening factor k: stages have 16k, 32k, 64k channels"),
                 "dropout": real(0.0, 0.0, 1.0, high_open=True,
                                 doc="dropout between the two convolutions of each block (0.3 in the paper)")})
def build_wide_resnet(
    input_shape: tuple[int, ...], num_classes: int, *, depth: int = 16, widen_factor: int = 4, dropout: float = 0.0
) -> PreActResNet:
    r"""A wide residual network WRN-``depth``-``widen_factor``: the CIFAR backbone of many regularization papers.

    Use it where a paper trains a WRN (WRN-28-10 for CIFAR mixup / label-smoothing
    results); the small default WRN-16-4 (2,748,890 parameters for 10 classes) trains
    several times faster than ResNet-18. A 3x3 stem with 16 channels, then three
    stages of :math:`n = (d - 4)/6` pre-activation blocks with :math:`16k, 32k, 64k`
    channels and strides 1, 2, 2 (dropout between each block's convolutions), a
    final BN-ReLU, a global average pool and a linear head:

    .. math::
        h_0 = \mathrm{conv}_{3\times3}^{16}(x),\quad h_s = \mathrm{Stage}_s(h_{s-1}),\quad
        f = \tfrac{1}{HW}\textstyle\sum_{ij}\mathrm{ReLU}(\mathrm{BN}(h_3))_{ij},\quad z = W f + b

    Weights follow the authors' code: convolutions He-normal with fan-out, linear bias zero.
    WRN-28-10 has 36,479,194 parameters for 10 classes.

    Args:
        input_shape: ``(C, H, W)`` with ``H, W >= 8``.
        num_classes: number of output logits ``C``, at least 2.
        depth: total depth ``d`` (``10, 16, 22, 28, ...``).
        widen_factor: widening factor ``k``, at least 1.
        dropout: dropout probability inside each block, in ``[0, 1)``.

    Returns:
        A :class:`~losslab.models.resnet.PreActResNet` mapping float ``x (B, C, H, W)`` to
        logits ``(B, num_classes)``; ``features`` are ``(B, 64 k)``.

    Raises:
        ValueError: on a non-image ``input_shape`` or one smaller than 8x8, a bad
            ``num_classes``, ``depth`` (``(d - 4) % 6 != 0``), ``widen_factor`` or ``dropout``;
            at call time on a mis-shaped or non-floating ``x``.

    References:
        Zagoruyko & Komodakis, *Wide Residual Networks*, BMVC 2016.

    Example:
        >>> import torch
        >>> sum(p.numel() for p in build_wide_resnet((3, 32, 32), 10).parameters())
        2748890
        >>> tuple(build_wide_resnet((3, 8, 8), 4, depth=10, widen_factor=1)(torch.zeros(2, 3, 8, 8)).shape)
        (2, 4)
    """
    shape = check_image_shape(input_shape, min_size=MIN_SIZE, model="wide_resnet")
    num_classes = check_num_classes(num_classes)
    n = (check_depth(depth) - 4) // 6
    k = check_number(widen_factor, "widen_factor", low=1, integer=True)
    dropout = check_number(dropout, "dropout", low=0.0, high=1.0, high_open=True)
    model = PreActResNet(shape, num_classes, stem=16, widths=[16 * k, 32 * k, 64 * k], blocks=[n, n, n],
                         strides=[1, 2, 2], final_norm=True, dropout=float(dropout))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(model.head.bias)
    return model
