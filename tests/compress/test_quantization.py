"""Properties of uniform fake quantization, weight quantization, MAC counting and Pareto fronts [41]."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from losslab.compress.quantization import (
    bit_ops,
    count_macs,
    fake_quantize,
    pareto_front,
    quantize_weights,
    quantized_activations,
    quantized_weights,
)

BITS = (2, 3, 4, 8)
MODES = [dict(symmetric=s, per_channel=p) for s, p in itertools.product((True, False), (True, False))]


def _x(seed: int = 0, shape=(6, 5, 3)) -> torch.Tensor:
    """Channels (dim 0) of very different ranges."""
    g = torch.Generator().manual_seed(seed)
    spread = torch.rand((shape[0],) + (1,) * (len(shape) - 1), generator=g, dtype=torch.float64) * 10
    return torch.randn(shape, generator=g, dtype=torch.float64) * spread


def _scale(x: torch.Tensor, bits: int, symmetric: bool, per_channel: bool) -> torch.Tensor:
    """The step s of the grid, by an independent (numpy-free, loop-based) formula, broadcast to x."""
    rows = list(x) if per_channel else [x]
    scales = []
    for r in rows:
        if symmetric:
            s = float(r.abs().max()) / (2 ** (bits - 1) - 1)
        else:
            s = (max(float(r.max()), 0.0) - min(float(r.min()), 0.0)) / (2 ** bits - 1)
        scales.append(torch.full_like(r, s))
    return torch.stack(scales) if per_channel else scales[0]


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"sym={m['symmetric']},pc={m['per_channel']}")
def test_error_is_at_most_half_a_step_and_quantizing_is_idempotent(bits, mode):
    for seed in range(3):
        x = _x(seed)
        q = fake_quantize(x, bits, **mode)
        s = _scale(x, bits, mode["symmetric"], mode["per_channel"])
        assert bool(((q - x).abs() <= s / 2 * (1 + 1e-9) + 1e-12).all())
        torch.testing.assert_close(fake_quantize(q, bits, **mode), q, rtol=1e-12, atol=1e-12)
        # the values are integer multiples of the step (shifted by the zero point when asymmetric)
        k = q / s
        if mode["symmetric"]:
            torch.testing.assert_close(k, k.round(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("symmetric", [True, False])
def test_number_of_distinct_levels(bits, symmetric):
    x = torch.rand(4000, dtype=torch.float64) * 6 - 2  # uniform on [-2, 4]: asymmetric must shift its grid
    levels = fake_quantize(x, bits, symmetric=symmetric).unique().numel()
    grid = 2 ** bits - 1 if symmetric else 2 ** bits
    assert levels <= grid
    # a dense uniform sample fills the asymmetric grid; the symmetric one wastes its negative side below -2
    assert levels >= (grid if not symmetric else (2 ** (bits - 1) - 1) * 3 // 2)


def test_symmetric_grid_is_the_paper_formula_on_a_hand_example():
    w = torch.tensor([[0.3, -0.6, 0.05], [4.0, 1.0, -2.1]])
    s = torch.tensor([[0.2], [4.0 / 3.0]])
    expected = torch.clamp(torch.round(w / s), -3, 3) * s
    torch.testing.assert_close(fake_quantize(w, 3, per_channel=True), expected)


@pytest.mark.parametrize("symmetric", [True, False])
def test_per_channel_scales_are_independent(symmetric):
    x = _x(1)
    q = fake_quantize(x, 4, symmetric=symmetric, per_channel=True)
    y = x.clone()
    y[2] *= 5.0
    qy = fake_quantize(y, 4, symmetric=symmetric, per_channel=True)
    torch.testing.assert_close(qy[2], 5.0 * q[2], rtol=1e-12, atol=1e-12)
    keep = [i for i in range(x.shape[0]) if i != 2]
    assert torch.equal(qy[keep], q[keep])
    # per-tensor, by contrast, couples the channels through the shared range
    y[2] *= 100.0
    per_tensor = fake_quantize(y, 4, symmetric=symmetric)[keep]
    assert not torch.equal(per_tensor, fake_quantize(x, 4, symmetric=symmetric)[keep])


def test_channel_dim_selects_the_statistics():
    x = _x(2, (3, 7))
    by_column = fake_quantize(x.T, 3, per_channel=True).T
    torch.testing.assert_close(fake_quantize(x, 3, per_channel=True, dim=1), by_column)
    torch.testing.assert_close(fake_quantize(x, 3, per_channel=True, dim=-1), fake_quantize(x, 3, per_channel=True, dim=1))


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_zero_channels_and_zero_tensors_stay_zero(mode):
    x = _x(3)
    x[1] = 0.0
    q = fake_quantize(x, 4, **mode)
    assert bool(torch.isfinite(q).all())
    if mode["per_channel"]:
        assert torch.equal(q[1], torch.zeros_like(q[1]))
    z = fake_quantize(torch.zeros(4, 3), 4, **mode)
    assert torch.equal(z, torch.zeros(4, 3))
    # zero is on the grid in every mode
    assert bool((q[x == 0] == 0).all())


@pytest.mark.parametrize("symmetric", [True, False])
def test_sixteen_bits_is_nearly_lossless(symmetric):
    x = _x(4)
    q = fake_quantize(x, 16, symmetric=symmetric, per_channel=True)
    rel = (q - x).abs().amax(dim=(1, 2)) / x.abs().amax(dim=(1, 2))
    assert float(rel.max()) <= 1e-4


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_straight_through_gradient_is_exactly_one_and_forward_is_unchanged(mode):
    x = _x(5).requires_grad_(True)
    out = fake_quantize(x, 3, **mode)
    assert torch.equal(out.detach(), fake_quantize(x.detach(), 3, **mode))
    (g,) = torch.autograd.grad((out * 1.0).sum(), x)
    assert torch.equal(g, torch.ones_like(x))
    cot = torch.randn_like(x)
    (g2,) = torch.autograd.grad(out, x, cot)
    assert torch.equal(g2, cot)
    assert not fake_quantize(x, 3, ste=False, **mode).requires_grad


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes_are_kept_and_half_is_computed_in_float32(dtype):
    x = _x(6).to(dtype)
    q = fake_quantize(x, 4, per_channel=True)
    assert q.dtype == dtype
    if dtype in (torch.float16, torch.bfloat16):
        assert torch.equal(q, fake_quantize(x.float(), 4, per_channel=True).to(dtype))
    else:
        torch.testing.assert_close(q, fake_quantize(x.double(), 4, per_channel=True).to(dtype))


def test_bad_inputs_name_the_argument():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"`bits`.*\[2, 16\].*2\^0 - 1 = 0"):
        fake_quantize(x, 1)
    for bad in (0, 17, 4.5, True, "8"):
        with pytest.raises(ValueError, match="`bits`"):
            fake_quantize(x, bad)
    with pytest.raises(ValueError, match="`x`.*floating"):
        fake_quantize(torch.ones(3, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="`x`.*torch.Tensor"):
        fake_quantize([1.0, 2.0], 4)
    with pytest.raises(ValueError, match="`x`.*non-empty"):
        fake_quantize(torch.ones(0), 4)
    with pytest.raises(ValueError, match="`x`.*finite"):
        fake_quantize(torch.tensor([1.0, float("nan")]), 4)
    with pytest.raises(ValueError, match=r"`dim`.*\[-2, 1\]"):
        fake_quantize(x, 4, per_channel=True, dim=2)
    with pytest.raises(ValueError, match="`x`.*1-D"):
        fake_quantize(torch.tensor(1.0), 4, per_channel=True)
    with pytest.raises(ValueError, match="`symmetric`.*True or False"):
        fake_quantize(x, 4, symmetric=1)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 5), nn.ReLU(), nn.Linear(5, 3))


def test_quantize_weights_quantizes_every_layer_per_output_channel_in_place():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    errors = quantize_weights(net, 3)
    assert sorted(errors) == ["0", "2", "4", "6"]
    for name in errors:
        w, w0 = net.get_submodule(name).weight, before[f"{name}.weight"]
        assert torch.equal(w, fake_quantize(w0, 3, per_channel=True))
        for row in w:
            assert row.unique().numel() <= 7
        assert errors[name] == pytest.approx(float((w.detach() - w0).abs().max()))
        assert torch.equal(net.get_submodule(name).bias, before[f"{name}.bias"])  # biases stay float


def test_quantized_weights_restores_bit_identically_even_after_an_error():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(2, 2, 6, 6)
    with quantized_weights(net, 2, per_channel=False, symmetric=False) as errors:
        assert all(e > 0 for e in errors.values())
        assert not torch.equal(net[0].weight, before["0.weight"])
        net(x)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    with pytest.raises(RuntimeError, match="boom"):
        with quantized_weights(net, 4):
            raise RuntimeError("boom")
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="`model`.*nn.Linear"):
        with quantized_weights(nn.ReLU(), 4):
            pass
    with pytest.raises(ValueError, match="`bits`"):
        quantize_weights(net, 32)


def test_quantized_activations_quantizes_layer_inputs_per_example_and_removes_its_hooks():
    layer = nn.Linear(8, 2)
    x = torch.rand(3, 8)
    x[1] *= 100.0  # a large example must not change the others' grid
    with quantized_activations(layer, 3):
        got = layer(x)
    expected = layer(torch.cat([fake_quantize(x[i:i + 1], 3, symmetric=False) for i in range(3)]))
    torch.testing.assert_close(got, expected)
    assert not layer._forward_pre_hooks
    torch.testing.assert_close(layer(x), nn.functional.linear(x, layer.weight, layer.bias))


def test_count_macs_matches_the_hand_count():
    net = _net()
    # conv1: 4 out ch x 6x6 positions x (2 in x 3x3); conv2 (groups 2): 4 x 4x4 x (2 x 3x3); fc: 64x5 + 5x3
    expected = 4 * 36 * 18 + 4 * 16 * 18 + 64 * 5 + 5 * 3
    net.train()
    assert count_macs(net, torch.randn(7, 2, 6, 6)) == expected
    assert net.training
    assert count_macs(nn.Conv1d(3, 2, 5), torch.randn(1, 3, 10)) == 2 * 6 * 15
    with pytest.raises(ValueError, match="`example_input`"):
        count_macs(net, torch.randn(0, 2, 6, 6))
    with pytest.raises(ValueError, match="`model`"):
        count_macs(nn.ReLU(), torch.randn(2, 3))


def test_bit_ops_is_macs_times_both_bit_widths():
    assert bit_ops(1000, 4, 8) == 32000
    assert bit_ops(1000, 32, 32) == 64 * bit_ops(1000, 4, 4)
    for kwargs, name in (({"macs": -1}, "macs"), ({"weight_bits": 0}, "weight_bits"),
                         ({"activation_bits": 65}, "activation_bits"), ({"weight_bits": 2.5}, "weight_bits")):
        args = {"macs": 10, "weight_bits": 4, "activation_bits": 4, **kwargs}
        with pytest.raises(ValueError, match=f"`{name}`"):
            bit_ops(**args)


def _brute_front(cost, score):
    n = len(cost)
    keep = [i for i in range(n)
            if not any(cost[j] <= cost[i] and score[j] >= score[i] and (cost[j], score[j]) != (cost[i], score[i])
                       for j in range(n))]
    return sorted(keep, key=lambda i: (cost[i], -score[i], i))


def test_pareto_front_matches_the_quadratic_definition_on_random_points():
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        n = int(torch.randint(1, 30, (1,), generator=g))
        # few distinct values, so ties in cost, in score and exact duplicates all occur
        cost = torch.randint(0, 8, (n,), generator=g).double().tolist()
        score = torch.randint(0, 8, (n,), generator=g).double().tolist()
        assert pareto_front(cost, score).tolist() == _brute_front(cost, score), (cost, score)
    c, a = torch.rand(100, generator=g), torch.rand(100, generator=g)
    assert pareto_front(c, a).tolist() == _brute_front(c.tolist(), a.tolist())


def test_pareto_front_ties_and_bad_inputs():
    assert pareto_front([1, 1, 2], [0.5, 0.5, 0.5]).tolist() == [0, 1]  # duplicates kept; equal score, more cost out
    assert pareto_front([1, 1], [0.4, 0.5]).tolist() == [1]  # equal cost, lower score out
    assert pareto_front(torch.tensor([3.0]), torch.tensor([0.1])).dtype == torch.long
    with pytest.raises(ValueError, match="`score`.*length 2"):
        pareto_front([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="`cost`.*non-empty"):
        pareto_front([], [])
    with pytest.raises(ValueError, match="`score`.*finite"):
        pareto_front([1.0, 2.0], [1.0, float("nan")])
    with pytest.raises(ValueError, match="`cost`.*1-D"):
        pareto_front(torch.ones(2, 2), torch.ones(2))
    with pytest.raises(ValueError, match="`cost`.*sequence"):
        pareto_front(3.0, [1.0])


def test_a_non_finite_weight_is_rejected_before_any_layer_changes():
    net = _net()
    with torch.no_grad():
        net[6].weight[0, 0] = float("inf")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="`x`.*finite"):
        quantize_weights(net, 4)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
