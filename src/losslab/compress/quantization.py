"""Uniform fake quantization with a straight-through gradient, weight quantization, bit-ops and Pareto fronts [41].

The pieces of the compute-cost / quality study of [41]: quantize a network's
weights (and, in a training loop, its activations) to ``b`` bits with
:func:`fake_quantize`, price a model in bit-operations with :func:`count_macs`
and :func:`bit_ops`, and keep the models no other beats on both axes with
:func:`pareto_front`.

References:
    [41] Abdolrashidi et al., *Pareto-Optimal Quantized ResNet Is Mostly 4-bit*,
    CVPR Workshops, 2021.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from losslab.compress._layers import WEIGHT_LAYERS
from losslab.core.validation import check_finite, check_floating, check_number, check_tensor, compute_dtype, fail


def fake_quantize(
    x: Tensor,
    bits: int,
    *,
    symmetric: bool = True,
    per_channel: bool = False,
    dim: int = 0,
    ste: bool = True,
    validate_args: bool = True,
) -> Tensor:
    r"""Uniform quantize-dequantize of ``x`` to ``bits`` bits, with a straight-through gradient.

    Use it to simulate integer inference in float (post-training quantization of
    weights) or, with ``ste=True``, inside the forward pass for quantization-aware
    training (QAT): the forward value is the quantized tensor, the backward pass
    treats quantization as the identity.

    Symmetric (signed integers, zero exactly representable, no zero point):

    .. math::
        s = \frac{\max|x|}{2^{b-1}-1}, \qquad
        q = \operatorname{clip}\big(\operatorname{round}(x/s),\, -(2^{b-1}-1),\, 2^{b-1}-1\big), \qquad
        \hat x = s\,q

    Asymmetric (unsigned integers with an integer zero point :math:`z`; the
    range is widened to contain 0 so that 0 stays exact):

    .. math::
        m = \min(\min x, 0),\; M = \max(\max x, 0), \quad
        s = \frac{M - m}{2^b - 1}, \quad z = \operatorname{round}(-m/s), \quad
        q = \operatorname{clip}(\operatorname{round}(x/s) + z,\, 0,\, 2^b - 1), \quad
        \hat x = s\,(q - z)

    With these max/min statistics nothing is clipped beyond rounding, so
    :math:`|\hat x - x| \le s/2` elementwise. A channel (or tensor) whose
    statistics are all zero has :math:`s = 0` and maps to zeros (no 0/0).
    Per-channel statistics are taken over every dimension except ``dim``.

    Gradient with ``ste=True``: exactly 1 everywhere, :math:`\partial\hat x/\partial x = 1`
    (the value is computed as ``q + (x - x.detach())``, which is bit-exact in the
    forward pass). The scale is treated as a constant (no gradient flows through
    :math:`\max|x|`); since max-abs scaling clips nothing, no element is cut off
    from the gradient. With ``ste=False`` the result is detached (no gradient),
    for measurements.

    ``bits=1`` is refused: the symmetric grid :math:`2^{0}-1 = 0` has no non-zero
    level (sign/binary quantization is a different scheme, not provided here).

    Args:
        x: floating tensor of any shape (at least 1-D when ``per_channel``).
        bits: integer bit width in ``[2, 16]``.
        symmetric: symmetric signed grid (True) or asymmetric with a zero point.
        per_channel: one scale per slice along ``dim`` instead of one per tensor.
        dim: the channel dimension when ``per_channel`` (0 = output channels of a weight).
        ste: keep a straight-through (identity) gradient; False returns a detached tensor.
        validate_args: check that ``x`` is finite (a host sync); skip it inside hot loops.

    Returns:
        Tensor of ``x``'s shape and dtype holding at most :math:`2^b - 1` (symmetric)
        or :math:`2^b` (asymmetric) distinct values per channel. Half-precision
        inputs are computed in float32 and cast back.

    Raises:
        ValueError: on a non-floating, empty or non-finite ``x``, ``bits`` outside
            ``[2, 16]``, a non-bool flag, or ``dim`` out of range.

    References:
        [41] Abdolrashidi et al., *Pareto-Optimal Quantized ResNet Is Mostly 4-bit*, 2021.

    Example:
        >>> fake_quantize(torch.tensor([-1.0, -0.4, 0.1, 0.6, 1.0]), 3)
        tensor([-1.0000, -0.3333,  0.0000,  0.6667,  1.0000])
        >>> w = torch.tensor([[0.3, -0.6], [4.0, 1.0]])
        >>> fake_quantize(w, 3, per_channel=True)
        tensor([[ 0.4000, -0.6000],
                [ 4.0000,  1.3333]])
    """
    bits = _check_bits(bits)
    _check_flags(symmetric=symmetric, per_channel=per_channel, ste=ste, validate_args=validate_args)
    check_floating(x, "x")
    if x.numel() == 0:
        fail("x", "a non-empty tensor", f"shape {tuple(x.shape)}")
    if validate_args:
        check_finite(x, "x")
    reduce_dims = _reduce_dims(x, per_channel, dim)
    with torch.no_grad():
        q = _quantize_dequantize(x.detach().to(compute_dtype(x)), bits, symmetric, reduce_dims).to(x.dtype)
    # q + (x - x.detach()) equals q bit for bit (x - x.detach() is exactly 0) and has gradient 1.
    return q + (x - x.detach()) if ste and x.requires_grad else q


def _quantize_dequantize(x: Tensor, bits: int, symmetric: bool, reduce_dims: tuple[int, ...] | None) -> Tensor:
    def stat(fn: Any, t: Tensor) -> Tensor:
        return fn(t) if reduce_dims is None else fn(t, dim=reduce_dims, keepdim=True)

    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = stat(torch.amax, x.abs()) / qmax
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))  # a zero channel stays zero
        return torch.clamp(torch.round(x / safe), -qmax, qmax) * scale
    levels = 2 ** bits - 1
    low = torch.clamp(stat(torch.amin, x), max=0.0)
    high = torch.clamp(stat(torch.amax, x), min=0.0)
    scale = (high - low) / levels
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.clamp(torch.round(-low / safe), 0, levels)
    q = torch.clamp(torch.round(x / safe) + zero, 0, levels)
    return (q - zero) * scale


def _reduce_dims(x: Tensor, per_channel: bool, dim: Any) -> tuple[int, ...] | None:
    if not per_channel:
        return None
    if x.ndim == 0:
        fail("x", "at least 1-D when per_channel=True", "a 0-D tensor")
    dim = check_number(dim, "dim", low=-x.ndim, high=x.ndim - 1, integer=True)
    dim = dim % x.ndim
    return tuple(d for d in range(x.ndim) if d != dim)


def _check_bits(bits: Any, name: str = "bits") -> int:
    if bits == 1 and not isinstance(bits, bool):
        fail(name, "an integer in [2, 16] (1-bit uniform symmetric quantization has no non-zero level, "
                   "2^0 - 1 = 0)", repr(bits))
    return check_number(bits, name, low=2, high=16, integer=True)


def _check_flags(**flags: Any) -> None:
    for name, value in flags.items():
        if not isinstance(value, bool):
            fail(name, "True or False", repr(value))


def _quantizable_weights(model: Any) -> dict[str, nn.Parameter]:
    """The distinct weights of the model's Linear/Conv layers, by module name (tied weights once)."""
    if not isinstance(model, nn.Module):
        fail("model", "a torch.nn.Module", type(model).__name__)
    out: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, WEIGHT_LAYERS) and isinstance(weight, Tensor) and id(weight) not in seen:
            seen.add(id(weight))
            out[name or "model"] = weight
    if not out:
        fail("model", "a network with at least one nn.Linear or nn.Conv1d/2d/3d layer", "none")
    return out


