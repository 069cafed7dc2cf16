"""Sharpness diagnostics against the full Hessian of a tiny MLP, plus the contract every diagnostic keeps."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from losslab.core.registry import REGISTRY
from losslab.core.seeding import seeded
from losslab.diagnostics._base import DIAGNOSTIC_NAMES
from losslab.diagnostics.sharpness import (
    edge_of_stability,
    eigenvalue_early_stop,
    hessian_max_eig,
    hessian_top_eigs,
    hessian_trace,
    hessian_vector_product,
)

NAMES = ["hessian_max_eig", "hessian_top_eigs", "hessian_trace", "edge_of_stability"]
CALLS = {
    "hessian_max_eig": lambda m, x, y, **kw: hessian_max_eig(m, x, y, max_iters=20, **kw),
    "hessian_top_eigs": lambda m, x, y, **kw: hessian_top_eigs(m, x, y, k=2, num_iters=8, **kw),
    "hessian_trace": lambda m, x, y, **kw: hessian_trace(m, x, y, num_probes=5, per_layer=True, **kw),
    "edge_of_stability": lambda m, x, y, **kw: edge_of_stability(m, x, y, lr=0.1, max_iters=20, **kw),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy host their spin-waits cost seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_mlp(dropout: float = 0.0) -> nn.Module:
    """3-5-3 tanh MLP in float64: 38 parameters, a Hessian small enough to form exactly."""
    with seeded(0):
        return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Dropout(dropout), nn.Linear(5, 3)).double()


def batch(n: int = 24, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def full_hessian(model: nn.Module, x: Tensor, y: Tensor, loss_fn=None) -> Tensor:
    """The exact Hessian of the mean loss over the trainable parameters, flattened in parameters() order."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names, params = [n for n, _ in named], [p for _, p in named]
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    loss_fn = loss_fn or (lambda logits, t: F.cross_entropy(logits, t, reduction="none"))

    def mean_loss(theta: Tensor) -> Tensor:
        pieces = [c.view_as(p) for c, p in zip(theta.split([p.numel() for p in params]), params)]
        return loss_fn(functional_call(model, dict(zip(names, pieces)), (x,)), y).mean()

    model.eval()
    return torch.autograd.functional.hessian(mean_loss, flat, vectorize=True)


