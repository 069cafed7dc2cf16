"""Model soups: exact averages, the greedy recipe, and a small fine-tuning sweep on digits."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losslab.core.seeding import seeded
from losslab.data.digits import make_digits
from losslab.diagnostics.landscape import lmc_barrier
from losslab.diagnostics.soups import greedy_soup, uniform_soup
from losslab.models import build_mlp


def _mlp(seed: int) -> nn.Module:
    with seeded(seed):
        return build_mlp((6,), 3, width=8, depth=1)


def _batch(seed: int = 0, n: int = 40) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def _acc(model: nn.Module, state: dict[str, Tensor], x: Tensor, y: Tensor) -> float:
    m = copy.deepcopy(model)
    m.load_state_dict(state)
    with torch.no_grad():
        return float((m(x).argmax(1) == y).double().mean())


def test_soup_of_identical_models_is_the_model():
    net = _mlp(0)
    soup = uniform_soup([net, copy.deepcopy(net), net.state_dict()])
    assert all(torch.equal(soup[k], v) for k, v in net.state_dict().items())
    x, y = _batch()
    res = greedy_soup([net, copy.deepcopy(net)], x, y)
    assert all(torch.equal(res.state_dict[k], v) for k, v in net.state_dict().items())


def test_uniform_soup_is_the_mean_of_every_entry():
    nets = [_mlp(s) for s in range(4)]
    soup = uniform_soup(nets)
    for k in soup:
        expected = sum(n.state_dict()[k].double() for n in nets) / 4
        torch.testing.assert_close(soup[k], expected.float())


def test_uniform_soup_keeps_integer_buffers_and_half_dtype():
    a = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).half()
    b = copy.deepcopy(a)
    with torch.no_grad():
        b[0].weight.add_(1.0)
    a[1].num_batches_tracked.fill_(5)
    soup = uniform_soup([a, b])
    assert soup["1.num_batches_tracked"].item() == 5 and soup["0.weight"].dtype == torch.float16
    expected = ((a[0].weight.float() + b[0].weight.float()) / 2).half()
    torch.testing.assert_close(soup["0.weight"], expected, rtol=0, atol=0)


def test_greedy_soup_follows_the_recipe():
    x, y = _batch()
    nets = [_mlp(s) for s in range(5)]
    res = greedy_soup(nets, x, y)
    acc = [_acc(nets[0], n.state_dict(), x, y) for n in nets]
    assert res.individual_accuracy == pytest.approx(acc)
    assert res.ingredients[0] == max(range(5), key=lambda i: (acc[i], -i))  # best first, ties by input order
    assert res.val_accuracy >= max(acc)
    assert res.val_accuracy == pytest.approx(_acc(nets[0], res.state_dict, x, y))
    rebuilt = uniform_soup([nets[i] for i in res.ingredients])
    assert all(torch.equal(rebuilt[k], v) for k, v in res.state_dict.items())


def test_greedy_tie_rule():
    # An identical second ingredient leaves accuracy unchanged: kept with ties accepted, dropped without.
    net = _mlp(0)
    x, y = _batch()
    assert greedy_soup([net, copy.deepcopy(net)], x, y).ingredients == (0, 1)
    assert greedy_soup([net, copy.deepcopy(net)], x, y, accept_ties=False).ingredients == (0,)


def test_greedy_soup_runs_state_dicts_with_a_given_model():
    nets = [_mlp(s) for s in range(3)]
    x, y = _batch()
    a = greedy_soup(nets, x, y)
    b = greedy_soup([n.state_dict() for n in nets], x, y, model=_mlp(9))
    assert a.ingredients == b.ingredients and a.val_accuracy == b.val_accuracy


def test_leaves_models_as_found():
    nets = [_mlp(s) for s in range(3)]
    before = [copy.deepcopy(n.state_dict()) for n in nets]
    nets[0].train()
    x, y = _batch()
    greedy_soup(nets, x, y)
    uniform_soup(nets)
    assert nets[0].training
    assert all(torch.equal(b[k], n.state_dict()[k]) for b, n in zip(before, nets) for k in b)


def test_bad_inputs():
    nets = [_mlp(s) for s in range(2)]
    x, y = _batch()
    with pytest.raises(ValueError, match="`state_dicts`"):
        uniform_soup([])
    with pytest.raises(ValueError, match="`state_dicts`"):
        uniform_soup(nets[0])
    with pytest.raises(ValueError, match=r"`state_dicts\[1\]`"):
        uniform_soup([nets[0], build_mlp((6,), 3, width=5, depth=1)])
    with pytest.raises(ValueError, match=r"`models_or_states\[1\]`"):
        greedy_soup([nets[0], "x"], x, y)
    with pytest.raises(ValueError, match="`model`"):
        greedy_soup([n.state_dict() for n in nets], x, y)
    with pytest.raises(ValueError, match="`val_target`"):
        greedy_soup(nets, x, y.float()[:, None])
    with pytest.raises(ValueError, match="`accept_ties`"):
        greedy_soup(nets, x, y, accept_ties=1)


def _train(model: nn.Module, x: Tensor, y: Tensor, *, lr: float, epochs: int, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model


def test_finetuned_sweep_on_digits_soups_well(one_thread):
    # [225]: fine-tunes of one pre-trained model share a basin: greedy >= best single, LMC barrier ~ 0.
    data = make_digits()
    x_pre, y_pre = data.x_train[:600], data.y_train[:600]
    x_ft, y_ft = data.x_train[600:1100], data.y_train[600:1100]
    x_val, y_val = data.x_train[1100:], data.y_train[1100:]
    with seeded(0):
        pre = build_mlp((64,), 10, width=32, depth=1)
    _train(pre, x_pre, y_pre, lr=0.05, epochs=15, seed=0)
    configs = [(lr, s) for lr in (0.01, 0.03, 0.1) for s in (1, 2)]
    fts = [_train(copy.deepcopy(pre), x_ft, y_ft, lr=lr, epochs=8, seed=s) for lr, s in configs]
    res = greedy_soup(fts, x_val, y_val)
    assert res.val_accuracy >= max(res.individual_accuracy)
    assert len(res.ingredients) >= 2
    assert lmc_barrier(fts[0], fts[1], x_val, y_val).barrier < 0.05
    soup_test = _acc(pre, res.state_dict, data.x_test, data.y_test)
    best = fts[res.ingredients[0]]
    assert soup_test >= _acc(pre, best.state_dict(), data.x_test, data.y_test) - 0.02
