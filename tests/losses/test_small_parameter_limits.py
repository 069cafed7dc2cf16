"""The small-parameter limits that the registry fuzzing first found as NaN.

An open lower bound such as ``tau in (0, inf)`` admits values below a dtype's
smallest normal number, where ``x / tau`` or ``expm1(q x) / q`` round to 0/0.
Each of these losses now returns its analytic limit there, so the value is
checked against that limit computed independently.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import losslab.losses as L
from losslab.losses.reweighting import loss_reweighting_weights
from loss_inputs import random_inputs

TINY = (1e-40, 5e-324)


@pytest.mark.parametrize("q", TINY)
def test_gce_tiny_q_is_cross_entropy(q):
    logits, target = random_inputs(n=9, c=4, dtype=torch.float32)
    out = L.generalized_cross_entropy(logits, target, q=q, reduction="none")
    torch.testing.assert_close(out, F.cross_entropy(logits, target, reduction="none"))


@pytest.mark.parametrize("tau", TINY)
def test_kl_dro_tiny_tau_is_the_largest_loss(tau):
    logits, target = random_inputs(n=9, c=4, dtype=torch.float32)
    logits.requires_grad_(True)
    out = L.kl_dro_loss(logits, target, tau=tau)
    ce = F.cross_entropy(logits, target, reduction="none")
    torch.testing.assert_close(out, ce.max())
    (grad,) = torch.autograd.grad(out, logits)
    (ref,) = torch.autograd.grad(ce.max(), logits)
    torch.testing.assert_close(grad, ref)


def test_kl_dro_tiny_tau_ignores_zero_weight_samples():
    logits, target = random_inputs(n=6, c=3, dtype=torch.float32)
    weight = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    ce = F.cross_entropy(logits, target, reduction="none")
    out = L.kl_dro_loss(logits, target, tau=1e-40, weight=weight)
    torch.testing.assert_close(out, ce[weight > 0].max())


@pytest.mark.parametrize("lam", TINY)
def test_ldr_kl_tiny_lambda_is_the_crammer_singer_margin(lam):
    logits, target = random_inputs(n=9, c=4, dtype=torch.float64)
    out = L.ldr_kl_loss(logits, target, lam=lam, margin=1.0, reduction="none")
    onehot = F.one_hot(target, 4).double()
    margins = 1.0 * (1 - onehot) + logits - (logits * onehot).sum(1, keepdim=True)
    torch.testing.assert_close(out, margins.amax(1))


def test_ldr_kl_matches_the_direct_formula_at_moderate_lambda():
    logits, target = random_inputs(n=9, c=4, dtype=torch.float64)
    out = L.ldr_kl_loss(logits, target, lam=0.3, margin=2.0, reduction="none")
    onehot = F.one_hot(target, 4).double()
    margins = 2.0 * (1 - onehot) + logits - (logits * onehot).sum(1, keepdim=True)
    ref = 0.3 * (torch.log(torch.exp(margins / 0.3).mean(1)))
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("delta", (1e-126, 1e-3, 1.0, 7.0))
def test_quadratic_reweighting_does_not_depend_on_delta(delta):
    losses = torch.tensor([0.1, 2.0, 0.7, 1.3, 0.4])
    ref = loss_reweighting_weights(losses, strategy="quadratic", delta=1.0)
    torch.testing.assert_close(loss_reweighting_weights(losses, strategy="quadratic", delta=delta), ref)


def test_tiny_tau_reweighting_is_uniform_over_the_top_score():
    # linupper scores min(u + 1, 1) on the unit map u: every loss above the batch
    # midpoint (1.05 here: 2.0 and 1.3) ties at the top score, and tau -> 0 splits q over them.
    losses = torch.tensor([0.1, 2.0, 0.7, 1.3, 0.4])
    q = loss_reweighting_weights(losses, strategy="linupper", tau=1e-300)
    torch.testing.assert_close(q, torch.tensor([0.0, 0.5, 0.0, 0.5, 0.0]))