def rel_err(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# --- Hessian-vector products -------------------------------------------------------------------------------


def test_hvp_equals_full_hessian_times_vector():
    model, (x, y) = tiny_mlp(), batch()
    h = full_hessian(model, x, y)
    v = torch.randn(h.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.allclose(hessian_vector_product(model, x, y, v), h @ v, rtol=1e-10, atol=1e-12)


def test_hvp_is_independent_of_chunk_size():
    model, (x, y) = tiny_mlp(), batch(n=10)
    v = torch.randn(38, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    whole = hessian_vector_product(model, x, y, v, chunk_size=10)
    for chunk in (1, 3, 7):
        assert torch.allclose(hessian_vector_product(model, x, y, v, chunk_size=chunk), whole, atol=1e-13)


def test_operator_reuses_its_gradient_graph_exactly():
    """A kept graph gives the same products as a fresh one, for every vector in turn (a solver's access)."""
    from losslab.diagnostics.sharpness import _operator

    model, (x, y) = tiny_mlp(), batch()
    h = full_hessian(model, x, y)
    op = _operator(model, x, y, None, 512)
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        v = torch.randn(38, generator=g, dtype=torch.float64)
        assert torch.allclose(op(v), h @ v, rtol=1e-10, atol=1e-12)
    assert "_graph" in op.__dict__


# --- agreement with the exact spectrum ----------------------------------------------------------------------


def test_max_eig_matches_full_hessian():
    model, (x, y) = tiny_mlp(), batch()
    exact = float(torch.linalg.eigvalsh(full_hessian(model, x, y))[-1])
    assert rel_err(hessian_max_eig(model, x, y, tol=1e-12, max_iters=5000), exact) <= 1e-3


def test_max_eig_is_the_top_eigenvalue_when_the_largest_in_magnitude_is_negative():
    # A concave per-sample loss: every eigenvalue is <= 0, so plain power iteration would return lambda_min.
    with seeded(2):
        model = nn.Linear(3, 2, bias=False).double()
    x = torch.randn(12, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = torch.zeros(12, dtype=torch.long)

    def concave(logits: Tensor, t: Tensor) -> Tensor:
        return -0.5 * logits.square().sum(1) - 0.1 * logits[:, 0].pow(4)

    eigs = torch.linalg.eigvalsh(full_hessian(model, x, y, concave))
    assert float(eigs[0]) < 0 and abs(float(eigs[0])) > abs(float(eigs[-1]))
    got = hessian_max_eig(model, x, y, loss_fn=concave, tol=1e-13, max_iters=5000)
    assert rel_err(got, float(eigs[-1])) <= 1e-3


def test_top_eigs_match_full_hessian_with_a_full_krylov_space():
    model, (x, y) = tiny_mlp(), batch()
    exact = torch.linalg.eigvalsh(full_hessian(model, x, y)).flip(0)[:4]
    got = hessian_top_eigs(model, x, y, k=4, num_iters=38)
    assert list(got) == ["eig_1", "eig_2", "eig_3", "eig_4"]
    for j in range(4):
        assert rel_err(got[f"eig_{j + 1}"], float(exact[j])) <= 1e-3


def test_top_eigs_converge_before_the_full_space_and_are_sorted():
    model, (x, y) = tiny_mlp(), batch()
    exact = torch.linalg.eigvalsh(full_hessian(model, x, y)).flip(0)
    got = hessian_top_eigs(model, x, y, k=2, num_iters=20)
    assert got["eig_1"] >= got["eig_2"]
    assert rel_err(got["eig_1"], float(exact[0])) <= 1e-3


def test_top_eigs_resolve_a_repeated_eigenvalue():
    # At zero weights the two-class softmax Hessian has the eigenvalue 1/6 twice (see the doctest).
    model = nn.Linear(3, 2, dtype=torch.float64)
    for p in model.parameters():
        nn.init.zeros_(p)
    x, y = torch.eye(3, dtype=torch.float64), torch.tensor([0, 1, 0])
    got = hessian_top_eigs(model, x, y, k=4, num_iters=8)
    expected = torch.linalg.eigvalsh(full_hessian(model, x, y)).flip(0)[:4]
    assert torch.allclose(torch.tensor(list(got.values()), dtype=torch.float64), expected, atol=1e-10)


def test_trace_equals_the_mean_quadratic_form_of_the_same_probes():
    model, (x, y) = tiny_mlp(), batch()
    h = full_hessian(model, x, y)
    got = hessian_trace(model, x, y, num_probes=7, per_layer=True, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)  # the probes, redrawn independently of the implementation
    probes = [(2 * torch.randint(0, 2, (38,), generator=g) - 1).double() for _ in range(7)]
    forms = torch.stack([v @ h @ v for v in probes])
    assert rel_err(got["trace"], float(forms.mean())) <= 1e-10
    assert rel_err(got["stderr"], float(forms.std() / math.sqrt(7))) <= 1e-10
    layers = sum(v for k, v in got.items() if k.startswith("trace."))
    assert rel_err(layers, got["trace"]) <= 1e-10
    assert set(got) == {"trace", "stderr", "trace.0.weight", "trace.0.bias", "trace.3.weight", "trace.3.bias"}


def test_trace_is_exact_for_a_diagonal_hessian():
    # Orthogonal inputs, no bias, squared logits: H = (X^T X / n) kron I is diagonal, so v^T H v = tr H.
    model = nn.Linear(4, 2, bias=False, dtype=torch.float64)
    x, y = torch.diag(torch.tensor([1.0, 2.0, 3.0, 0.5], dtype=torch.float64)), torch.zeros(4, dtype=torch.long)

    def squares(logits: Tensor, t: Tensor) -> Tensor:
        return 0.5 * logits.square().sum(1)

    exact = float(full_hessian(model, x, y, squares).trace())
    got = hessian_trace(model, x, y, loss_fn=squares, num_probes=3)
    assert rel_err(got["trace"], exact) <= 1e-12 and got["stderr"] <= 1e-12
    assert math.isnan(hessian_trace(model, x, y, loss_fn=squares, num_probes=1)["stderr"])


def test_trace_is_unbiased_within_its_standard_error():
    model, (x, y) = tiny_mlp(), batch()
    exact = float(full_hessian(model, x, y).trace())
    got = hessian_trace(model, x, y, num_probes=100)
    assert abs(got["trace"] - exact) <= 4 * got["stderr"]


def test_frozen_parameters_are_left_out_of_the_hessian():
    model, (x, y) = tiny_mlp(), batch()
    for p in model[0].parameters():
        p.requires_grad_(False)
    exact = torch.linalg.eigvalsh(full_hessian(model, x, y))  # over the head's 18 parameters only
    assert exact.numel() == 18
    got = hessian_top_eigs(model, x, y, k=2, num_iters=18)
    assert rel_err(got["eig_1"], float(exact[-1])) <= 1e-8


def test_float32_is_close_to_float64():
    model, (x, y) = tiny_mlp(), batch()
    ref = hessian_top_eigs(model, x, y, k=1, num_iters=38)["eig_1"]
    got = hessian_top_eigs(model.float(), x.float(), y, k=1, num_iters=38)["eig_1"]
    assert rel_err(got, ref) <= 1e-3


# --- the diagnostic contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("training", [True, False])
def test_model_is_left_as_found(name, training):
    model, (x, y) = tiny_mlp(dropout=0.5), batch()
    model.train(training)
    before = [p.detach().clone() for p in model.parameters()]
    grads = [torch.full_like(p, 7.0) for p in model.parameters()]
    for p, g in zip(model.parameters(), grads):
        p.grad = g
    model[0].bias.grad = None
    CALLS[name](model, x, y)
    assert model.training is training
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert model[0].bias.grad is None
    assert all(p.grad is g for p, g in zip(model.parameters(), grads) if p is not model[0].bias)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_given_the_generator_and_measured_in_eval_mode(name):
    model, (x, y) = tiny_mlp(dropout=0.5), batch()
    first = CALLS[name](model, x, y, generator=torch.Generator().manual_seed(11))
    model.eval()  # dropout is off during the measurement, so the mode it was called in does not matter
    assert CALLS[name](model, x, y, generator=torch.Generator().manual_seed(11)) == first
    assert CALLS[name](model, x, y) == CALLS[name](model, x, y)  # generator=None is seeded, not global


def test_different_generators_give_different_trace_estimates():
    model, (x, y) = tiny_mlp(), batch()
    a = hessian_trace(model, x, y, num_probes=3, generator=torch.Generator().manual_seed(1))
    b = hessian_trace(model, x, y, num_probes=3, generator=torch.Generator().manual_seed(2))
    assert a["trace"] != b["trace"]


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry(name):
    entry = REGISTRY.get("diagnostic", name)
    assert entry.papers and entry.summary and entry.family == "sharpness"
    params = inspect.signature(entry.obj).parameters
    for key, spec in entry.hyper.items():
        assert params[key].default == spec.default, key
    contract = set(params) - set(entry.hyper)
    assert contract <= set(DIAGNOSTIC_NAMES), contract - set(DIAGNOSTIC_NAMES)


def test_edge_of_stability_relates_sharpness_to_two_over_lr():
    model, (x, y) = tiny_mlp(), batch()
    lam = hessian_max_eig(model, x, y)
    out = edge_of_stability(model, x, y, lr=0.25)
    assert out == {"lambda_max": lam, "threshold": 8.0, "ratio": 0.125 * lam}


def test_eigenvalue_early_stop_rule():
    assert not eigenvalue_early_stop([1.0] * 20)
    assert eigenvalue_early_stop([1.0] * 5 + [1.5] * 5)  # 1 / 1.5 < 0.75
    assert not eigenvalue_early_stop([1.0] * 5 + [1.3] * 5)  # 1 / 1.3 > 0.75
    assert not eigenvalue_early_stop([1.0] * 4 + [9.0] * 5)  # fewer than window + lag values
    assert eigenvalue_early_stop([1.0, 3.0], window=1, lag=1)
    assert not eigenvalue_early_stop([-1.0] * 10)


# --- bad inputs name the argument ---------------------------------------------------------------------------


def _frozen() -> nn.Module:
    model = tiny_mlp()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


BAD = [
    ("model", lambda m, x, y: hessian_max_eig("net", x, y)),
    ("model", lambda m, x, y: hessian_trace(_frozen(), x, y)),
    ("inputs", lambda m, x, y: hessian_max_eig(m, x.numpy(), y)),
    ("inputs", lambda m, x, y: hessian_max_eig(m, x[:0], y[:0])),
    ("inputs", lambda m, x, y: hessian_top_eigs(m, torch.full_like(x, math.nan), y)),
    ("target", lambda m, x, y: hessian_trace(m, x, y[:-1])),
    ("target", lambda m, x, y: hessian_trace(m, x, [0, 1])),
    ("loss_fn", lambda m, x, y: hessian_max_eig(m, x, y, loss_fn="ce")),
    ("loss_fn", lambda m, x, y: hessian_max_eig(m, x, y, loss_fn=lambda o, t: F.cross_entropy(o, t))),
    ("generator", lambda m, x, y: hessian_max_eig(m, x, y, generator=0)),
    ("tol", lambda m, x, y: hessian_max_eig(m, x, y, tol=0.0)),
    ("max_iters", lambda m, x, y: hessian_max_eig(m, x, y, max_iters=0)),
    ("max_iters", lambda m, x, y: hessian_max_eig(m, x, y, max_iters=2.5)),
    ("chunk_size", lambda m, x, y: hessian_max_eig(m, x, y, chunk_size=0)),
    ("k", lambda m, x, y: hessian_top_eigs(m, x, y, k=0)),
    ("k", lambda m, x, y: hessian_top_eigs(m, x, y, k=5, num_iters=4)),
    ("k", lambda m, x, y: hessian_top_eigs(m, x, y, k=39, num_iters=50)),
    ("num_iters", lambda m, x, y: hessian_top_eigs(m, x, y, num_iters=-1)),
    ("num_probes", lambda m, x, y: hessian_trace(m, x, y, num_probes=0)),
    ("per_layer", lambda m, x, y: hessian_trace(m, x, y, per_layer=1)),
    ("lr", lambda m, x, y: edge_of_stability(m, x, y)),
    ("lr", lambda m, x, y: edge_of_stability(m, x, y, lr=-0.1)),
    ("vector", lambda m, x, y: hessian_vector_product(m, x, y, torch.ones(37, dtype=torch.float64))),
    ("vector", lambda m, x, y: hessian_vector_product(m, x, y, torch.ones(38))),
    ("history", lambda m, x, y: eigenvalue_early_stop([1.0, math.inf])),
    ("history", lambda m, x, y: eigenvalue_early_stop("abc")),
    ("window", lambda m, x, y: eigenvalue_early_stop([1.0], window=0)),
    ("lag", lambda m, x, y: eigenvalue_early_stop([1.0], lag=0)),
    ("threshold", lambda m, x, y: eigenvalue_early_stop([1.0], threshold=1.5)),
]


@pytest.mark.parametrize(("arg", "call"), BAD, ids=[f"{a}-{i}" for i, (a, _) in enumerate(BAD)])
def test_bad_inputs_name_the_argument(arg, call):
    model, (x, y) = tiny_mlp(), batch()
    with pytest.raises(ValueError, match=f"`{arg}`"):
        call(model, x, y)


def test_works_when_called_under_no_grad():
    model, (x, y) = tiny_mlp(), batch()
    ref = hessian_top_eigs(model, x, y, k=1, num_iters=10)
    with torch.no_grad():  # an engine callback may run inside an evaluation block
        assert hessian_top_eigs(model, x, y, k=1, num_iters=10) == ref


def test_exact_trace_matches_the_full_hessian_per_layer_too():
    model, (x, y) = tiny_mlp(), batch()
    h = full_hessian(model, x, y)
    got = hessian_trace(model, x, y, exact=True, per_layer=True)
    assert rel_err(got["trace"], float(h.trace())) <= 1e-10 and got["stderr"] == 0.0
    diag, start = torch.diagonal(h), 0
    for name, p in model.named_parameters():
        assert rel_err(got[f"trace.{name}"], float(diag[start: start + p.numel()].sum())) <= 1e-9
        start += p.numel()
    with pytest.raises(ValueError, match="`exact`"):
        hessian_trace(model, x, y, exact="yes")
