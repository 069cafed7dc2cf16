"""K copies of one architecture trained as one stacked model, and their per-member optimizer.

Every parameter of the K member models is stacked along a new leading axis,
``(K, *shape)``; a member's slice is exactly its own model's tensor, and no
operation mixes members, so member ``k`` follows the path its own sequential
run would. The MLP is batched by hand (``torch.baddbmm``: one batched GEMM
per layer, which on CPU gives the same bits as ``nn.Linear`` per member); any
other buffer-free architecture goes through ``torch.func.vmap`` of
``functional_call``.

:class:`StackedOptimizer` reproduces ``torch.optim``'s single-tensor SGD, Adam
and AdamW (the CPU default) operation for operation, on contiguous slices of
members that share their hyper-parameters, so each member's update is the one
``torch.optim`` would make on its own model.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from losslab.models.mlp import MLP

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam / AdamW defaults, which make_optimizer uses
ADAM_EPS = 1e-8


class StackedModel:
    """K same-architecture models as stacked leaves ``(K, *shape)``; :meth:`forward` maps ``(K, B, ...)`` inputs.

    Args:
        models: the K members, each built (and initialised) exactly as its sequential run builds it.

    Attributes:
        names: parameter names, in ``named_parameters()`` order.
        params: the stacked leaf tensors (``requires_grad``), aligned with ``names``.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise ValueError("Expected at least one model to stack, but got none.")
        self.names = [n for n, _ in models[0].named_parameters()]
        self.params = [torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_()
                       for n in self.names]
        self._template = models[0]

    def __len__(self) -> int:
        return self.params[0].shape[0]

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def keep(self, members: Tensor) -> None:
        """Keep only the given member indices (a diverged member leaves the pack)."""
        self.params = [p.detach()[members].requires_grad_() for p in self.params]

    @torch.no_grad()
    def unstack_into(self, k: int, model: nn.Module) -> nn.Module:
        """Copy member ``k``'s weights into ``model`` (its own ordinary module), for evaluation and checkpoints."""
        own = dict(model.named_parameters())
        for name, p in zip(self.names, self.params):
            own[name].copy_(p[k])
        return model


class BatchedLinear(torch.autograd.Function):
    r"""``y_k = x_k W_k^\top + b_k`` for ``x (K, B, in)``, ``W (K, out, in)``, ``b (K, out)``.

    The backward takes the same matrix products, in the same memory layout, as
    ``nn.Linear``'s (``\partial W_k = g_k^\top x_k``, ``\partial x_k = g_k W_k``), so the
    BLAS kernel, hence every bit, matches a member's own model; autograd of
    ``baddbmm`` would form ``x_k^\top g_k`` and transpose it, which rounds differently.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        x, weight = ctx.saved_tensors
        grad_x = grad.bmm(weight) if ctx.needs_input_grad[0] else None
        return grad_x, grad.transpose(1, 2).bmm(x), grad.sum(1)


class StackedMLP(StackedModel):
    r"""K :class:`~losslab.models.mlp.MLP` members, each layer ``h W_k^\top + b_k`` one batched GEMM for all."""

    def __init__(self, models: Sequence[MLP]) -> None:
        super().__init__(models)
        m = models[0]
        self.act, self.residual, self.depth = m.act, m.residual, len(m.hidden)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(K, B, C)`` of inputs ``(K, B, *input_shape)``."""
        h = x.reshape(x.shape[0], x.shape[1], -1)
        for i in range(self.depth):
            z = self.act(BatchedLinear.apply(h, self.params[2 * i], self.params[2 * i + 1]))
            h = h + z if self.residual and i > 0 else z
        return BatchedLinear.apply(h, self.params[-2], self.params[-1])


