"""Standard small-image augmentation (random crop with padding, horizontal flip), batched and seeded.

The CIFAR recipe of the ResNet papers and of nearly every noisy-label paper:
pad each side by 4 pixels, take a random crop of the original size, and flip
horizontally with probability 1/2. Everything is plain torch on the batch's
device, without a Python loop over images; every random choice is drawn from
the ``generator``, so the same generator state gives the same output.
:data:`AUGMENTATIONS` maps the names of ``train.augment`` to ``fn(x, generator)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from losslab.core.validation import check_choice, check_floating, check_number, check_rank, fail

PAD_MODES = ("constant", "reflect")


def _check_images(x: Any) -> Tensor:
    check_floating(x, "x")
    return check_rank(x, 4, "x")


def _check_generator(generator: Any) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        fail("generator", "a torch.Generator", type(generator).__name__)
    return generator


def crop_offsets(batch: int, padding: int, *, generator: torch.Generator) -> Tensor:
    """Per-image crop origins ``(B, 2)`` as ``(top, left)``, uniform on ``{0, ..., 2 * padding}``.

    This is the only random draw of :func:`random_crop`: with a generator in the
    same state, it returns the offsets that :func:`random_crop` uses. Drawn on the
    generator's device, so the choice does not depend on where the images live.

    Example:
        >>> crop_offsets(3, 0, generator=torch.Generator().manual_seed(0)).tolist()
        [[0, 0], [0, 0], [0, 0]]
    """
    batch = check_number(batch, "batch", low=0, integer=True)
    padding = check_number(padding, "padding", low=0, integer=True)
    _check_generator(generator)
    return torch.randint(0, 2 * padding + 1, (batch, 2), generator=generator, device=generator.device)


def random_crop(
    x: Tensor, padding: int = 4, *, generator: torch.Generator, fill: float = 0.0, mode: str = "constant"
) -> Tensor:
    r"""Pad every image by ``padding`` on each side, then crop a random ``H x W`` window per image.

    Use it as the translation augmentation of the CIFAR recipe (``padding=4``).
    With origins :math:`(t_b, l_b)` drawn by :func:`crop_offsets`,

    .. math::
        y_{b,c,i,j} = \tilde x_{b,c,\,t_b + i,\,l_b + j}, \qquad
        \tilde x = \mathrm{pad}_{p}(x), \quad t_b, l_b \sim \mathcal U\{0, \dots, 2p\}

    so each image is shifted by :math:`(p - t_b, p - l_b)`, the uncovered border
    taking ``fill`` (``mode="constant"``) or the mirrored image (``mode="reflect"``,
    which needs ``padding < H, W``). One gather for the whole batch.

    Args:
        x: images ``(B, C, H, W)``, floating.
        padding: pixels added on each side, an int ``>= 0``; 0 returns ``x`` unchanged.
        generator: the source of the crop positions (on any device).
        fill: value of the padded border with ``mode="constant"``, finite.
        mode: ``"constant"`` | ``"reflect"``.

    Returns:
        Cropped images of the shape, dtype and device of ``x``.

    Raises:
        ValueError: on a non-floating or non-4-D ``x``, a negative or non-int
            ``padding``, a non-generator ``generator``, a non-finite ``fill``, an
            unknown ``mode`` or ``padding >= H`` or ``W`` with ``"reflect"``.

    References:
        He, Zhang, Ren & Sun, *Deep Residual Learning for Image Recognition*, CVPR 2016 (the CIFAR recipe).

    Example:
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> torch.equal(random_crop(x, 0, generator=torch.Generator().manual_seed(0)), x)
        True
    """
    _check_images(x)
    padding = check_number(padding, "padding", low=0, integer=True)
    fill = check_number(fill, "fill")
    check_choice(mode, "mode", PAD_MODES)
    b, c, h, w = x.shape
    if mode == "reflect" and padding >= min(h, w):
        fail("padding", f"smaller than the image side {min(h, w)} with mode='reflect'", padding)
    offsets = crop_offsets(b, padding, generator=generator).to(x.device)
    if padding == 0:
        return x.clone()
    padded = F.pad(x, (padding,) * 4, mode=mode, **({"value": fill} if mode == "constant" else {}))
    rows = (offsets[:, 0, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (offsets[:, 1, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def flip_decisions(batch: int, *, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Per-image flip decisions ``(B,)`` bool, each true with probability ``p``: ``u_b < p``, ``u_b ~ U[0, 1)``.

    The only random draw of :func:`random_flip`; ``p=0`` never and ``p=1`` always flips.

    Example:
        >>> flip_decisions(4, generator=torch.Generator().manual_seed(0), p=1.0).tolist()
        [True, True, True, True]
    """
    batch = check_number(batch, "batch", low=0, integer=True)
    p = check_number(p, "p", low=0.0, high=1.0)
    _check_generator(generator)
    return torch.rand(batch, generator=generator, device=generator.device) < p


def random_flip(x: Tensor, *, generator: torch.Generator, p: float = 0.5) -> Tensor:
    r"""Flip each image horizontally (along ``W``) with probability ``p``, independently.

    .. math::
        y_{b,c,i,j} = x_{b,c,i,\,W-1-j} \text{ if } u_b < p \text{ else } x_{b,c,i,j},
        \qquad u_b \sim \mathcal U[0, 1)

    Args:
        x: images ``(B, C, H, W)``, floating.
        generator: the source of the flip decisions (on any device).
        p: flip probability in ``[0, 1]``.

    Returns:
        Images of the shape, dtype and device of ``x``.

    Raises:
        ValueError: on a non-floating or non-4-D ``x``, a non-generator ``generator`` or ``p`` outside ``[0, 1]``.

    References:
        He, Zhang, Ren & Sun, *Deep Residual Learning for Image Recognition*, CVPR 2016 (the CIFAR recipe).

    Example:
        >>> x = torch.arange(3.0).reshape(1, 1, 1, 3)
        >>> random_flip(x, generator=torch.Generator().manual_seed(0), p=1.0).flatten().tolist()
        [2.0, 1.0, 0.0]
    """
    _check_images(x)
    flip = flip_decisions(x.shape[0], generator=generator, p=p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def crop_flip(x: Tensor, *, generator: torch.Generator, padding: int = 4) -> Tensor:
    """:func:`random_crop` (zero padding) then :func:`random_flip` with ``p = 1/2``: the standard CIFAR augmentation.

    Args:
        x: images ``(B, C, H, W)``, floating.
        generator: the source of the crops, then of the flips.
        padding: pixels added on each side before cropping, an int ``>= 0``.

    Returns:
        Images of the shape, dtype and device of ``x``.

    Raises:
        ValueError: as :func:`random_crop` and :func:`random_flip`.

    References:
        He, Zhang, Ren & Sun, *Deep Residual Learning for Image Recognition*, CVPR 2016.

    Example:
        >>> x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        >>> crop_flip(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([5, 3, 32, 32])
    """
    return random_flip(random_crop(x, padding, generator=generator), generator=generator)


def _none(x: Tensor, generator: torch.Generator) -> Tensor:
    _check_images(x)
    _check_generator(generator)
    return x


def _flip(x: Tensor, generator: torch.Generator) -> Tensor:
    return random_flip(x, generator=generator)


def _crop_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    return crop_flip(x, generator=generator)


# The names of `train.augment`, each a batch transform `fn(x (B, C, H, W), generator) -> x`.
AUGMENTATIONS: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {
    "none": _none,
    "flip": _flip,
    "crop_flip": _crop_flip,
}
