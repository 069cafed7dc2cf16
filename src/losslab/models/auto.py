"""Choosing a model by input shape, and checking that a named model can take a shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from losslab.core.registry import REGISTRY, Entry, register
from losslab.models._common import check_input_shape
from losslab.models.cnn2d import MIN_SIZE, build_cnn2d
from losslab.models.mlp import build_mlp

_BUILDERS = {"mlp": build_mlp, "cnn2d": build_cnn2d}


def choose_model(input_shape: Any) -> str:
    """The registry name ``auto`` builds for ``input_shape``: ``"cnn2d"`` for images, ``"mlp"`` otherwise.

    Rank 3 ``(C, H, W)`` and rank 2 ``(H, W)`` (a one-channel image) with ``H, W >= 4``
    give ``"cnn2d"``; everything else (vectors ``(F,)``, signals ``(1, L)``, images
    too small to pool, higher ranks) gives ``"mlp"``, which flattens any shape.

    Raises:
        ValueError: if ``input_shape`` is not a non-empty tuple of positive ints.

    Example:
        >>> choose_model((3, 32, 32)), choose_model((28, 28)), choose_model((40,)), choose_model((1, 40))
        ('cnn2d', 'cnn2d', 'mlp', 'mlp')
    """
    shape = check_input_shape(input_shape)
    return "cnn2d" if len(shape) in (2, 3) and min(shape[-2:]) >= MIN_SIZE else "mlp"


@register("model", "auto", family="auto",
          reference="Picks a registered model by input shape: the 'cnn2d' image CNN for (C, H, W) and (H, W) "
                    "images, the 'mlp' (Greydanus, MNIST-1D, arXiv:2011.14439) for everything else.")
def build_auto(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The default model for a shape: :func:`~losslab.models.cnn2d.build_cnn2d` for images, else the MLP.

    Use it when a spec does not care about the architecture, e.g. a loss
    comparison on a user's own data set of unknown form. The choice is
    :func:`choose_model`; the chosen builder runs with its default hyper-parameters,
    and its module is returned as is (``features``, ``head`` and ``stages`` are its own).
    An ``(H, W)`` shape is a one-channel image: ``cnn2d`` takes ``x (B, H, W)`` and
    adds the channel inside. Token inputs (integer ids) need ``embedding_mlp`` by name.

    Args:
        input_shape: per-sample shape, any rank.
        num_classes: number of output logits ``C``, at least 2.

    Returns:
        The module of the chosen model, mapping ``x (B, *input_shape)`` to ``(B, num_classes)``.

    Raises:
        ValueError: on a bad ``input_shape`` or ``num_classes``.

    References:
        The PyTorch MNIST example (``cnn2d``); Greydanus, *Scaling Down Deep Learning*,
        arXiv:2011.14439, 2020 (``mlp``).

    Example:
        >>> type(build_auto((3, 32, 32), 10)).__name__, type(build_auto((64,), 10)).__name__
        ('CNN2D', 'MLP')
    """
    return _BUILDERS[choose_model(input_shape)](input_shape, num_classes)


def _rejection(entry: Entry, shape: tuple[int, ...], params: Mapping[str, Any]) -> str | None:
    """The builder's one-line complaint about ``shape``, or None if it builds.

    The model is built on the meta device, so no memory is allocated and no
    weights are drawn; the global RNG is restored regardless.
    """
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            entry.obj(shape, 2, **params)
    except ValueError as exc:
        return str(exc).splitlines()[0]
    return None


def models_that_fit(input_shape: Any) -> list[str]:
    """Registered models whose builder, with default hyper-parameters, accepts ``input_shape`` (sorted).

    Example:
        >>> {"cnn2d", "preact_resnet18", "mlp"} <= set(models_that_fit((3, 32, 32)))
        True
        >>> "preact_resnet18" in models_that_fit((30,))
        False
    """
    shape = check_input_shape(input_shape)
    return [e.name for e in REGISTRY.entries("model") if _rejection(e, shape, e.resolve()) is None]


def check_model_fits(name: str, input_shape: Any, hyper: Mapping[str, Any] | None = None) -> None:
    """Raise a one-line ``ValueError`` if model ``name`` (with ``hyper``) cannot take samples of ``input_shape``.

    Cheap: the model is built on the meta device (no weights), and the builder's
    own ``input_shape`` validation decides. The message names the model, the
    shape, the builder's reason and the models that fit the shape.

    Args:
        name: a registered model name.
        input_shape: per-sample shape, e.g. ``(3, 32, 32)``.
        hyper: the model's hyper-parameters (defaults for those left out).

    Raises:
        ValueError: on an unknown ``name`` or bad ``hyper`` (the registry's or the
            builder's own message), a bad ``input_shape``, or a model that cannot take it.

    Example:
        >>> check_model_fits("cnn2d", (3, 32, 32))
        >>> check_model_fits("mnist1d_cnn", (3, 32, 32))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Model 'mnist1d_cnn' cannot take input_shape (3, 32, 32) ...; models that fit (3, 32, 32): ...
    """
    entry = REGISTRY.get("model", name)
    shape = check_input_shape(input_shape)
    reason = _rejection(entry, shape, entry.resolve(hyper))
    if reason is not None and "`input_shape`" not in reason:
        raise ValueError(reason)  # a hyper-parameter the builder rejects (e.g. a WRN depth), not the shape
    if reason is not None:
        others = [m for m in models_that_fit(shape) if m != name]
        raise ValueError(f"Model {name!r} cannot take input_shape {shape} ({reason.rstrip('.')}); "
                         f"models that fit {shape}: {', '.join(others) or 'none'}.")
