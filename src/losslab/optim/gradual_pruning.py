"""Gradual magnitude pruning during training [63] (after Zhu and Gupta), as an optimizer wrapper."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from losslab.compress.pruning import cubic_sparsity, global_masks, lamp_scores, magnitude_scores
from losslab.core.registry import choice, integer, real, register
from losslab.core.validation import check_choice, check_number, fail
from losslab.optim._wrapper import Closure, WrappedOptimizer, require_weight_matrices, run_closure, weight_matrices

GRADUAL_METHODS = ("magnitude", "lamp")


def check_gradual_hyper(final: Any, start_step: Any, end_step: Any, every: Any, method: Any,
                        min_keep: Any) -> int:
    """Validate the hyper-parameters of :class:`GradualPruning`; return the number of pruning events ``n``."""
    check_number(final, "final", low=0.0, high=1.0, high_open=True)
    start_step = check_number(start_step, "start_step", low=0, integer=True)
    every = check_number(every, "every", low=1, integer=True)
    end_step = check_number(end_step, "end_step", low=1, integer=True)
    check_choice(method, "method", GRADUAL_METHODS)
    check_number(min_keep, "min_keep", low=0, integer=True)
    if end_step <= start_step:
        fail("end_step", f"greater than start_step={start_step}", end_step)
    if (end_step - start_step) % every:
        fail("end_step", f"start_step + a multiple of every (start_step={start_step}, every={every}), "
             "so that it is the last pruning event", end_step)
    return (end_step - start_step) // every


@register("optimizer", "gradual_pruning", family="sparsity", papers=(63, 140), tags=("wraps",),
          hyper={"final": real(0.9, 0.0, 1.0, high_open=True, doc="target sparsity s_f reached at end_step"),
                 "start_step": integer(0, 0, doc="first pruning event t_0 (prunes to s_0 = 0)"),
                 "end_step": integer(1000, 1, doc="last pruning event t_0 + n * every, where s_f is reached"),
                 "every": integer(100, 1, doc="steps between pruning events"),
                 "method": choice("magnitude", GRADUAL_METHODS, doc="ranking: global |w| [63] or LAMP [140]"),
                 "min_keep": integer(0, 0, doc="least weights each tensor keeps ([63]'s minimum threshold)")})
class GradualPruning(WrappedOptimizer):
    r"""Gradual magnitude pruning: raise the sparsity on a cubic schedule while training goes on.

    Use it to train a sparse network from a dense start in one run, instead of
    pruning once after training and fine-tuning: the network recovers between
    pruning events, so high sparsity costs far less accuracy than one-shot
    pruning. Wrap any optimizer (SGD, Adam, AdamW, or another wrapper).

    *Prunable tensors* are the parameters with ``ndim >= 2`` in the optimizer's
    groups (``nn.Linear`` / ``nn.Conv`` weights, embeddings); biases and
    normalisation scales stay dense. Pruning is global: all prunable tensors are
    ranked together, by :math:`|w|` [63] (``method="magnitude"``) or by LAMP
    scores [140] (``method="lamp"``, which never empties a tensor).

    Schedule: with :math:`n = (t_e - t_0) / \Delta t` events after the start, the
    step counter :math:`t` (0-based, one per ``step()`` call) triggers an event at
    :math:`t \in \{t_0, t_0 + \Delta t, \dots, t_e\}`, and the target is
    (:func:`losslab.compress.pruning.cubic_sparsity` with :math:`s_0 = 0`)

    .. math::
        s_t = s_f \Big(1 - \big(1 - \tfrac{t - t_0}{n\,\Delta t}\big)^3\Big).

    At an event, before the base step, the global mask is recomputed from the
    current weights so that exactly :math:`\operatorname{round}((1 - s_t) T)` of
    the :math:`T` prunable entries stay (already pruned entries score
    :math:`-\infty`, so masks only shrink and a pruned weight never comes back).
    On every step the masked gradient entries are zeroed before the base step,
    so momentum / Adam moments stop accumulating on pruned weights, and after it
    the weights are multiplied by their masks, so pruned weights stay exactly
    zero whatever the base update did (decaying momentum, weight decay). The
    gradients are edited in place. After the step numbered :math:`t`, the prunable
    tensors hold :math:`s_t` zeros (for :math:`t \ge t_e`, :math:`s_f`); pick
    :math:`t_e` below the run's total number of steps. The masks and the step
    counter live in the wrapper's per-parameter state, so ``state_dict`` /
    ``load_state_dict`` resume a run exactly.

    Args:
        base_optimizer: the ``torch.optim.Optimizer`` that updates the weights.
        final: the target sparsity :math:`s_f \in [0, 1)`.
        start_step: :math:`t_0 \ge 0`, the first event (it prunes to :math:`s_0 = 0`, i.e. nothing).
        end_step: :math:`t_e > t_0`, the last event; :math:`t_e - t_0` must be a multiple of ``every``.
        every: :math:`\Delta t \ge 1`, steps between events.
        method: ``"magnitude"`` or ``"lamp"``.
        min_keep: the least entries each prunable tensor keeps ([63]'s minimum
            threshold against layer collapse), ``>= 0``; the reservations must fit
            in the entries kept at ``final``.

    Returns:
        ``step(closure)`` returns the closure's loss (``None`` without a closure,
        when the gradients were computed beforehand). :attr:`sparsity` is the
        current fraction of zeros among the prunable tensors.

    Raises:
        ValueError: on a non-optimizer ``base_optimizer`` or one without a prunable
            parameter, a hyper-parameter out of range (naming it), ``end_step``
            not after ``start_step`` or off the event grid, or a ``min_keep`` too
            large for ``final``.

    References:
        [63] Gupta et al., *Is Complexity Required for Neural Network Pruning?
        A Case Study on Global Magnitude Pruning*, 2024.
        [140] Lee et al., *Layer-adaptive Sparsity for the Magnitude-based Pruning*, ICLR 2021.

    Example:
        >>> torch.manual_seed(0) and None
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> opt = GradualPruning(torch.optim.Adam(net.parameters(), lr=0.01), final=0.75, start_step=2,
        ...                      end_step=6, every=2, method="lamp")
        >>> x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))
        >>> levels = []
        >>> for t in range(8):
        ...     opt.zero_grad()
        ...     torch.nn.functional.cross_entropy(net(x), y).backward()
        ...     _ = opt.step()
        ...     levels.append(opt.sparsity)
        >>> levels  # events at steps 2 (s = 0), 4 (s = 0.65625 of 80 weights) and 6 (s = 0.75)
        [0.0, 0.0, 0.0, 0.0, 0.65, 0.65, 0.75, 0.75]
        >>> int((net[0].bias == 0).sum())  # biases stay dense
        0
    """

    def __init__(self, base_optimizer: torch.optim.Optimizer, *, final: float = 0.9, start_step: int = 0,
                 end_step: int = 1000, every: int = 100, method: str = "magnitude", min_keep: int = 0) -> None:
        check_gradual_hyper(final, start_step, end_step, every, method, min_keep)
        super().__init__(base_optimizer, {"final": float(final), "start_step": int(start_step),
                                          "end_step": int(end_step), "every": int(every), "method": method,
                                          "min_keep": int(min_keep)})
        require_weight_matrices(self.param_groups)
        sizes = [p.numel() for p in self._prunable()]
        reserved, keep = sum(min(min_keep, n) for n in sizes), round((1.0 - final) * sum(sizes))
        if reserved > keep:
            fail("min_keep", f"small enough that the {reserved} reserved entries fit in the {keep} kept at "
                 f"final={final:g}", min_keep)

    @property
    def sparsity(self) -> float:
        """The current fraction of exactly-zero entries among the prunable tensors (for logging)."""
        params = self._prunable()
        zeros = sum(int((p.detach() == 0).sum()) for p in params)
        return zeros / sum(p.numel() for p in params)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor | None:  # type: ignore[override]
        loss = run_closure(closure) if closure is not None else None
        params = self._prunable()
        t = max(int(self.state[p].get("step", 0)) for p in params)
        target = self._target(t)
        if target is not None:
            self._update_masks(params, target)
        masks = [(p, self.state[p]["mask"]) for p in params if "mask" in self.state[p]]
        for p, m in masks:
            if p.grad is not None:
                p.grad.masked_fill_(~m, 0.0)
        self.base_optimizer.step()
        for p, m in masks:
            p.masked_fill_(~m, 0.0)
        for p in params:
            self.state[p]["step"] = t + 1
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for p in self._prunable():  # torch casts every loaded state tensor to its parameter's dtype
            if "mask" in self.state[p]:
                self.state[p]["mask"] = self.state[p]["mask"].bool()

    def _prunable(self) -> list[Tensor]:
        return [p for _, p in weight_matrices(self.param_groups)]

    def _target(self, t: int) -> float | None:
        """The target sparsity if step ``t`` is a pruning event, else None."""
        h = self.param_groups[0]  # one global mask, so one set of values
        start, end, every = h["start_step"], h["end_step"], h["every"]
        if t < start or t > end or (t - start) % every:
            return None
        return cubic_sparsity(t, final=h["final"], start=start, steps=(end - start) // every, every=every)

    def _update_masks(self, params: list[Tensor], sparsity: float) -> None:
        h = self.param_groups[0]
        weights = {str(i): p.detach() for i, p in enumerate(params)}
        scores = (lamp_scores if h["method"] == "lamp" else magnitude_scores)(weights)
        for i, p in enumerate(params):
            old = self.state[p].get("mask")
            if old is not None:  # already pruned entries go first, so the new mask contains none of them
                scores[str(i)] = scores[str(i)].masked_fill(~old, -math.inf)
        masks = global_masks(scores, sparsity, min_keep=h["min_keep"])
        for i, p in enumerate(params):
            self.state[p]["mask"] = masks[str(i)].to(p.device)
