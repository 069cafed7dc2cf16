"""Linear-mode-connectivity barrier: exact values, symmetry, layer-wise paths and the diagnostic contract."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from torch import Tensor, nn

from losslab.core.registry import REGISTRY
from losslab.core.seeding import seeded
from losslab.diagnostics.landscape import lmc_barrier, lmc_barrier_to_init
from losslab.models import build_mlp


class Scalar(nn.Module):
    """One weight ``w``; every sample's logit row is ``(w, 0)`` so a loss_fn can read ``w`` directly."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([self.w.expand(x.shape[0]), torch.zeros(x.shape[0], dtype=x.dtype)], dim=1)


def _concave(logits: Tensor, target: Tensor) -> Tensor:
    return 5.0 - logits[:, 0] ** 2  # L(w) = 5 - w^2, a downward parabola along any line in w


def _mlp(seed: int) -> nn.Module:
    with seeded(seed):
        return build_mlp((6,), 3, width=8, depth=2).double()


def _batch(seed: int = 0, n: int = 32) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def test_barrier_is_zero_between_a_model_and_itself():
    net = _mlp(0)
    x, y = _batch()
    for metric in ("loss", "error"):
        res = lmc_barrier(net, net, x, y, metric=metric, layerwise=True)
        assert res.barrier == 0.0
        assert all(b == 0.0 for b in res.layer_barriers.values())
        assert torch.equal(res.curve, res.curve[0].expand_as(res.curve))


@pytest.mark.parametrize(("a", "b"), [(1.0, 3.0), (-2.0, 0.5), (4.0, -4.0)])
def test_exact_parabola_barrier(a, b):
    # L(t) - chord(t) = t (1 - t) (a - b)^2, largest at t = 1/2 (on the 11-point grid).
    x, y = torch.zeros(4, 1, dtype=torch.float64), torch.zeros(4, dtype=torch.long)
    res = lmc_barrier(Scalar(a), Scalar(b), x, y, loss_fn=_concave, points=11)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(res.curve, 5.0 - ((1 - t) * a + t * b) ** 2)
    assert res.barrier == pytest.approx((a - b) ** 2 / 4, rel=1e-12)


def test_convex_path_has_no_barrier():
    x, y = torch.zeros(3, 1, dtype=torch.float64), torch.zeros(3, dtype=torch.long)
    res = lmc_barrier(Scalar(-1.0), Scalar(2.0), x, y, loss_fn=lambda z, _: z[:, 0] ** 2)
    assert res.barrier == 0.0


@pytest.mark.parametrize("metric", ["loss", "error"])
def test_symmetric_in_a_and_b(metric):
    a, b = _mlp(0), _mlp(1)
    x, y = _batch()
    ab, ba = lmc_barrier(a, b, x, y, metric=metric), lmc_barrier(b, a, x, y, metric=metric)
    torch.testing.assert_close(ab.curve, ba.curve.flip(0), rtol=1e-12, atol=1e-12)
    assert ab.barrier == pytest.approx(ba.barrier, abs=1e-12)


def test_accepts_a_state_dict_for_b():
    a, b = _mlp(0), _mlp(1)
    x, y = _batch()
    assert lmc_barrier(a, b, x, y).barrier == lmc_barrier(a, b.state_dict(), x, y).barrier


def test_error_metric_is_the_error_rate_at_the_ends():
    a, b = _mlp(0), _mlp(1)
    x, y = _batch()
    res = lmc_barrier(a, b, x, y, metric="error", points=3)
    with torch.no_grad():
        assert res.curve[0].item() == pytest.approx((a(x).argmax(1) != y).double().mean().item())
        assert res.curve[-1].item() == pytest.approx((b(x).argmax(1) != y).double().mean().item())


def test_layerwise_path_of_the_only_differing_layer_is_the_whole_path():
    a = _mlp(0)
    b = copy.deepcopy(a)
    with torch.no_grad():
        b.hidden[1].weight.add_(torch.randn_like(b.hidden[1].weight))
        b.hidden[1].bias.mul_(-3.0)
    x, y = _batch()
    res = lmc_barrier(a, b, x, y, layerwise=True)
    assert set(res.layer_curves) == {"hidden.0", "hidden.1", "head"}
    torch.testing.assert_close(res.layer_curves["hidden.1"], res.curve, rtol=0, atol=0)
    assert res.layer_barriers["hidden.1"] == res.barrier
    # Moving a layer that is equal in both models changes nothing: a flat curve at L(a).
    assert torch.all(res.layer_curves["head"] == res.curve[0])


