"""Correctness-aware (CA) post-hoc calibration [80]: a per-sample temperature trained with a BCE on correctness.

What [80] states (its abstract) and losslab implements: a post-hoc calibrator
trained on an in-distribution validation set with an objective that *decreases
confidence on wrongly predicted samples and increases it on correctly
predicted ones*, and that may read transformed copies of a sample (rotated,
greyscaled, jittered) because one sample alone indicates its correctness
poorly; it is applied to isolated test samples.

losslab's choices, not fixed by the abstract:

- the objective is the binary cross-entropy between the top-1 confidence
  ``p_hat`` of the calibrated softmax and the correctness ``c = 1[argmax z = y]``
  (:func:`correctness_aware_loss`);
- the calibrator outputs a per-sample temperature ``tau(x) > tau_min`` (so the
  argmax, hence accuracy, never changes) from a small MLP over standardised
  logit statistics: sorted top-k softmax probabilities, entropy, max logit,
  top-1/top-2 logit gap and logsumexp; for each transformed copy the same
  statistics plus whether its argmax agrees with the original's and its
  probability of the original's top class;
- transformed copies are optional: the user passes the logits of augmented
  views (``views``, a list of ``(N, C)`` tensors) if they have them; losslab
  does not augment;
- training is full-batch Adam from a generator-seeded initialisation whose
  output starts at ``tau = 1``, so a fit is deterministic on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losslab.core.reduction import reduce_loss
from losslab.core.validation import (
    check_class_target,
    check_finite,
    check_floating,
    check_logits,
    check_number,
    check_reduction,
    compute_dtype,
    fail,
)

def _check_temperature(temperature: Any, n: int, *, validate_args: bool) -> Tensor | float:
    """A positive number, a 0-D tensor, or an ``(N,)`` tensor of positive temperatures."""
    if isinstance(temperature, Tensor):
        check_floating(temperature, "temperature")
        if temperature.ndim > 1 or (temperature.ndim == 1 and temperature.shape[0] != n):
            fail("temperature", f"a scalar or a tensor of shape ({n},)", f"shape {tuple(temperature.shape)}")
        if validate_args:
            check_finite(temperature, "temperature")
            if bool((temperature <= 0).any()):
                fail("temperature", "positive", f"a minimum of {float(temperature.min()):.4g}")
        return temperature
    return check_number(temperature, "temperature", low=0.0, low_open=True)


def correctness_aware_loss(
    logits: Tensor,
    target: Tensor,
    temperature: Tensor | float,
    *,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""BCE between the top-1 confidence of ``softmax(logits / temperature)`` and whether the top-1 is right [80].

    Use it to train a post-hoc calibrator (a per-sample temperature) on a
    validation set: it lowers confidence on wrong predictions and raises it on
    right ones, unlike the NLL, which also rewards mass on the true class of a
    wrong prediction. It is not a training loss for the classifier (the
    correctness is a constant), so it is not a registry ``loss``.

    .. math::
        \hat p_i = \max_k \operatorname{softmax}(z_i / \tau_i)_k,\qquad
        c_i = \mathbb{1}[\arg\max_k z_{ik} = y_i],\qquad
        \ell_i = -\big[c_i \log \hat p_i + (1 - c_i)\log(1 - \hat p_i)\big]

    computed in log space: :math:`\log \hat p = -\log\sum_k e^{(z_k - z_{\max})/\tau}` and
    :math:`\log(1 - \hat p) = \operatorname{logsumexp}_{k \ne k^\star}(z_k/\tau) - \operatorname{logsumexp}_k(z_k/\tau)`,
    so it stays finite for confidences that round to 1. The top class
    :math:`k^\star` is ``argmax`` (lowest id on ties); :math:`\tau > 0` leaves it unchanged.

    Args:
        logits: float tensor ``(N, C)``, ``C >= 2``.
        target: int tensor ``(N,)`` of class ids in ``[0, C)``.
        temperature: positive float, 0-D tensor, or ``(N,)`` tensor of per-sample temperatures.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        validate_args: check finiteness, label range and positivity (forces a device sync).

    Returns:
        ``(N,)`` per-sample losses for ``"none"``, else a scalar; float32 for half-precision inputs.
        Differentiable in ``logits`` and ``temperature``.

    Raises:
        ValueError: on malformed ``logits``/``target``, a non-positive or mis-shaped
            ``temperature``, or an unknown ``reduction``.

    References:
        [80] Liu et al., *Optimizing Calibration by Gaining Aware of Prediction Correctness*, 2024.

    Example:
        >>> z = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
        >>> correctness_aware_loss(z, torch.tensor([0, 1]), 1.0, reduction="none")  # -log p, -log(1-p)
        tensor([0.1269, 2.1269])
    """
    check_logits(logits, validate_args=validate_args)
    check_class_target(target, logits.shape[1], logits.shape[0], validate_args=validate_args)
    temperature = _check_temperature(temperature, logits.shape[0], validate_args=validate_args)
    check_reduction(reduction)
    dtype = compute_dtype(logits)
    z = logits.to(dtype)
    tau = temperature.to(dtype) if isinstance(temperature, Tensor) else torch.tensor(temperature, dtype=dtype)
    z = z / (tau.unsqueeze(-1) if tau.ndim == 1 else tau)
    top = z.argmax(dim=-1, keepdim=True)
    lse = torch.logsumexp(z, dim=-1)
    log_conf = z.gather(-1, top).squeeze(-1) - lse
    log_rest = torch.logsumexp(z.scatter(-1, top, float("-inf")), dim=-1) - lse
    correct = (top.squeeze(-1) == target).to(dtype)
    per_sample = -(correct * log_conf + (1.0 - correct) * log_rest)
    return reduce_loss(per_sample, reduction)


