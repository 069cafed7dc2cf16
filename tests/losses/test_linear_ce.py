"""The chunked linear cross-entropy equals the naive one, in value and gradient, without the logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from losslab.losses import LinearCrossEntropyLoss, linear_cross_entropy


def _problem(n=37, d=16, v=53, dtype=torch.float64, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=dtype).requires_grad_(True)
    w = (torch.randn(v, d, generator=g, dtype=dtype) / d**0.5).requires_grad_(True)
    b = torch.randn(v, generator=g, dtype=dtype).requires_grad_(True) if bias else None
    t = torch.randint(0, v, (n,), generator=g)
    t[::7] = -100
    return h, w, b, t


def _naive(h, w, b, t, *, label_smoothing=0.0, z_loss=0.0, softcap=0.0, reduction="mean"):
    z = h @ w.T + (b if b is not None else 0)
    if softcap > 0:
        z = softcap * torch.tanh(z / softcap)
    per = F.cross_entropy(z, t, ignore_index=-100, label_smoothing=label_smoothing, reduction="none")
    per = per + z_loss * torch.logsumexp(z, dim=1) ** 2 * (t != -100)
    if reduction == "none":
        return per
    return per.sum() / (t != -100).sum() if reduction == "mean" else per.sum()


def _grads(loss, *xs):
    return torch.autograd.grad(loss, [x for x in xs if x is not None])


@pytest.mark.parametrize("chunk", [1, 7, 53, 1000])
@pytest.mark.parametrize("kw", [{}, {"label_smoothing": 0.1}, {"z_loss": 1e-3}, {"softcap": 5.0},
                                {"label_smoothing": 0.2, "z_loss": 1e-2, "softcap": 3.0}])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_equals_naive_value_and_gradients(chunk, kw, reduction):
    h, w, b, t = _problem()
    ours = linear_cross_entropy(h, w, t, bias=b, chunk_size=chunk, reduction=reduction, **kw)
    ref = _naive(h, w, b, t, reduction=reduction, **kw)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    up = torch.linspace(0.5, 1.5, len(t), dtype=h.dtype) if reduction == "none" else torch.tensor(1.0, dtype=h.dtype)
    for a, r in zip(_grads((ours * up).sum(), h, w, b), _grads((ref * up).sum(), h, w, b)):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)


def test_ignored_tokens_get_zero_loss_and_gradient():
    h, w, b, t = _problem(bias=False)
    per = linear_cross_entropy(h, w, t, reduction="none", chunk_size=10)
    assert torch.all(per[t == -100] == 0)
    (gh,) = torch.autograd.grad(per.sum(), h)
    assert torch.all(gh[t == -100] == 0)
    all_ignored = torch.full_like(t, -100)
    out = linear_cross_entropy(h, w, all_ignored)
    assert out.item() == 0.0 and out.requires_grad


def test_gradcheck_float64():
    h, w, b, t = _problem(n=5, d=3, v=7)
    fn = lambda h_, w_, b_: linear_cross_entropy(h_, w_, t, bias=b_, chunk_size=3, z_loss=0.1,  # noqa: E731
                                                 label_smoothing=0.1, softcap=2.0)
    assert torch.autograd.gradcheck(fn, (h, w, b))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_accumulates_in_float32(dtype):
    h, w, b, t = _problem(dtype=torch.float32, bias=False)
    hl, wl = h.detach().to(dtype).requires_grad_(True), w.detach().to(dtype).requires_grad_(True)
    out = linear_cross_entropy(hl, wl, t, chunk_size=8)
    assert out.dtype == torch.float32
    ref = _naive(hl.float(), wl.float(), None, t)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    gh, gw = torch.autograd.grad(out, (hl, wl))
    assert gh.dtype == dtype and gw.dtype == dtype
    rh, rw = torch.autograd.grad(_naive(hl.float(), wl.float(), None, t), (hl, wl))
    torch.testing.assert_close(gh.float(), rh.float(), rtol=2e-2, atol=1e-3)


def test_extreme_hidden_values_stay_finite():
    h, w, _, t = _problem(dtype=torch.float32, bias=False)
    big = (h.detach() * 1e3).requires_grad_(True)
    out = linear_cross_entropy(big, w, t, chunk_size=9)
    (g,) = torch.autograd.grad(out, big)
    assert torch.isfinite(out) and torch.isfinite(g).all()


def test_module_equals_function():
    h, w, b, t = _problem()
    mod = LinearCrossEntropyLoss(label_smoothing=0.1, chunk_size=11)
    torch.testing.assert_close(mod(h, w, t, b), linear_cross_entropy(h, w, t, bias=b, label_smoothing=0.1,
                                                                       chunk_size=11))
    with pytest.raises(ValueError, match="label_smoothing"):
        LinearCrossEntropyLoss(label_smoothing=2.0)


def test_bad_inputs_name_the_argument():
    h, w, b, t = _problem()
    with pytest.raises(ValueError, match="`weight`.*d"):
        linear_cross_entropy(h, w[:, :-1], t)
    bad = t.clone()
    bad[1] = w.shape[0]
    with pytest.raises(ValueError, match=r"`target`.*\[0, 53\)"):
        linear_cross_entropy(h, w, bad)
    with pytest.raises(ValueError, match="`hidden`.*non-empty"):
        linear_cross_entropy(h[:0], w, t[:0])
    with pytest.raises(ValueError, match="`bias`"):
        linear_cross_entropy(h, w, t, bias=b[:-1])
    with pytest.raises(ValueError, match="`target`"):
        linear_cross_entropy(h, w, t[:-1])
    with pytest.raises(ValueError, match="`softcap`"):
        linear_cross_entropy(h, w, t, softcap=-1.0)
    with pytest.raises(ValueError, match="`chunk_size`"):
        linear_cross_entropy(h, w, t, chunk_size=0)


@pytest.mark.parametrize("tile", [53, 5 * 53, 10**9])  # one row per tile, several rows, everything at once
@pytest.mark.parametrize("kw", [{}, {"label_smoothing": 0.2, "z_loss": 1e-2, "softcap": 3.0}])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fused_forward_gradient_path_over_row_tiles(monkeypatch, tile, kw, reduction):
    """mean/sum with gradients take the path that forms gradients in the forward pass, tile by tile."""
    import losslab.losses.linear_ce as lce

    monkeypatch.setattr(lce, "_TILE_ELEMENTS", tile)
    h, w, b, t = _problem()
    ours = linear_cross_entropy(h, w, t, bias=b, reduction=reduction, **kw)
    assert type(ours.grad_fn).__name__.startswith("_GradInForwardLinearCrossEntropy")
    ref = _naive(h, w, b, t, reduction=reduction, **kw)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    for a, r in zip(_grads(3.0 * ours, h, w, b), _grads(3.0 * ref, h, w, b)):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)
    with torch.no_grad():  # without gradients the chunked-vocabulary path gives the same value
        torch.testing.assert_close(linear_cross_entropy(h, w, t, bias=b, reduction=reduction, **kw), ref.detach())
