"""A small 2-D CNN for small images, and the image-shape check the image models share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from losslab.core.registry import flag, integer, real, register
from losslab.core.validation import check_number, fail
from losslab.models._common import check_input_shape, check_num_classes

# Side of the grid the adaptive average pool maps every feature map to, so that
# the size of `fc` does not depend on the image size.
POOL_GRID = 4
# Smallest H, W cnn2d takes: the 2x2 max-pool must leave at least 2x2.
MIN_SIZE = 4


def check_image_shape(
    input_shape: Any, *, min_size: int, model: str, allow_2d: bool = False
) -> tuple[int, int, int]:
    """``input_shape`` as ``(C, H, W)`` with ``H, W >= min_size``; ``(H, W)`` reads as ``(1, H, W)`` if ``allow_2d``.

    Raises:
        ValueError: one line naming ``input_shape``, the form ``model`` needs, and
            the models for vectors and 1-D signals.

    Example:
        >>> check_image_shape((28, 28), min_size=4, model="cnn2d", allow_2d=True)
        (1, 28, 28)
    """
    shape = check_input_shape(input_shape)
    form = "(C, H, W) or (H, W)" if allow_2d else "(C, H, W)"
    if len(shape) not in ((2, 3) if allow_2d else (3,)) or min(shape[-2:]) < min_size:
        fail("input_shape", f"an image shape {form} with H, W >= {min_size} for model {model!r} "
                            "(for vectors or 1-D signals use 'mlp' or 'mnist1d_cnn')", repr(shape))
    return (1, *shape) if len(shape) == 2 else shape


def check_image_batch(x: Any, image_shape: tuple[int, ...]) -> Tensor:
    """A floating batch ``(B, *image_shape)``, checked once in the first stage of an image model."""
    if not isinstance(x, Tensor) or not x.dtype.is_floating_point:
        fail("x", "a floating tensor", getattr(x, "dtype", type(x).__name__))
    if tuple(x.shape[1:]) != tuple(image_shape) or x.ndim != len(image_shape) + 1:
        fail("x", f"of shape (B, {', '.join(map(str, image_shape))})", f"shape {tuple(x.shape)}")
    return x


class CNN2D(nn.Module):
    """``conv-ReLU, conv-ReLU, max-pool, adaptive-avg-pool, fc-ReLU`` and a linear head; see :func:`build_cnn2d`."""

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, *,
        channels: int, hidden: int, batch_norm: bool, dropout: float,
    ) -> None:
        super().__init__()
        in_channels = 1 if len(input_shape) == 2 else input_shape[0]
        c1, c2 = channels, 2 * channels
        # BN's shift makes a conv bias redundant, as in every BN-ResNet.
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1, bias=not batch_norm)
        self.norm1 = nn.BatchNorm2d(c1) if batch_norm else nn.Identity()
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=not batch_norm)
        self.norm2 = nn.BatchNorm2d(c2) if batch_norm else nn.Identity()
        self.fc = nn.Linear(c2 * POOL_GRID * POOL_GRID, hidden)
        self.head = nn.Linear(hidden, num_classes)
        self.input_shape = tuple(input_shape)
        self.dropout = dropout

    def stages(self) -> list[Callable[[Tensor], Tensor]]:
        """The blocks whose composition is :meth:`features` (for manifold mixing): two convolutions, then the fc."""
        return [self._stage1, self._stage2, self._stage3]

    def _stage1(self, x: Tensor) -> Tensor:
        if len(self.input_shape) == 2 and isinstance(x, Tensor) and x.ndim == 4 and x.shape[1] == 1:
            x = x.squeeze(1)  # (B, 1, H, W) is the same one-channel batch as (B, H, W)
        x = check_image_batch(x, self.input_shape)
        if x.ndim == 3:  # (B, H, W): one-channel images
            x = x.unsqueeze(1)
        return F.relu(self.norm1(self.conv1(x)))

    def _stage2(self, h: Tensor) -> Tensor:
        return F.max_pool2d(F.relu(self.norm2(self.conv2(h))), 2)

    def _stage3(self, h: Tensor) -> Tensor:
        h = F.adaptive_avg_pool2d(h, POOL_GRID).flatten(1)
        return F.dropout(F.relu(self.fc(h)), self.dropout, self.training)

    def features(self, x: Tensor) -> Tensor:
        """The penultimate representation ``(B, hidden)`` that :attr:`head` maps to logits."""
        return self._stage3(self._stage2(self._stage1(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@register("model", "cnn2d", family="cnn", tags=("image",),
          reference="The PyTorch MNIST example network (conv32-conv64-maxpool-fc128; "
                    "github.com/pytorch/examples, mnist/main.py) with 'same' padding and an adaptive "
                    "average pool so that any image size >= 4x4 fits.",
          hyper={"channels": integer(32, 1, doc="channels of the first convolution (the second has twice as many)"),
                 "hidden": integer(128, 1, doc="units of the fully connected layer before the head"),
                 "batch_norm": flag(False, doc="batch normalisation after each convolution"),
                 "dropout": real(0.0, 0.0, 1.0, high_open=True, doc="dropout before the head")})
def build_cnn2d(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    channels: int = 32,
    hidden: int = 128,
    batch_norm: bool = False,
    dropout: float = 0.0,
) -> CNN2D:
    r"""A small, fast 2-D CNN for small images (MNIST 28x28, CIFAR 32x32, digits 8x8).

    Use it as the image baseline that trains in seconds to minutes on a CPU; use
    ``preact_resnet18`` or ``wide_resnet`` to reproduce the CIFAR numbers of the
    papers. It is the PyTorch MNIST example's network with two changes that make
    it take any image size: 3x3 convolutions keep the size (padding 1), and an
    adaptive average pool maps the pooled maps to a fixed ``4 x 4`` grid.

    .. math::
        h_1 = \mathrm{ReLU}(\mathrm{BN}?(\mathrm{conv}_{3\times3}^{c}(x))),\
        h_2 = \mathrm{maxpool}_{2}(\mathrm{ReLU}(\mathrm{BN}?(\mathrm{conv}_{3\times3}^{2c}(h_1)))),\
        f = \mathrm{dropout}(\mathrm{ReLU}(W_{fc}\,\operatorname{flatten}(\mathrm{avgpool}_{4\times4}(h_2)))),\
        z = W f + b

    With the defaults and 10 classes that is ``(288 C_in + 32) + 18,496 + 131,200 + 1,290``
    parameters for ``C_in`` input channels (151,306 on grey, 151,882 on RGB images), whatever ``H, W``.

    Args:
        input_shape: ``(C, H, W)``, or ``(H, W)`` for one-channel images (then ``x``
            may be ``(B, H, W)``), with ``H, W >= 4``.
        num_classes: number of output logits ``C``, at least 2.
        channels: channels of the first convolution, at least 1; the second has ``2 * channels``.
        hidden: units of the fully connected layer, at least 1.
        batch_norm: batch normalisation after each convolution (then the convolutions have no bias).
        dropout: dropout probability on the features, in ``[0, 1)``.

    Returns:
        A :class:`CNN2D` mapping float ``x (B, *input_shape)`` to logits ``(B, num_classes)``.

    Raises:
        ValueError: on a non-image ``input_shape`` or one smaller than 4x4, a bad
            ``num_classes``, ``channels``, ``hidden``, ``batch_norm`` or ``dropout``;
            at call time on a mis-shaped or non-floating ``x``.

    References:
        The MNIST example of github.com/pytorch/examples (``mnist/main.py``).

    Example:
        >>> import torch
        >>> model = build_cnn2d((1, 28, 28), 10)
        >>> sum(p.numel() for p in model.parameters())
        151306
        >>> tuple(model(torch.zeros(2, 1, 28, 28)).shape)
        (2, 10)
    """
    shape = check_image_shape(input_shape, min_size=MIN_SIZE, model="cnn2d", allow_2d=True)
    num_classes = check_num_classes(num_classes)
    channels = check_number(channels, "channels", low=1, integer=True)
    hidden = check_number(hidden, "hidden", low=1, integer=True)
    if not isinstance(batch_norm, bool):  # 1 == True in Python; a flag must be a real bool
        fail("batch_norm", "true or false", repr(batch_norm))
    dropout = check_number(dropout, "dropout", low=0.0, high=1.0, high_open=True)
    per_sample = tuple(input_shape) if len(input_shape) == 2 else shape
    return CNN2D(per_sample, num_classes, channels=channels, hidden=hidden, batch_norm=batch_norm,
                 dropout=float(dropout))
