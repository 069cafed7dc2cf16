"""Pre-activation residual networks for small images: the CIFAR ResNet-18 of the noisy-label literature."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from losslab.core.registry import flag, integer, register
from losslab.core.validation import check_number, fail
from losslab.models._common import check_num_classes
from losslab.models.cnn2d import check_image_batch, check_image_shape

# Smallest H, W the ResNets take: three stride-2 stages leave at least 1x1.
MIN_SIZE = 8


class PreActBlock(nn.Module):
    r"""The pre-activation basic block of He et al. (2016), with optional dropout between its convolutions.

    .. math::
        a = \mathrm{ReLU}(\mathrm{BN}_1(x)),\quad
        y = \mathrm{conv}_2\big(\mathrm{drop}(\mathrm{ReLU}(\mathrm{BN}_2(\mathrm{conv}_1^{s}(a))))\big) + \mathrm{skip}

    where ``skip = x`` (identity) when the block keeps the shape, and the 1x1
    stride-``s`` projection ``conv_{1x1}(a)`` of the activated input when it changes the channels or size
    (``shortcut`` is then that convolution, else ``None``). Convolutions have no bias.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        projection = stride != 1 or in_channels != out_channels
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False) if projection else None
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        a = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(a)
        h = F.dropout(F.relu(self.bn2(self.conv1(a))), self.dropout, self.training)
        return self.conv2(h) + skip


class PreActResNet(nn.Module):
    """A 3x3 stem, stages of :class:`PreActBlock`, optional final BN-ReLU, global average pool, linear head.

    Stage ``i`` has ``widths[i]`` channels and ``blocks[i]`` blocks, the first of
    which has stride ``strides[i]``. Built by :func:`build_preact_resnet18` and
    :func:`losslab.models.wide_resnet.build_wide_resnet`.
    """

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, *, stem: int, widths: Sequence[int],
        blocks: Sequence[int], strides: Sequence[int], final_norm: bool, dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.stem = nn.Conv2d(input_shape[0], stem, 3, stride=1, padding=1, bias=False)
        layers, c = [], stem
        for width, n, stride in zip(widths, blocks, strides):
            layers.append(nn.Sequential(*(
                PreActBlock(c if j == 0 else width, width, stride if j == 0 else 1, dropout) for j in range(n))))
            c = width
        self.layers = nn.ModuleList(layers)
        self.final_bn = nn.BatchNorm2d(c) if final_norm else None
        self.head = nn.Linear(c, num_classes)
        self.input_shape = tuple(input_shape)

    def stages(self) -> list[Callable[[Tensor], Tensor]]:
        """The blocks whose composition is :meth:`features` (for manifold mixing): the stem, one per stage,
        the last one followed by the (optional) final BN-ReLU and the global average pool."""
        return [self._stem, *self.layers[:-1], self._last]

    def _stem(self, x: Tensor) -> Tensor:
        return self.stem(check_image_batch(x, self.input_shape))

    def _last(self, h: Tensor) -> Tensor:
        h = self.layers[-1](h)
        if self.final_bn is not None:
            h = F.relu(self.final_bn(h))
        return h.mean(dim=(2, 3))

    def features(self, x: Tensor) -> Tensor:
        """The pooled representation ``(B, widths[-1])`` that :attr:`head` maps to logits."""
        for stage in self.stages():
            x = stage(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@register("model", "preact_resnet18", family="resnet", tags=("image",),
          reference="He, Zhang, Ren & Sun, Identity Mappings in Deep Residual Networks, ECCV 2016 "
                    "(arXiv:1603.05027); the CIFAR PreActResNet18 of github.com/kuangliu/pytorch-cifar used "
                    "by the noisy-label literature (11,171,146 parameters for 10 classes).",
          hyper={"width": integer(64, 1, doc="channels of the stem and the first stage (stages: w, 2w, 4w, 8w)"),
                 "final_norm": flag(False, doc="BN-ReLU after the last block, as in the paper "
                                               "(the common CIFAR code omits it)")})
def build_preact_resnet18(
    input_shape: tuple[int, ...], num_classes: int, *, width: int = 64, final_norm: bool = False
) -> PreActResNet:
    r"""The CIFAR pre-activation ResNet-18: the standard backbone of noisy-label CIFAR experiments.

    Use it to reproduce CIFAR-10/100 results of the noisy-label papers (DivideMix,
    ELR, GCE/SCE follow-ups), or with ``width=8`` as a fast residual network in tests.
    A 3x3 stride-1 stem with ``w`` channels (no max-pool), four stages of two
    :class:`PreActBlock` s with ``w, 2w, 4w, 8w`` channels and strides ``1, 2, 2, 2``,
    a global average pool and a linear head:

    .. math::
        h_0 = \mathrm{conv}_{3\times3}^{w}(x),\quad
        h_k = \mathrm{Stage}_k(h_{k-1}),\quad
        f = \tfrac{1}{HW}\textstyle\sum_{ij} [\mathrm{ReLU}(\mathrm{BN}(h_4))]_{ij},\quad z = W f + b

    where the bracketed BN-ReLU is present only with ``final_norm=True``: He et al.
    add it after the last unit, while the code the literature trains (kuangliu's
    ``PreActResNet18``) pools the last block's sum directly. The default matches that
    code: 11,171,146 parameters for 10 classes and ``w = 64`` (11,172,170 with ``final_norm``).

    Args:
        input_shape: ``(C, H, W)`` with ``H, W >= 8`` (32x32 for CIFAR); the global
            pool makes the head independent of ``H, W``.
        num_classes: number of output logits ``C``, at least 2.
        width: base channels ``w``, at least 1 (64 in the paper).
        final_norm: BN-ReLU between the last block and the pool.

    Returns:
        A :class:`PreActResNet` mapping float ``x (B, C, H, W)`` to logits ``(B, num_classes)``;
        ``features`` are ``(B, 8 w)``.

    Raises:
        ValueError: on a non-image ``input_shape`` (use ``mlp`` or ``mnist1d_cnn`` for
            vectors and signals) or one smaller than 8x8, a bad ``num_classes``,
            ``width`` or ``final_norm``; at call time on a mis-shaped or non-floating ``x``.

    References:
        He, Zhang, Ren & Sun, *Identity Mappings in Deep Residual Networks*, ECCV 2016.

    Example:
        >>> import torch
        >>> sum(p.numel() for p in build_preact_resnet18((3, 32, 32), 10).parameters())
        11171146
        >>> tuple(build_preact_resnet18((3, 8, 8), 5, width=8)(torch.zeros(2, 3, 8, 8)).shape)
        (2, 5)
    """
    shape = check_image_shape(input_shape, min_size=MIN_SIZE, model="preact_resnet18")
    num_classes = check_num_classes(num_classes)
    width = check_number(width, "width", low=1, integer=True)
    if not isinstance(final_norm, bool):  # 1 == True in Python; a flag must be a real bool
        fail("final_norm", "true or false", repr(final_norm))
    return PreActResNet(shape, num_classes, stem=width, widths=[width * 2**i for i in range(4)],
                        blocks=[2, 2, 2, 2], strides=[1, 2, 2, 2], final_norm=final_norm)
