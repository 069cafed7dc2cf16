"""alpha_bn [348]: limit cases against eval-mode BN and F.batch_norm, the mixing formula by hand, exact restore."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslab.calibration import alpha_bn


def _trained_bn(bn: nn.Module, seed: int = 0) -> nn.Module:
    """Give a BN layer non-trivial running stats and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(bn.num_features, generator=g))
        bn.bias.copy_(torch.randn(bn.num_features, generator=g))
    return bn


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 5 * 5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    net.train()
    for _ in range(3):  # a few train-mode passes: running stats away from (0, 1)
        net(torch.randn(16, 2, 5, 5) * 2 + 1)
    return net


CASES = [(nn.BatchNorm1d, (7, 3)), (nn.BatchNorm1d, (7, 3, 5)), (nn.BatchNorm2d, (7, 3, 4, 5)),
         (nn.BatchNorm3d, (7, 3, 2, 3, 4))]


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("cls", "shape"), CASES)
def test_alpha_one_is_eval_mode_bn_exactly(cls, shape):
    bn = _trained_bn(cls(3)).train()  # train mode on purpose: alpha_bn must still read running stats
    x = torch.randn(*shape) * 3 + 2
    expected = copy.deepcopy(bn).eval()(x)
    with alpha_bn(bn, 1.0):
        got = bn(x)
    assert torch.equal(got, expected)


@pytest.mark.parametrize(("cls", "shape"), CASES)
def test_alpha_zero_is_batch_statistics(cls, shape):
    bn = _trained_bn(cls(3)).eval()
    x = torch.randn(*shape) * 3 + 2
    # Independent: F.batch_norm in training mode with no running buffers (nothing updated).
    expected = F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
    with alpha_bn(bn, 0.0):
        got = bn(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.3, 0.9])
def test_intermediate_alpha_matches_the_formula_by_hand(alpha):
    bn = _trained_bn(nn.BatchNorm1d(2, eps=1e-3)).eval()
    x = torch.tensor([[0.0, 1.0], [2.0, -1.0], [4.0, 3.0]], dtype=torch.float64)
    bn = bn.double()
    rm, rv = bn.running_mean.tolist(), bn.running_var.tolist()
    w, b = bn.weight.tolist(), bn.bias.tolist()
    with alpha_bn(bn, alpha):
        got = bn(x)
    for c in range(2):
        col = x[:, c].tolist()
        mu_t = sum(col) / 3
        var_t = sum((v - mu_t) ** 2 for v in col) / 3  # biased
        mu = alpha * rm[c] + (1 - alpha) * mu_t
        var = alpha * rv[c] + (1 - alpha) * var_t
        for i in range(3):
            want = w[c] * (col[i] - mu) / (var + 1e-3) ** 0.5 + b[c]
            assert got[i, c].item() == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_mix_sits_between_the_limits_in_the_statistics():
    # For one channel without affine, y = (x - mu) / sd: at alpha the centre is the formula's mu.
    bn = nn.BatchNorm1d(1, affine=False, eps=0.0).eval()
    bn.running_mean.fill_(10.0)
    x = torch.tensor([[0.0], [2.0]], dtype=torch.float32)  # mu_t = 1, var_t = 1
    with alpha_bn(bn, 0.5):
        y = bn(x)
    # mu = 5.5, var = 0.5 * 1 + 0.5 * 1 = 1
    torch.testing.assert_close(y, torch.tensor([[-5.5], [-3.5]]))


def test_model_is_bit_identical_afterwards_and_hooks_are_gone():
    net = _bn_net()
    net.train()
    net[4].eval()  # a mixed-mode model: modes must come back per module
    modes = [m.training for m in net.modules()]
    before = _state(net)
    x = torch.randn(8, 2, 5, 5)
    ref = copy.deepcopy(net).eval()(x)
    with alpha_bn(net, 0.5) as inner:
        assert inner is net
        mixed = net(x)
        assert all(not m.training for m in net.modules() if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d))
    assert not torch.equal(mixed, ref)
    assert _same_state(_state(net), before)  # running stats and num_batches_tracked untouched
    assert [m.training for m in net.modules()] == modes
    assert all(not m._forward_hooks for m in net.modules())
    assert torch.equal(net.eval()(x), ref)


def test_restores_when_the_body_raises():
    net = _bn_net().train()
    before = _state(net)
    with pytest.raises(RuntimeError, match="boom"):
        with alpha_bn(net, 0.0):
            net(torch.randn(4, 2, 5, 5))
            raise RuntimeError("boom")
    assert _same_state(_state(net), before)
    assert all(m.training for m in net.modules())
    assert all(not m._forward_hooks for m in net.modules())


def test_gradients_flow_through_the_mixed_statistics():
    net = _bn_net().eval()
    x = torch.randn(8, 2, 5, 5, requires_grad=True)
    with alpha_bn(net, 0.5):
        net(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert net[1].weight.grad is not None


def test_untracked_bn_layers_are_left_alone():
    net = nn.Sequential(nn.BatchNorm1d(3, track_running_stats=False), nn.Linear(3, 3), nn.BatchNorm1d(3))
    _trained_bn(net[2])
    net.eval()
    x = torch.randn(6, 3)
    with alpha_bn(net, 0.0):
        got = net(x)
    h = net[1](F.batch_norm(x, None, None, net[0].weight, net[0].bias, training=True))
    torch.testing.assert_close(got, F.batch_norm(h, None, None, net[2].weight, net[2].bias, training=True))


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "0.5", True, None])
def test_bad_alpha_raises(alpha):
    with pytest.raises(ValueError, match="`alpha`"):
        alpha_bn(nn.BatchNorm1d(2), alpha)


@pytest.mark.parametrize("model", [nn.Linear(3, 2), nn.Sequential(nn.BatchNorm1d(3, track_running_stats=False)),
                                   "not a module"])
def test_model_without_tracked_bn_raises(model):
    with pytest.raises(ValueError, match="`model`"):
        alpha_bn(model, 0.5)
