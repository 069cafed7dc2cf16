"""Weight Compander: reparameterise every weight matrix through a bounded, zero-expanding odd map."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from losslab.core.registry import flag, real, register, twin
from losslab.core.terms import TermModule
from losslab.core.validation import check_finite, check_floating, check_number, fail

# right_inverse clamps |w| / bound below 1 so atanh stays finite for weights at or beyond the bound.
_INVERSE_MARGIN = 1e-6


@register("regularizer", "weight_compander", family="reparameterization", papers=(9,),
          hyper={"bound": real(1.0, 1e-6, None, doc="largest effective |weight|"),
                 "slope": real(2.0, 1e-6, None,
                               doc="slope at 0; > 1 expands small weights away from zero"),
                 "learnable": flag(False, doc="learn bound and slope per layer (the paper's extension)")})
def weight_compander(weight: Tensor, *, bound: float = 1.0, slope: float = 2.0) -> Tensor:
    r"""The compander map ``w = bound * tanh(slope * theta / bound)`` applied elementwise.

    Use it (through :class:`WeightCompander`'s ``attach``) to regularise by
    reparameterisation: the effective weights are bounded in magnitude, so no
    single weight dominates, and small raw weights are expanded (slope > 1 at
    0), so fewer weights sit near zero. It adds no loss term.

    .. math::
        c(\theta) = a \tanh\!\Big(\frac{b\,\theta}{a}\Big), \qquad
        |c(\theta)| < a,\quad c(-\theta) = -c(\theta),\quad c'(0) = b

    **Choice.** The paper's own function could not be read from the sources
    available here (its abstract and the catalog give only the properties:
    bounded magnitude, pushed away from zero, learnable hyper-parameters). This
    odd, smooth, strictly increasing map has exactly those properties, with
    :math:`a` the bound and :math:`b` the expansion at zero; treat it as losslab's
    compander, not a verified reproduction of the paper's.

    Args:
        weight: float tensor of any shape (the raw parameters :math:`\theta`).
        bound: :math:`a > 0`.
        slope: :math:`b > 0`.

    Returns:
        A tensor like ``weight``.

    Raises:
        ValueError: on a non-floating ``weight`` or non-positive ``bound``/``slope``.

    References:
        [9] Cakaj, Mehnert and Yang, *Weight Compander: A Simple Weight
        Reparameterization for Regularization*, IJCNN 2023, arXiv:2306.16993.

    Example:
        >>> weight_compander(torch.tensor([-100.0, 0.0, 0.1]), bound=1.0, slope=2.0)
        tensor([-1.0000,  0.0000,  0.1974])
    """
    check_floating(weight, "weight")
    check_finite(weight, "weight")
    # Closed floors: at 5e-324 the ratio theta / bound rounded to 0/0 in float32.
    check_number(bound, "bound", low=1e-6)
    check_number(slope, "slope", low=1e-6)
    return _compand(weight, bound, slope)


def _compand(theta: Tensor, bound: Tensor | float, slope: Tensor | float) -> Tensor:
    return bound * torch.tanh(slope * theta / bound)


def _uncompand(w: Tensor, bound: Tensor | float, slope: Tensor | float) -> Tensor:
    ratio = (w / bound).clamp(-1.0 + _INVERSE_MARGIN, 1.0 - _INVERSE_MARGIN)
    return bound * torch.atanh(ratio) / slope


class Compander(nn.Module):
    """A ``torch.nn.utils.parametrize`` parametrization computing :func:`weight_compander`.

    Its ``right_inverse`` maps existing weights to raw parameters, so attaching
    it leaves a model's function unchanged (weights beyond ``bound`` are clipped
    just inside it). With ``learnable=True`` the bound and slope are trained as
    positive parameters (stored as logs).
    """

    def __init__(self, bound: float, slope: float, learnable: bool) -> None:
        super().__init__()
        logs = torch.tensor([math.log(bound), math.log(slope)])
        if learnable:
            self.log_params = nn.Parameter(logs)
        else:
            self.register_buffer("log_params", logs)

    def forward(self, theta: Tensor) -> Tensor:
        bound, slope = self.log_params.to(theta.dtype).exp()
        return _compand(theta, bound, slope)

    def right_inverse(self, w: Tensor) -> Tensor:
        bound, slope = self.log_params.detach().to(w.dtype).exp()
        return _uncompand(w, bound, slope)


def weight_matrices(model: nn.Module) -> list[nn.Module]:
    """Modules whose ``weight`` is a parameter with at least 2 dims (linear and conv kernels, not biases)."""
    return [m for m in model.modules()
            if isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.ndim >= 2]


@twin("regularizer", "weight_compander")
class WeightCompander(TermModule):
    """Module twin of :func:`weight_compander`: ``attach(model)`` parametrises every weight matrix.

    ``forward`` returns a zero scalar: the method has no penalty term.
    """

    kind = "regularizer"
    name = "weight_compander"

    def __init__(self, **hyper: Any) -> None:
        super().__init__(**hyper)

    def attach(self, model: nn.Module) -> nn.Module:
        if not isinstance(model, nn.Module):
            fail("model", "an nn.Module", type(model).__name__)
        if any(parametrize.is_parametrized(m, "weight") for m in model.modules()):
            fail("model", "a model whose weights are not parametrized yet (attach once)",
                 "a model that already has a weight parametrization")
        targets = weight_matrices(model)
        if not targets:
            fail("model", "a module with at least one weight matrix", type(model).__name__)
        for module in targets:
            comp = Compander(self.hyper["bound"], self.hyper["slope"], self.hyper["learnable"])
            parametrize.register_parametrization(module, "weight", comp.to(module.weight.device))
        return model

    def forward(self) -> Tensor:
        return torch.zeros(())
