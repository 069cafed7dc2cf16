"""DPO / RPO: the formula, its identities and limits, the from-logps core, and validation."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from losslab.engine.spec import SpecError, parse_spec
from losslab.losses import DPOLoss, RPOLoss, dpo_loss, rpo_loss
from losslab.losses.preference import preference_loss_from_logps
from loss_inputs import random_inputs
from specs import TINY


def _batch(seed=0, n=10, c=6, dtype=torch.float64):
    logits, chosen = random_inputs(n=n, c=c, seed=seed, dtype=dtype)
    ref, rejected = random_inputs(n=n, c=c, seed=seed + 100, dtype=dtype)
    return logits, chosen, rejected, ref


def _lp(logits, y):
    return torch.log_softmax(logits.double(), -1).gather(1, y[:, None]).squeeze(1)


def _reference(logits, chosen, rejected, ref, beta, beta_l=None, eta=0.0):
    """DPO (+ SFT) written out independently in float64: -logsigmoid of the margin."""
    beta_l = beta if beta_l is None else beta_l
    margin = beta * (_lp(logits, chosen) - _lp(ref, chosen)) - beta_l * (_lp(logits, rejected) - _lp(ref, rejected))
    return -F.logsigmoid(margin) - eta * _lp(logits, chosen)


@pytest.mark.parametrize(("beta", "beta_l", "eta"), [(0.1, None, 0.0), (1.0, None, 0.5), (0.5, 2.0, 1.0),
                                                     (3.0, 0.2, 0.0)])
def test_matches_the_independent_formula(beta, beta_l, eta):
    logits, chosen, rejected, ref = _batch()
    out = rpo_loss(logits, chosen, rejected, ref, beta=beta, beta_rejected=beta_l, eta=eta, reduction="none")
    torch.testing.assert_close(out, _reference(logits, chosen, rejected, ref, beta, beta_l, eta))
    if eta == 0.0:
        torch.testing.assert_close(dpo_loss(logits, chosen, rejected, ref, beta=beta, beta_rejected=beta_l,
                                            reduction="none"), out)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_rpo_at_eta_zero_is_dpo_exactly(reduction):
    logits, chosen, rejected, ref = _batch(seed=1)
    w = torch.rand(10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = rpo_loss(logits, chosen, rejected, ref, beta=0.7, eta=0.0, reduction=reduction, weight=w)
    b = dpo_loss(logits, chosen, rejected, ref, beta=0.7, reduction=reduction, weight=w)
    assert torch.equal(a, b)


def test_rpo_adds_eta_times_the_chosen_nll():
    logits, chosen, rejected, ref = _batch(seed=2)
    gap = rpo_loss(logits, chosen, rejected, ref, eta=2.5, reduction="none") \
        - dpo_loss(logits, chosen, rejected, ref, reduction="none")
    torch.testing.assert_close(gap, 2.5 * F.cross_entropy(logits, chosen, reduction="none"))


def test_unset_beta_rejected_equals_beta():
    logits, chosen, rejected, ref = _batch(seed=3)
    assert torch.equal(dpo_loss(logits, chosen, rejected, ref, beta=0.3),
                       dpo_loss(logits, chosen, rejected, ref, beta=0.3, beta_rejected=0.3))


@pytest.mark.parametrize("eta", [0.0, 0.8])
def test_from_logps_core_agrees_with_the_logits_version(eta):
    logits, chosen, rejected, ref = _batch(seed=4)
    w = torch.arange(10, dtype=torch.float64)
    core = preference_loss_from_logps(_lp(logits, chosen), _lp(logits, rejected), _lp(ref, chosen), _lp(ref, rejected),
                                      beta=0.4, beta_rejected=0.9, sft_weight=eta, weight=w)
    torch.testing.assert_close(core, rpo_loss(logits, chosen, rejected, ref, beta=0.4, beta_rejected=0.9, eta=eta,
                                              weight=w))


def test_reference_is_detached():
    logits, chosen, rejected, ref = _batch(seed=5)
    logits.requires_grad_(True)
    ref.requires_grad_(True)
    rpo_loss(logits, chosen, rejected, ref).backward()
    assert ref.grad is None and torch.isfinite(logits.grad).all()
    lp_c, lp_r, rf_c, rf_r = (torch.randn(4, dtype=torch.float64, requires_grad=True) for _ in range(4))
    preference_loss_from_logps(lp_c, lp_r, rf_c, rf_r, sft_weight=1.0).backward()
    assert rf_c.grad is None and rf_r.grad is None and lp_c.grad is not None


def test_swapping_chosen_and_rejected_flips_the_margin():
    # softplus(-m) - softplus(m) = -m, with m = beta * (r_w - r_l).
    logits, chosen, rejected, ref = _batch(seed=6)
    beta = 0.6
    m = beta * ((_lp(logits, chosen) - _lp(ref, chosen)) - (_lp(logits, rejected) - _lp(ref, rejected)))
    diff = dpo_loss(logits, chosen, rejected, ref, beta=beta, reduction="none") \
        - dpo_loss(logits, rejected, chosen, ref, beta=beta, reduction="none")
    torch.testing.assert_close(diff, -m)


def test_log_two_at_the_reference_and_as_beta_vanishes():
    logits, chosen, rejected, ref = _batch(seed=7)
    torch.testing.assert_close(dpo_loss(logits, chosen, rejected, logits.clone(), beta=2.0, reduction="none"),
                               torch.full((10,), math.log(2.0), dtype=torch.float64))
    small = dpo_loss(logits, chosen, rejected, ref, beta=1e-8, beta_rejected=1e-8, reduction="none")
    torch.testing.assert_close(small, torch.full((10,), math.log(2.0), dtype=torch.float64), rtol=0, atol=1e-7)


def test_chosen_equal_to_rejected_is_allowed():
    logits, chosen, _, ref = _batch(seed=8)
    torch.testing.assert_close(dpo_loss(logits, chosen, chosen, ref, reduction="none"),
                               torch.full((10,), math.log(2.0), dtype=torch.float64))


@pytest.mark.parametrize("scale", [100.0, 1e4])
def test_finite_at_extreme_logits(scale):
    logits, chosen, rejected, ref = _batch(seed=9, n=32, dtype=torch.float32)
    logits = (torch.sign(logits) * scale).requires_grad_(True)
    ref = -torch.sign(ref) * scale
    out = rpo_loss(logits, chosen, rejected, ref, beta=5.0, eta=1.0)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(logits.grad).all()


def test_gradcheck_float64():
    logits, chosen, rejected, ref = _batch(seed=10, n=4, c=3)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: rpo_loss(z, chosen, rejected, ref, beta=0.5, beta_rejected=1.5, eta=0.3), (logits,))


def test_modules_equal_functions_and_half_precision():
    logits, chosen, rejected, ref = _batch(seed=11)
    torch.testing.assert_close(DPOLoss(beta=0.2, beta_rejected=0.4)(logits, chosen, rejected, ref),
                               dpo_loss(logits, chosen, rejected, ref, beta=0.2, beta_rejected=0.4))
    torch.testing.assert_close(RPOLoss(eta=0.5, reduction="sum")(logits, chosen, rejected, ref),
                               rpo_loss(logits, chosen, rejected, ref, eta=0.5, reduction="sum"))
    with pytest.raises(ValueError, match="eta"):
        RPOLoss(eta=-1.0)
    with pytest.raises(ValueError, match="no_such"):
        DPOLoss(no_such=1.0)
    out = rpo_loss(logits.half(), chosen, rejected, ref.half())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, rpo_loss(logits.half().float(), chosen, rejected, ref.half().float()),
                               rtol=1e-3, atol=1e-3)


def test_bad_inputs_name_the_argument():
    logits, chosen, rejected, ref = _batch(seed=12)
    nan = logits.clone()
    nan[0, 0] = math.nan
    bad = chosen.clone()
    bad[0] = 6
    cases = [
        ((nan, chosen, rejected, ref), {}, "`logits`"),
        ((logits, bad, rejected, ref), {}, "`chosen`"),
        ((logits, chosen, bad, ref), {}, "`rejected`"),
        ((logits, chosen[:-1], rejected, ref), {}, "`chosen`"),
        ((logits, chosen, rejected.float(), ref), {}, "`rejected`"),
        ((logits, chosen, rejected, ref[:, :-1]), {}, "`ref_logits`"),
        ((logits, chosen, rejected, nan), {}, "`ref_logits`"),
        ((logits, chosen, rejected, ref), {"beta": 0.0}, "`beta`"),
        ((logits, chosen, rejected, ref), {"beta_rejected": -1.0}, "`beta_rejected`"),
        ((logits, chosen, rejected, ref), {"eta": -0.1}, "`eta`"),
        ((logits, chosen, rejected, ref), {"reduction": "avg"}, "`reduction`"),
        ((logits, chosen, rejected, ref), {"weight": -torch.ones(10, dtype=torch.float64)}, "`weight`"),
    ]
    for args, kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            rpo_loss(*args, **kwargs)
    lp = torch.zeros(3)
    for args, match in [((lp, lp, lp, lp[:2]), "`ref_rejected`"), ((lp, lp.long(), lp, lp), "`policy_rejected`"),
                        ((lp[:0], lp[:0], lp[:0], lp[:0]), "`policy_chosen`"),
                        ((lp, lp, torch.full((3,), math.inf), lp), "`ref_chosen`"),
                        ((lp[None], lp, lp, lp), "`policy_chosen`")]:
        with pytest.raises(ValueError, match=match):
            preference_loss_from_logps(*args)
    with pytest.raises(ValueError, match="`sft_weight`"):
        preference_loss_from_logps(lp, lp, lp, lp, sft_weight=-1.0)


@pytest.mark.parametrize("name", ["dpo", "rpo"])
def test_engine_refuses_it_with_a_clear_spec_error(name):
    spec = copy.deepcopy(TINY)
    spec["objectives"] = [{"name": name}]
    with pytest.raises(SpecError, match=f"loss '{name}' needs preference pairs"):
        parse_spec(spec)