def quantize_weights(
    model: nn.Module, bits: int, *, per_channel: bool = True, symmetric: bool = True
) -> dict[str, float]:
    r"""Quantize, in place, the weight of every ``nn.Linear`` / ``nn.Conv{1,2,3}d`` of ``model``.

    Use it for post-training quantization (PTQ) of a trained network, or at the
    end of QAT to make the weights exactly the values the forward pass saw. Each
    weight :math:`W` becomes :math:`\hat W = \mathrm{fake\_quantize}(W, b)` with
    one scale per output channel (dim 0) by default, as in [41]. Biases, norm
    layers and other parameters are left in full precision (a bias is added in
    the 32-bit accumulator on integer hardware). Tied weights are quantized once.
    To quantize only for a measurement, use :func:`quantized_weights`.

    Args:
        model: a module with at least one Linear or Conv1d/2d/3d layer.
        bits: integer bit width in ``[2, 16]``.
        per_channel: one scale per output channel (True) or per weight tensor.
        symmetric: symmetric grid (True) or asymmetric with a zero point.

    Returns:
        ``{module name: max |Ŵ - W|}`` per quantized layer (``"model"`` for a bare layer).

    Raises:
        ValueError: on a non-module ``model``, one without quantizable layers, a
            non-finite weight, or ``bits`` outside ``[2, 16]``.

    References:
        [41] Abdolrashidi et al., *Pareto-Optimal Quantized ResNet Is Mostly 4-bit*, 2021.

    Example:
        >>> layer = nn.Linear(2, 2, bias=False)
        >>> _ = layer.weight.data.copy_(torch.tensor([[0.3, -0.6], [4.0, 1.0]]))
        >>> err = quantize_weights(layer, 3)
        >>> layer.weight.data
        tensor([[ 0.4000, -0.6000],
                [ 4.0000,  1.3333]])
        >>> round(err["model"], 4)
        0.3333
    """
    bits = _check_bits(bits)
    _check_flags(per_channel=per_channel, symmetric=symmetric)
    weights = _quantizable_weights(model)
    # quantize everything before writing anything, so a bad (non-finite) weight leaves the model untouched
    quantized = {name: fake_quantize(w, bits, symmetric=symmetric, per_channel=per_channel, dim=0, ste=False)
                 for name, w in weights.items()}
    errors: dict[str, float] = {}
    with torch.no_grad():
        for name, weight in weights.items():
            errors[name] = float((quantized[name].float() - weight.float()).abs().max())
            weight.copy_(quantized[name])
    return errors