def logit_statistics(logits: Tensor, *, top_k: int = 3) -> Tensor:
    """Per-sample statistics ``(N, top_k + 4)`` a calibrator reads: sorted top-k probs, entropy, max, gap, logsumexp.

    Example:
        >>> logit_statistics(torch.tensor([[2.0, 0.0]]), top_k=2).shape
        torch.Size([1, 6])
    """
    z = logits.detach().to(compute_dtype(logits))
    log_p = z.log_softmax(dim=-1)
    top = z.topk(min(2, z.shape[1]), dim=-1).values
    probs = log_p.exp()
    sorted_p = probs.topk(min(top_k, z.shape[1]), dim=-1).values
    if sorted_p.shape[1] < top_k:  # fewer classes than top_k: pad with zero probabilities
        sorted_p = F.pad(sorted_p, (0, top_k - sorted_p.shape[1]))
    entropy = -(probs * log_p).sum(dim=-1, keepdim=True)
    return torch.cat([sorted_p, entropy, top[:, :1], top[:, :1] - top[:, 1:2],
                      torch.logsumexp(z, dim=-1, keepdim=True)], dim=-1)


def _view_statistics(logits: Tensor, view: Tensor, top_k: int) -> Tensor:
    """A view's statistics plus agreement with the original argmax and its probability of that class."""
    top = logits.argmax(dim=-1, keepdim=True)
    v = view.detach().to(compute_dtype(view))
    agree = (v.argmax(dim=-1, keepdim=True) == top).to(v.dtype)
    p_top = v.softmax(dim=-1).gather(-1, top)
    return torch.cat([logit_statistics(v, top_k=top_k), agree, p_top], dim=-1)


