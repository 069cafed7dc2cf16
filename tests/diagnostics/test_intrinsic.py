"""Random-subspace training and the intrinsic dimension sweep."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losslab.core.seeding import seeded
from losslab.data.digits import make_digits
from losslab.diagnostics.intrinsic import (
    SubspaceModel,
    classifier_train_fn,
    intrinsic_dimension,
    random_projection,
)
from losslab.models import build_mlp


def _mlp(seed: int = 0, **kw: int) -> nn.Module:
    with seeded(seed):
        return build_mlp((6,), 3, width=kw.get("width", 8), depth=kw.get("depth", 1)).double()


def _batch(seed: int = 0, n: int = 48) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _flat(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_projection_has_unit_columns_and_is_seeded(kind):
    p1 = random_projection(400, 7, kind=kind, generator=torch.Generator().manual_seed(3))
    p2 = random_projection(400, 7, kind=kind, generator=torch.Generator().manual_seed(3))
    assert torch.equal(p1, p2)
    torch.testing.assert_close(p1.norm(dim=0), torch.ones(7))
    if kind == "sparse":
        nnz = (p1 != 0).sum(0).double()
        assert 5 < nnz.mean() < 60  # about sqrt(400) = 20 non-zeros a column
        col = p1[:, 0][p1[:, 0] != 0]
        torch.testing.assert_close(col.abs(), torch.full_like(col, 1 / math.sqrt(col.numel())))


def test_starts_at_theta0_and_only_z_trains():
    net = _mlp()
    sub = SubspaceModel(net, 5, generator=torch.Generator().manual_seed(0))
    x, _ = _batch()
    assert [p.shape for p in sub.parameters()] == [torch.Size([5])]
    torch.testing.assert_close(sub(x), net(x), rtol=0, atol=0)
    assert sub.num_params == _flat(net).numel()


def test_gradient_wrt_z_is_projected_gradient():
    net = _mlp(width=6, depth=2)
    sub = SubspaceModel(net, 9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        sub.z.normal_(generator=torch.Generator().manual_seed(2))
    x, y = _batch()
    F.cross_entropy(sub(x), y).backward()
    # grad_theta at theta = theta0 + P z, from an ordinary model holding those weights.
    plain = sub.materialize()
    F.cross_entropy(plain(x), y).backward()
    grad_theta = torch.cat([p.grad.reshape(-1) for p in plain.parameters()])
    torch.testing.assert_close(sub.z.grad, sub.projection.T @ grad_theta, rtol=1e-10, atol=1e-12)


def test_identity_projection_reproduces_ordinary_training():
    net = _mlp()
    x, y = _batch()
    fit = classifier_train_fn(x, y, x, y, epochs=5, lr=0.05, batch_size=16)
    plain = copy.deepcopy(net)
    acc_plain = fit(plain)
    d = _flat(net).numel()
    sub = SubspaceModel(net, projection=torch.eye(d, dtype=torch.float64))
    acc_sub = fit(sub)
    torch.testing.assert_close(sub.theta(), _flat(plain), rtol=1e-9, atol=1e-12)
    assert acc_sub == acc_plain
    assert torch.equal(_flat(net), sub.theta0)  # the wrapped model itself never moved


def test_materialize_and_train_mode():
    net = _mlp()
    sub = SubspaceModel(net, 4, kind="sparse", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sub.z.fill_(0.3)
    x, _ = _batch()
    torch.testing.assert_close(sub.materialize()(x), sub(x))
    sub.eval()
    assert not sub._base[0].training
    sub.float()
    assert sub.z.dtype == sub.theta0.dtype == torch.float32 and sub(x.float()).dtype == torch.float32


def test_sweep_rule_on_a_scripted_train_fn():
    # Performance = min(1, d / 10) for a subspace and 1 for the full model: d_int90 is the first d >= 9.
    def train_fn(model: nn.Module) -> float:
        return min(1.0, model.z.numel() / 10) if isinstance(model, SubspaceModel) else 1.0

    res = intrinsic_dimension(lambda: nn.Linear(3, 3), train_fn, [20, 2, 9, 5, 9])
    assert res.dim == 9 and list(res.performance) == [2, 5, 9, 20] and res.baseline == 1.0
    assert intrinsic_dimension(lambda: nn.Linear(3, 3), train_fn, [2, 5], threshold=0.9).dim is None
    assert intrinsic_dimension(lambda: nn.Linear(3, 3), train_fn, [2, 5], threshold=0.5).dim == 5


def test_projections_are_deterministic_given_seed():
    seen: list[Tensor] = []

    def train_fn(model: nn.Module) -> float:
        if isinstance(model, SubspaceModel):
            seen.append(model.projection.clone())
        return 1.0

    for _ in range(2):
        intrinsic_dimension(lambda: nn.Linear(3, 3), train_fn, [2, 4], seed=5)
    assert torch.equal(seen[0], seen[2]) and torch.equal(seen[1], seen[3])


def test_bad_inputs():
    net = _mlp()
    x, y = _batch()
    ok = lambda m: 1.0  # noqa: E731
    with pytest.raises(ValueError, match="`dims`"):
        intrinsic_dimension(lambda: net, ok, [])
    with pytest.raises(ValueError, match="`dims`"):
        intrinsic_dimension(lambda: net, ok, [0, 3])
    with pytest.raises(ValueError, match="`threshold`"):
        intrinsic_dimension(lambda: net, ok, [3], threshold=1.5)
    with pytest.raises(ValueError, match="`kind`"):
        intrinsic_dimension(lambda: net, ok, [3], kind="fastfood")
    with pytest.raises(ValueError, match="`build_model`"):
        intrinsic_dimension(lambda: 3, ok, [3])
    with pytest.raises(ValueError, match="`train_fn`"):
        intrinsic_dimension(lambda: net, lambda m: float("nan"), [3])
    with pytest.raises(ValueError, match="`projection`"):
        SubspaceModel(net, projection=torch.ones(5, 2))
    with pytest.raises(ValueError, match="`dim`"):
        SubspaceModel(net, 0)
    with pytest.raises(ValueError, match="`num_params`"):
        random_projection(0, 3)
    with pytest.raises(ValueError, match="`lr`"):
        classifier_train_fn(x, y, x, y, lr=0.0)
    with pytest.raises(ValueError, match="batch size"):
        classifier_train_fn(x, y[:3], x, y)


def test_digits_mlp_has_intrinsic_dimension_well_below_its_size(one_thread):
    # [317]: an MLP on digits reaches 90% of its full accuracy in a subspace of a few hundred dimensions.
    data = make_digits()

    def build() -> nn.Module:
        with seeded(0):
            return build_mlp((64,), 10, width=32, depth=1)

    fit = classifier_train_fn(data.x_train, data.y_train, data.x_test, data.y_test, epochs=15, lr=3e-2)
    res = intrinsic_dimension(build, fit, [10, 80, 320], threshold=0.9)
    assert res.num_params == 2410 and res.baseline > 0.9
    assert res.dim is not None and res.dim <= 320 < res.num_params / 5
    assert res.performance[10] < res.performance[80] < res.performance[320]
    assert res.performance[10] < 0.9 * res.baseline  # too small a subspace does not suffice
