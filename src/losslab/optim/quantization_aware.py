"""Quantization-aware training (QAT) with a straight-through estimator [41], as an optimizer wrapper."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from losslab.compress.quantization import fake_quantize
from losslab.core.registry import flag, integer, register
from losslab.core.validation import check_number, fail
from losslab.optim._wrapper import (
    Closure,
    WrappedOptimizer,
    require_closure,
    require_weight_matrices,
    run_closure,
    weight_matrices,
)


def check_qat_hyper(bits: Any, per_channel: Any, symmetric: Any) -> int:
    """Validate the hyper-parameters of :class:`QuantizationAware`; return ``bits`` as an int."""
    bits = check_number(bits, "bits", low=2, high=16, integer=True)
    for name, value in (("per_channel", per_channel), ("symmetric", symmetric)):
        if not isinstance(value, bool):
            fail(name, "true or false", repr(value))
    return bits


@register("optimizer", "quantization_aware", family="quantization", papers=(41,), tags=("wraps",),
          hyper={"bits": integer(4, 2, 16, doc="weight bit width b of the forward pass"),
                 "per_channel": flag(True, doc="one scale per output channel (dim 0) instead of per tensor"),
                 "symmetric": flag(True, doc="symmetric signed grid (True) or asymmetric with a zero point")})
class QuantizationAware(WrappedOptimizer):
    r"""Quantization-aware training: the loss and its gradient are taken at the ``b``-bit weights.

    Use it to train a network that will be deployed with low-bit weights (4 bits
    and below), where quantizing a float-trained network after the fact
    (post-training quantization, PTQ) loses accuracy: the optimizer keeps float
    *latent* weights :math:`w`, but every forward-backward pass sees their
    quantized values, so training finds weights that work *after* rounding.
    Wrap any optimizer (SGD, Adam, AdamW, or another wrapper).

    *Quantized tensors* are the parameters with ``ndim >= 2`` in the optimizer's
    groups (``nn.Linear`` / ``nn.Conv`` weights, also embeddings or any matrix a
    loss term trains); biases and normalisation scales stay in float, as on
    integer hardware where they live in the 32-bit accumulator. Activations are
    not quantized (use :func:`losslab.compress.quantized_activations` around the
    training loop for that).

    One ``step(closure)``: save the latent weights, overwrite them in place by
    :math:`Q_b(w)` = :func:`losslab.compress.fake_quantize` ``(w, b, per_channel,
    dim=0, symmetric)``, run ``closure()`` (forward and backward at :math:`Q_b(w)`),
    copy the latent weights back bit for bit, and step the base optimizer with the
    gradient from the quantized point. The straight-through estimator (STE) takes
    :math:`\partial Q_b(w)/\partial w = 1`:

    .. math::
        w_q = Q_b(w), \qquad w \leftarrow \mathrm{base}\big(w,\ \nabla L(w_q)\big).

    Each parameter group carries its own ``bits`` / ``per_channel`` / ``symmetric``.
    At ``bits=16`` the rounding error is below :math:`\max|w| / 32767` per channel,
    so training is the base optimizer's up to that.

    Evaluation: after training the model holds the **latent float weights**, not
    the deployed ones. Evaluate (or export) the quantized model inside
    ``with losslab.compress.quantized_weights(model, bits):`` (or
    :meth:`quantized`, or make it permanent with
    :func:`losslab.compress.quantize_weights`). In an engine run the test metrics
    (``test_acc``, ...) and the stored checkpoint are those of the latent float
    weights; add the ``quantized_accuracy`` diagnostic to the spec to measure the
    quantized network.

    Args:
        base_optimizer: the ``torch.optim.Optimizer`` that updates the latent weights.
        bits: integer bit width :math:`b \in [2, 16]` of the weights seen by the forward pass.
        per_channel: one scale per output channel (dim 0, as in [41]) instead of one per tensor.
        symmetric: symmetric signed grid (zero point 0) or asymmetric with a zero point.

    Returns:
        ``step(closure)`` returns the closure's loss, i.e. the training loss **at
        the quantized weights** :math:`L(Q_b(w))`, the objective QAT minimises.

    Raises:
        ValueError: on a non-optimizer ``base_optimizer`` or one without a parameter
            of ``ndim >= 2``, ``bits`` outside ``[2, 16]`` or not an integer, a
            non-bool flag (naming it), or a missing ``closure``.

    References:
        [41] Abdolrashidi et al., *Pareto-Optimal Quantized ResNet Is Mostly 4-bit*,
        CVPR Workshops 2021.

    Example:
        >>> layer = torch.nn.Linear(2, 1)
        >>> _ = layer.weight.data.copy_(torch.tensor([[0.3, -0.9]]))
        >>> _ = layer.bias.data.fill_(0.05)
        >>> opt = QuantizationAware(torch.optim.SGD(layer.parameters(), lr=0.1), bits=2)
        >>> x = torch.tensor([[1.0, 1.0]])
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = layer(x).sum()
        ...     loss.backward()
        ...     return loss.detach()
        >>> opt.step(closure)  # the 2-bit grid is {-0.9, 0, 0.9}: 0 - 0.9 + 0.05
        tensor(-0.8500)
        >>> layer.weight.data  # latent weights, moved by -lr * x (the STE gradient)
        tensor([[ 0.2000, -1.0000]])
        >>> with opt.quantized():
        ...     layer.weight.data
        tensor([[ 0., -1.]])
    """

    def __init__(self, base_optimizer: torch.optim.Optimizer, *, bits: int = 4, per_channel: bool = True,
                 symmetric: bool = True) -> None:
        bits = check_qat_hyper(bits, per_channel, symmetric)
        super().__init__(base_optimizer, {"bits": bits, "per_channel": per_channel, "symmetric": symmetric})
        require_weight_matrices(self.param_groups)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        closure = require_closure(closure)
        with self.quantized():
            loss = run_closure(closure)
        self.base_optimizer.step()
        return loss

    @contextlib.contextmanager
    def quantized(self) -> Iterator[list[Tensor]]:
        """Context manager: the quantized tensors hold :math:`Q_b(w)` inside, their latent values after.

        Use it to evaluate the network the forward pass of training sees (the
        deployed weights). The latent weights are restored bit for bit on exit,
        also on an exception. Yields the quantized tensors (the parameters with
        ``ndim >= 2``).
        """
        backup = self._quantize()
        try:
            yield [p for p, _ in backup]
        finally:
            with torch.no_grad():
                for p, latent in backup:
                    p.copy_(latent)

    @torch.no_grad()
    def _quantize(self) -> list[tuple[Tensor, Tensor]]:
        """Overwrite every quantizable parameter by its fake-quantized value; return ``(param, latent)`` pairs."""
        # No finiteness check (a host sync per tensor per step): a diverged weight gives a non-finite loss,
        # which the caller sees. Everything is quantized before anything is written.
        pairs = [(p, fake_quantize(p.detach(), g["bits"], symmetric=g["symmetric"], per_channel=g["per_channel"],
                                   dim=0, ste=False, validate_args=False))
                 for g, p in weight_matrices(self.param_groups)]
        backup = [(p, p.detach().clone()) for p, _ in pairs]
        for p, q in pairs:
            p.copy_(q)
        return backup