class StackedFunctional(StackedModel):
    """Any buffer-free architecture: ``vmap(functional_call)`` over the stacked parameters."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__(models)
        from torch.func import functional_call, vmap

        base = copy.deepcopy(models[0]).to("meta")
        names = self.names

        def one(params: tuple[Tensor, ...], x: Tensor) -> Tensor:
            return functional_call(base, dict(zip(names, params)), (x,))

        self._fn = vmap(one)

    def forward(self, x: Tensor) -> Tensor:
        return self._fn(tuple(self.params), x)


def stack_models(models: Sequence[nn.Module]) -> StackedModel:
    """The hand-batched MLP where it applies, else the generic vmapped route."""
    if all(type(m) is MLP for m in models):
        return StackedMLP(models)  # type: ignore[arg-type]
    return StackedFunctional(models)


def stacking_problem(model: nn.Module) -> str | None:
    """Why ``model`` cannot be stacked (its state or randomness is not per-parameter), or None."""
    if any(True for _ in model.buffers()):
        return "the model has buffers (batch norm or fixed tensors)"
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()):
        return "the model uses dropout"
    if any(p.dtype != torch.float32 for p in model.parameters()):
        return "the model is not float32"
    return None


class StackedOptimizer:
    r"""SGD / Adam / AdamW on stacked parameters, with per-member ``lr``, ``weight_decay`` and ``momentum``.

    Members that share their hyper-parameters form a contiguous slice
    (``groups``); each slice gets exactly ``torch.optim``'s single-tensor update:

    - SGD: :math:`g \leftarrow g + \lambda\theta`; :math:`b \leftarrow \mu b + g` (:math:`b = g` at
      the first step); :math:`\theta \leftarrow \theta - \eta b`.
    - Adam: :math:`g \leftarrow g + \lambda\theta`; AdamW instead
      :math:`\theta \leftarrow (1 - \eta\lambda)\theta`; then
      :math:`m \leftarrow \operatorname{lerp}(m, g, 1-\beta_1)`,
      :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
      :math:`\theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t}\, m / (\sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon)`.

    Args:
        kind: ``"sgd"`` | ``"adam"`` | ``"adamw"``.
        params: stacked leaves ``(K, ...)``; gradients are read from ``.grad``.
        groups: ``[(start, stop, {"weight_decay": ..., "momentum": ...}), ...]`` covering ``0..K`` in order.
    """

    KINDS = ("adam", "adamw", "sgd")

    def __init__(self, kind: str, params: list[Tensor], groups: list[tuple[int, int, dict[str, float]]]) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"Expected `kind` to be one of {', '.join(self.KINDS)}, but got {kind!r}.")
        self.kind, self.params, self.groups = kind, params, groups
        self.steps = 0
        if kind == "sgd":
            self.buffers: list[Tensor] | None = None
        else:
            self.exp_avg = [torch.zeros_like(p) for p in params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    def keep(self, params: list[Tensor], members: Tensor, groups: list[tuple[int, int, dict[str, float]]]) -> None:
        """Follow :meth:`StackedModel.keep`: new leaves, and the state of the kept members only."""
        self.params, self.groups = params, groups
        if self.kind == "sgd":
            self.buffers = None if self.buffers is None else [b[members] for b in self.buffers]
        else:
            self.exp_avg = [s[members] for s in self.exp_avg]
            self.exp_avg_sq = [s[members] for s in self.exp_avg_sq]

    @torch.no_grad()
    def step(self, lrs: Sequence[float]) -> None:
        """One update; ``lrs[g]`` is group ``g``'s learning rate at this step.

        Each group's update is a handful of ``torch._foreach_*`` calls over its
        slices of every parameter (on CPU these loop over the very per-tensor
        kernels ``torch.optim`` calls, so the bits agree).
        """
        self.steps += 1
        if self.kind == "sgd" and self.buffers is None and any(h["momentum"] != 0 for _, _, h in self.groups):
            self.buffers = [torch.empty_like(p) for p in self.params]
        k = len(self.params[0])
        for (a, b, hyper), lr in zip(self.groups, lrs):
            def cut(ts: list[Tensor]) -> list[Tensor]:
                return ts if (a, b) == (0, k) else [t[a:b] for t in ts]

            params, grads = cut(self.params), cut([p.grad for p in self.params])
            if self.kind == "sgd":
                self._sgd(params, grads, None if self.buffers is None else cut(self.buffers), lr, hyper)
            else:
                self._adam(params, grads, cut(self.exp_avg), cut(self.exp_avg_sq), lr, hyper)

    def _sgd(self, params: list[Tensor], grads: list[Tensor], buffers: list[Tensor] | None, lr: float,
             hyper: dict[str, float]) -> None:
        wd, mu = hyper["weight_decay"], hyper["momentum"]
        if wd != 0:
            grads = torch._foreach_add(grads, params, alpha=wd)
        if mu != 0:
            if self.steps == 1:  # torch starts the momentum buffer as a copy of the first gradient
                torch._foreach_copy_(buffers, grads)
            else:
                torch._foreach_mul_(buffers, mu)
                torch._foreach_add_(buffers, grads)
            grads = buffers
        torch._foreach_add_(params, grads, alpha=-lr)

    def _adam(self, params: list[Tensor], grads: list[Tensor], exp_avg: list[Tensor], exp_avg_sq: list[Tensor],
              lr: float, hyper: dict[str, float]) -> None:
        wd, (beta1, beta2) = hyper["weight_decay"], ADAM_BETAS
        step = float(self.steps)
        bias_correction1 = 1 - beta1 ** step
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        if wd != 0:
            if self.kind == "adamw":
                torch._foreach_mul_(params, 1 - lr * wd)
            else:
                grads = torch._foreach_add(grads, params, alpha=wd)
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, ADAM_EPS)
        torch._foreach_addcdiv_(params, exp_avg, denom, value=-(lr / bias_correction1))