@contextlib.contextmanager
def quantized_weights(
    model: nn.Module, bits: int, *, per_channel: bool = True, symmetric: bool = True
) -> Iterator[dict[str, float]]:
    """Context manager: quantize the model's weights for a measurement, then restore them bit for bit.

    Use it to evaluate a post-training-quantized model without copying it. Inside,
    the weights are those of :func:`quantize_weights`; on exit (also on an
    exception) every quantized tensor gets back its exact original values.

    Args:
        model: a module with at least one Linear or Conv1d/2d/3d layer.
        bits: integer bit width in ``[2, 16]``.
        per_channel: one scale per output channel (True) or per weight tensor.
        symmetric: symmetric grid (True) or asymmetric with a zero point.

    Yields:
        The per-layer max abs errors returned by :func:`quantize_weights`.

    Raises:
        ValueError: as :func:`quantize_weights`, before anything is changed.

    References:
        [41] Abdolrashidi et al., *Pareto-Optimal Quantized ResNet Is Mostly 4-bit*, 2021.

    Example:
        >>> layer = nn.Linear(2, 2, bias=False)
        >>> before = layer.weight.detach().clone()
        >>> with quantized_weights(layer, 2):
        ...     n_levels = layer.weight.unique().numel()
        >>> n_levels <= 2 * 3, torch.equal(layer.weight, before)
        (True, True)
    """
    bits = _check_bits(bits)
    _check_flags(per_channel=per_channel, symmetric=symmetric)
    weights = _quantizable_weights(model)
    saved = {name: w.detach().clone() for name, w in weights.items()}
    try:
        yield quantize_weights(model, bits, per_channel=per_channel, symmetric=symmetric)
    finally:
        with torch.no_grad():
            for name, original in saved.items():
                weights[name].copy_(original)