def test_layerwise_end_is_the_hybrid_model():
    a, b = _mlp(0), _mlp(1)
    x, y = _batch()
    res = lmc_barrier(a, b, x, y, layerwise=True, points=4)
    hybrid = copy.deepcopy(a)
    hybrid.head.load_state_dict(b.head.state_dict())
    with torch.no_grad():
        expected = nn.functional.cross_entropy(hybrid(x), y).item()
    assert res.layer_curves["head"][-1].item() == pytest.approx(expected, rel=1e-12)
    assert res.layer_curves["head"][0].item() == pytest.approx(res.curve[0].item(), rel=1e-12)


def test_leaves_models_as_found():
    a, b = _mlp(0), _mlp(1)
    a.train()
    grads = [torch.full_like(p, 7.0) for p in a.parameters()]
    for p, g in zip(a.parameters(), grads):
        p.grad = g
    before = copy.deepcopy(a.state_dict())
    x, y = _batch()
    lmc_barrier(a, b, x, y, layerwise=True)
    assert a.training
    assert all(torch.equal(before[k], v) for k, v in a.state_dict().items())
    assert all(p.grad is g for p, g in zip(a.parameters(), grads))


def test_to_init_diagnostic():
    net = _mlp(0)
    init = copy.deepcopy(net.state_dict())
    x, y = _batch()
    out = lmc_barrier_to_init(net, x, y, init, layerwise=True)
    assert out["barrier"] == 0.0 and out["at_init"] == out["now"]
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    out = lmc_barrier_to_init(net, x, y, init, layerwise=True)
    ref = lmc_barrier(net, init, x, y, layerwise=True)
    assert out["barrier"] == ref.barrier
    assert out["layer_hidden_0"] == ref.layer_barriers["hidden.0"]
    assert set(out) == {"barrier", "at_init", "now", "layer_hidden_0", "layer_hidden_1", "layer_head"}
    assert all(isinstance(v, float) for v in out.values())


def test_registry_entry_matches_signature():
    entry = REGISTRY.get("diagnostic", "lmc_barrier_to_init")
    assert entry.obj is lmc_barrier_to_init and entry.papers == (291,)
    sig = inspect.signature(lmc_barrier_to_init)
    for name, spec in entry.hyper.items():
        assert sig.parameters[name].default == spec.default
    from losslab.diagnostics._base import DIAGNOSTIC_NAMES
    positional = [n for n, p in sig.parameters.items() if n not in entry.hyper]
    assert set(positional) <= set(DIAGNOSTIC_NAMES)


def test_bad_inputs():
    a, b = _mlp(0), _mlp(1)
    x, y = _batch()
    with pytest.raises(ValueError, match="`points`"):
        lmc_barrier(a, b, x, y, points=1)
    with pytest.raises(ValueError, match="`metric`"):
        lmc_barrier(a, b, x, y, metric="accuracy")
    with pytest.raises(ValueError, match="`layerwise`"):
        lmc_barrier(a, b, x, y, layerwise=1)
    with pytest.raises(ValueError, match="`model_b`"):
        lmc_barrier(a, build_mlp((6,), 3, width=5).double(), x, y)
    with pytest.raises(ValueError, match="`model_b`"):
        lmc_barrier(a, [1, 2], x, y)
    with pytest.raises(ValueError, match="`target`"):
        lmc_barrier(a, b, x, y[:, None])
    with pytest.raises(ValueError, match="batch size"):
        lmc_barrier(a, b, x, y[:5])
    with pytest.raises(ValueError, match="`initial_state`"):
        lmc_barrier_to_init(a, x, y, {"nope": torch.zeros(1)})
    bn = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="`model_a`.*BatchNorm"):
        lmc_barrier(bn, copy.deepcopy(bn), x.float(), y)


def _sgd(model: nn.Module, x: Tensor, y: Tensor, *, epochs: int, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(16):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model


def test_later_forks_are_linearly_connected_on_digits(one_thread):
    # [291] (after Frankle et al.): two SGD children of one parent, differing only in data order, have a
    # high barrier when forked at initialisation and (almost) none when forked ten epochs later.
    from losslab.data.digits import make_digits

    data = make_digits()
    x, y = data.x_train, data.y_train
    with seeded(0):
        parent = build_mlp((64,), 10, width=16, depth=3)
    # Mean over two pairs of children: one pair's barrier at a given fork varies a lot with the data order
    # (forks at epoch 5 gave 0.63 and 0.41 for two pairs), the trend over fork epochs does not.
    barriers = {}
    for epoch in range(11):
        if epoch > 0:
            _sgd(parent, x, y, epochs=1, seed=100 + epoch)
        if epoch in (0, 10):
            pairs = [[_sgd(copy.deepcopy(parent), x, y, epochs=6, seed=s) for s in seeds] for seeds in ((1, 2), (3, 4))]
            barriers[epoch] = sum(lmc_barrier(a, b, data.x_test, data.y_test).barrier for a, b in pairs) / 2
    assert barriers[0] > 0.2
    assert barriers[10] < 0.2 * barriers[0]
