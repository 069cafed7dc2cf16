"""Post-training quantization robustness: test accuracy with the weights quantized to fewer and fewer bits."""

from __future__ import annotations

import torch  # noqa: F401 - the doctests run in this namespace
from torch import Tensor, nn

from losslab.compress.quantization import quantized_weights
from losslab.core.registry import flag, real, register
from losslab.core.validation import check_number, fail
from losslab.diagnostics._base import classifier_accuracy
from losslab.diagnostics._checks import check_batch, check_labels, check_model

BIT_WIDTHS = (8, 6, 4, 3, 2)
FULL_PRECISION_BITS = 32.0


@register("diagnostic", "quantized_accuracy", family="compression", papers=(41,),
          hyper={"per_channel": flag(True, doc="one weight scale per output channel (else per tensor)"),
                 "symmetric": flag(True, doc="symmetric signed grid (else asymmetric with a zero point)"),
                 "tolerance": real(0.01, 0.0, 1.0, doc="accuracy drop still counted as lossless for min_bits")})
def quantized_accuracy(
    model: nn.Module,
    test_inputs: Tensor,
    test_target: Tensor,
    *,
    per_channel: bool = True,
    symmetric: bool = True,
    tolerance: float = 0.01,
) -> dict[str, float]:
    r"""Test accuracy with the weights post-training quantized to 8, 6, 4, 3 and 2 bits, and the fewest lossless bits.

    Use it to track how compressible a network is during training, or to compare
    objectives by how much precision their solutions need: [41] finds that
    quantized models (mostly 4-bit) dominate full precision at equal compute, so
    a model whose accuracy holds at 4 bits is cheap to deploy.

    For each :math:`b \in \{8, 6, 4, 3, 2\}` the weight of every Linear/Conv layer
    is replaced by its symmetric uniform quantization
    :math:`\hat W = s\,\operatorname{clip}(\operatorname{round}(W/s))`,
    :math:`s = \max|W| / (2^{b-1}-1)` per output channel (see
    :func:`losslab.compress.quantization.fake_quantize`); activations and biases
    stay in float. Then

    .. math::
        b_\min = \min\{\, b : \mathrm{acc}_b \ge \mathrm{acc}_\text{dense} - \text{tolerance} \,\}

    or 32 (full precision needed) when no tested bit width qualifies; 32 keeps
    the series finite and reads as "no fewer bits than float32". The minimum is
    over the qualifying widths, not the longest qualifying run (accuracy is
    nearly always monotone in :math:`b`). The model is left exactly as found:
    weights are restored bit for bit, mode and gradients too.

    Args:
        model: a classifier with at least one Linear or Conv layer, mapping
            ``test_inputs`` to logits ``(m, C)``.
        test_inputs: a held-out batch ``(m, ...)``.
        test_target: its integer labels ``(m,)``.
        per_channel: one scale per output channel (True) or per weight tensor.
        symmetric: symmetric grid (True) or asymmetric with a zero point.
        tolerance: accuracy drop in ``[0, 1]`` still counted as lossless.

    Returns:
        ``{"dense", "acc@8bit", "acc@6bit", "acc@4bit", "acc@3bit", "acc@2bit", "min_bits"}``.

    Raises:
        ValueError: on a non-module ``model``, a model without Linear/Conv layers or
            whose output is not ``(m, C)`` logits, bad batches, or bad hyper-parameters.

    References:
        [41] Abdolrashidi et al., *Pareto-Optimal Quantized ResNet Is Mostly 4-bit*,
        CVPR Workshops, 2021.

    Example:
        >>> layer = nn.Linear(2, 2, bias=False)
        >>> _ = layer.weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        >>> out = quantized_accuracy(layer, torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 1]))
        >>> out["dense"], out["acc@2bit"], out["min_bits"]
        (1.0, 1.0, 2.0)
    """
    check_model(model)
    check_batch(test_inputs, "test_inputs")
    check_labels(test_target, test_inputs.shape[0], "test_target")
    for name, value in (("per_channel", per_channel), ("symmetric", symmetric)):
        if not isinstance(value, bool):
            fail(name, "True or False", repr(value))
    tolerance = check_number(tolerance, "tolerance", low=0.0, high=1.0)
    out = {"dense": classifier_accuracy(model, test_inputs, test_target)}
    for bits in BIT_WIDTHS:
        with quantized_weights(model, bits, per_channel=per_channel, symmetric=symmetric):
            out[f"acc@{bits}bit"] = classifier_accuracy(model, test_inputs, test_target)
    # the 1e-9 slack keeps e.g. 0.89 >= 0.90 - 0.01 true despite binary rounding
    ok = [b for b in BIT_WIDTHS if out[f"acc@{b}bit"] >= out["dense"] - tolerance - 1e-9]
    out["min_bits"] = float(min(ok)) if ok else FULL_PRECISION_BITS
    return out