@contextlib.contextmanager
def quantized_activations(model: nn.Module, bits: int, *, symmetric: bool = False) -> Iterator[nn.Module]:
    r"""Context manager: fake-quantize the input of every Linear/Conv layer to ``bits`` bits while inside.

    Use it with :func:`quantized_weights` to evaluate (or, since the gradient is
    straight-through, to train) a model whose multiplies are ``b_w x b_a``-bit
    integer products, the setting :func:`bit_ops` prices. Each layer input
    :math:`x` of a batch ``(n, ...)`` becomes :func:`fake_quantize` ``(x, b,
    per_channel=True, dim=0)``: dynamic quantization with one range per example,
    so a prediction does not depend on the rest of the batch. The default is
    asymmetric, which gives non-negative inputs (pixels, post-ReLU features) all
    :math:`2^b` levels instead of the :math:`2^{b-1}` a signed grid leaves them.
    The forward pre-hooks are removed on exit.

    Args:
        model: a module with at least one Linear or Conv1d/2d/3d layer.
        bits: integer bit width in ``[2, 16]``.
        symmetric: symmetric signed grid instead of the asymmetric default.

    Yields:
        ``model``.

    Raises:
        ValueError: on a non-module ``model``, one without quantizable layers, or
            ``bits`` outside ``[2, 16]``.

    References:
        [41] Abdolrashidi et al., *Pareto-Optimal Quantized ResNet Is Mostly 4-bit*, 2021.

    Example:
        >>> layer = nn.Linear(3, 1, bias=False)
        >>> _ = layer.weight.data.fill_(1.0)
        >>> with quantized_activations(layer, 2):
        ...     out = layer(torch.tensor([[0.0, 0.4, 0.9]]))
        >>> out  # inputs rounded to the 4-level grid {0, 0.3, 0.6, 0.9}
        tensor([[1.2000]], grad_fn=<MmBackward0>)
    """
    bits = _check_bits(bits)
    _check_flags(symmetric=symmetric)
    _quantizable_weights(model)

    def hook(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        if isinstance(x, Tensor) and x.is_floating_point() and x.ndim >= 2 and x.numel():
            x = fake_quantize(x, bits, symmetric=symmetric, per_channel=True, dim=0, validate_args=False)
        return (x, *args[1:])

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


def count_macs(model: nn.Module, example_input: Tensor) -> int:
    r"""Multiply-accumulates of one example through the model's Linear and Conv{1,2,3}d layers.

    Use it as the MAC count of :func:`bit_ops`. Forward hooks count, for each
    layer call, :math:`\text{outputs}\times\text{fan-in}` where the fan-in is
    ``in_features`` (Linear) or :math:`C_\text{in}/\text{groups}\cdot\prod k`
    (Conv); a layer called twice counts twice. Biases, activations, norms and
    pooling are not counted (they are not multiply-accumulates of weights).
    The model runs once in eval mode without gradients; its mode is restored.

    Args:
        model: the network.
        example_input: a batch ``(n, ...)`` the model accepts; the count is per example
            (the batch total divided by ``n``).

    Returns:
        The integer MAC count per example.

    Raises:
        ValueError: on a non-module ``model``, a non-tensor or empty ``example_input``,
            or a model in which no Linear/Conv layer ran.

    References:
        [41] Abdolrashidi et al., *Pareto-Optimal Quantized ResNet Is Mostly 4-bit*, 2021.

    Example:
        >>> net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        >>> count_macs(net, torch.zeros(5, 64))
        2368
    """
    if not isinstance(model, nn.Module):
        fail("model", "a torch.nn.Module", type(model).__name__)
    check_tensor(example_input, "example_input")
    if example_input.ndim == 0 or example_input.shape[0] == 0:
        fail("example_input", "a non-empty batch of shape (n, ...)", f"shape {tuple(example_input.shape)}")
    total = [0]

    def hook(module: nn.Module, _args: Any, output: Tensor) -> None:
        fan_in = module.in_features if isinstance(module, nn.Linear) else (
            module.in_channels // module.groups * int(torch.tensor(module.kernel_size).prod()))
        total[0] += output.numel() * fan_in

    layers = [m for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]
    handles = [m.register_forward_hook(hook) for m in layers]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    if total[0] == 0:
        fail("model", "a network in which at least one nn.Linear or nn.Conv layer runs", "none")
    return total[0] // int(example_input.shape[0])


def bit_ops(macs: float, weight_bits: int, activation_bits: int) -> float:
    r"""Compute cost in bit-operations: :math:`\text{MACs}\times b_w\times b_a`.

    Use it as the cost axis of a quantization / width trade-off, as in [41]: a
    ``b_w x b_a`` multiply costs about ``b_w * b_a`` one-bit operations, so a
    4-bit model may have 64x the MACs of a 32-bit one at the same cost.

    Args:
        macs: non-negative multiply-accumulate count (e.g. from :func:`count_macs`).
        weight_bits: integer weight bit width in ``[1, 64]`` (32 for float32).
        activation_bits: integer activation bit width in ``[1, 64]``.

    Returns:
        ``macs * weight_bits * activation_bits`` (an int when ``macs`` is an int).

    Raises:
        ValueError: on a negative or non-finite ``macs`` or a bit width outside ``[1, 64]``.

    References:
        [41] Abdolrashidi et al., *Pareto-Optimal Quantized ResNet Is Mostly 4-bit*, 2021.

    Example:
        >>> bit_ops(2368, 4, 4), bit_ops(2368, 32, 32)
        (37888, 2424832)
    """
    macs = check_number(macs, "macs", low=0)
    weight_bits = check_number(weight_bits, "weight_bits", low=1, high=64, integer=True)
    activation_bits = check_number(activation_bits, "activation_bits", low=1, high=64, integer=True)
    return macs * weight_bits * activation_bits


def pareto_front(cost: Sequence[float] | Tensor, score: Sequence[float] | Tensor) -> Tensor:
    r"""Indices of the points no other point beats on both axes (lower cost, higher score), by cost.

    Use it to read a width x bit-width sweep the way [41] does: the models worth
    deploying are those on the front. Point :math:`i` is dominated when some
    :math:`j` has

    .. math::
        c_j \le c_i,\quad a_j \ge a_i,\quad (c_j, a_j) \ne (c_i, a_i)

    Ties: a point with the same score as a cheaper one is dominated, and so is
    one with the same cost as a better one; exact duplicates do not dominate
    each other, so all copies of a front point are kept. The result is sorted by
    cost, then by index.

    Args:
        cost: ``(n,)`` finite costs (e.g. :func:`bit_ops`), a sequence or 1-D tensor.
        score: ``(n,)`` finite scores where higher is better (e.g. accuracy).

    Returns:
        int64 tensor of the front's indices, sorted by increasing cost (and score).

    Raises:
        ValueError: on empty, non-1-D, non-finite or length-mismatched inputs.

    References:
        [41] Abdolrashidi et al., *Pareto-Optimal Quantized ResNet Is Mostly 4-bit*, 2021.

    Example:
        >>> pareto_front([4.0, 1.0, 2.0, 3.0], [0.9, 0.5, 0.5, 0.95])
        tensor([1, 3])
    """
    c, a = _as_vector(cost, "cost"), _as_vector(score, "score")
    if c.numel() != a.numel():
        fail("score", f"of length {c.numel()} to match `cost`", f"length {a.numel()}")
    # cheapest first; among equal costs the best score first, then the lower index (a stable order)
    order = sorted(range(c.numel()), key=lambda i: (float(c[i]), -float(a[i]), i))
    front: list[int] = []
    for i in order:
        if not front:
            front.append(i)
            continue
        last = front[-1]
        if float(a[i]) > float(a[last]) or (float(a[i]) == float(a[last]) and float(c[i]) == float(c[last])):
            front.append(i)
    return torch.tensor(front, dtype=torch.long)


def _as_vector(values: Any, name: str) -> Tensor:
    if isinstance(values, Tensor):
        t = values.detach()
    else:
        try:
            t = torch.as_tensor(list(values), dtype=torch.float64)
        except (TypeError, ValueError):
            fail(name, "a sequence of numbers or a 1-D tensor", type(values).__name__)
    if t.dtype == torch.bool or t.dtype.is_complex:
        fail(name, "real numbers", t.dtype)
    if t.ndim != 1 or t.numel() == 0:
        fail(name, "a non-empty 1-D sequence", f"shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    check_finite(t, name)
    return t