class CorrectnessAwareCalibrator(nn.Module):
    r"""A per-sample temperature :math:`\tau(x)` from logit statistics, trained with :func:`correctness_aware_loss` [80].

    Use it after temperature scaling fails to separate right from wrong
    predictions: one global ``T`` rescales all confidences alike, while
    :math:`\tau(x)` can soften only the samples that look wrong (a small
    top-1/top-2 gap, views that disagree). Fit it on validation logits, apply
    it to test logits; accuracy is unchanged.

    .. math::
        \tau(x) = \tau_{\min} + \operatorname{softplus}\big(\mathrm{MLP}(s(x))\big),\qquad
        \mathrm{forward}(z) = z / \tau(x)

    where :math:`s(x)` are the standardised statistics of the sample's logits
    (and of each view's, see the module docstring), and the MLP is trained on
    :math:`\frac1N\sum_i \ell_i` of :func:`correctness_aware_loss`.

    Args:
        hidden: width of the MLP's one hidden layer, an integer ``>= 1``.
        top_k: how many sorted probabilities to read, an integer ``>= 1``.
        tau_min: smallest temperature, a positive float.

    Raises:
        ValueError: on bad hyper-parameters, or (in :meth:`fit`, :meth:`forward`)
            malformed logits, views or a view count that differs from the fit.

    References:
        [80] Liu et al., *Optimizing Calibration by Gaining Aware of Prediction Correctness*, 2024.

    Example:
        >>> z = torch.tensor([[3.0, 0.0], [0.5, 0.0], [0.0, 3.0], [0.0, 0.5]])
        >>> cal = CorrectnessAwareCalibrator().fit(z, torch.tensor([0, 1, 1, 0]), epochs=50)
        >>> bool((cal(z).argmax(-1) == z.argmax(-1)).all())
        True
    """

    def __init__(self, *, hidden: int = 16, top_k: int = 3, tau_min: float = 0.05) -> None:
        super().__init__()
        self.hidden = check_number(hidden, "hidden", low=1, integer=True)
        self.top_k = check_number(top_k, "top_k", low=1, integer=True)
        self.tau_min = check_number(tau_min, "tau_min", low=0.0, low_open=True)
        self.n_views: int | None = None
        self.num_classes: int | None = None
        self.net: nn.Sequential | None = None
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("std", torch.ones(0))

    def _features(self, logits: Tensor, views: Sequence[Tensor] | None) -> Tensor:
        views = _check_views(views, logits)
        if self.n_views is not None and len(views) != self.n_views:
            fail("views", f"{self.n_views} view(s), as at fit time", f"{len(views)}")
        parts = [logit_statistics(logits, top_k=self.top_k)]
        parts += [_view_statistics(logits, v, self.top_k) for v in views]
        return torch.cat(parts, dim=-1).float()

    def temperatures(self, logits: Tensor, views: Sequence[Tensor] | None = None) -> Tensor:
        """Per-sample temperatures ``(N,)``, each ``> tau_min``."""
        if self.net is None:
            raise RuntimeError("CorrectnessAwareCalibrator is not fitted: call fit(logits, target) first.")
        check_logits(logits)
        if logits.shape[1] != self.num_classes:
            fail("logits", f"of shape (N, {self.num_classes}) as at fit time", f"shape {tuple(logits.shape)}")
        s = (self._features(logits, views) - self.mean) / self.std
        return self.tau_min + F.softplus(self.net(s).squeeze(-1))

    def fit(self, logits: Tensor, target: Tensor, *, views: Sequence[Tensor] | None = None, epochs: int = 300,
            lr: float = 1e-2, weight_decay: float = 1e-3,
            generator: torch.Generator | None = None) -> CorrectnessAwareCalibrator:
        """Train on validation ``logits (N, C)``, ``target (N,)`` and optional ``views``; return ``self``.

        Full-batch Adam for ``epochs`` steps; the initial weights come from
        ``generator`` (a CPU generator; seed 0 when ``None``), so a fit is deterministic.
        """
        check_logits(logits)
        check_class_target(target, logits.shape[1], logits.shape[0])
        epochs = check_number(epochs, "epochs", low=1, integer=True)
        lr = check_number(lr, "lr", low=0.0, low_open=True)
        weight_decay = check_number(weight_decay, "weight_decay", low=0.0)
        if generator is not None and not isinstance(generator, torch.Generator):
            fail("generator", "a torch.Generator or None", type(generator).__name__)
        self.n_views, self.num_classes = None, logits.shape[1]
        feats = self._features(logits, views)
        self.n_views = len(views or ())
        self.mean = feats.mean(dim=0)
        self.std = feats.std(dim=0, unbiased=False).clamp_min(1e-6) if feats.shape[0] > 1 else torch.ones_like(
            self.mean)
        self.net = _init_mlp(feats.shape[1], self.hidden, self.tau_min, generator).to(feats.device)
        s = (feats - self.mean) / self.std
        z, y = logits.detach().float(), target.detach()
        opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        with torch.enable_grad():
            for _ in range(epochs):
                opt.zero_grad(set_to_none=True)
                tau = self.tau_min + F.softplus(self.net(s).squeeze(-1))
                correctness_aware_loss(z, y, tau, validate_args=False).backward()
                opt.step()
        return self

    def forward(self, logits: Tensor, views: Sequence[Tensor] | None = None) -> Tensor:
        """``logits / tau(x)``: shape ``(N, C)``, dtype of ``logits``, argmax unchanged."""
        return logits / self.temperatures(logits, views).to(logits.dtype).unsqueeze(-1)


def _check_views(views: Any, logits: Tensor) -> list[Tensor]:
    if views is None:
        return []
    if isinstance(views, Tensor) or not isinstance(views, (list, tuple)):
        fail("views", "None or a list of (N, C) logits tensors", type(views).__name__)
    for i, v in enumerate(views):
        check_logits(v, f"views[{i}]")
        if v.shape != logits.shape:
            fail(f"views[{i}]", f"of shape {tuple(logits.shape)} like `logits`", f"shape {tuple(v.shape)}")
    return list(views)


def _init_mlp(d: int, hidden: int, tau_min: float, generator: torch.Generator | None) -> nn.Sequential:
    """``Linear -> ReLU -> Linear``, uniform fan-in init from ``generator``; the output bias makes tau start at 1."""
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    with torch.no_grad():
        for layer in (net[0], net[2]):
            bound = layer.in_features ** -0.5
            layer.weight.copy_(torch.rand(layer.weight.shape, generator=gen) * 2 * bound - bound)
            layer.bias.copy_(torch.rand(layer.bias.shape, generator=gen) * 2 * bound - bound)
        net[2].weight.mul_(0.01)
        # softplus(b) = 1 - tau_min gives tau = 1 (or near tau_min when tau_min >= 1)
        target = max(1.0 - tau_min, 1e-3)
        net[2].bias.fill_(target + torch.log(-torch.expm1(torch.tensor(-target))).item())
    return net
