"""Properties every registered model must satisfy; registering one enrols it here."""

from __future__ import annotations

import inspect

import pytest
import torch

import losslab.models  # noqa: F401  (registers the models)
from losslab.core.registry import REGISTRY
from losslab.core.seeding import seeded

MODELS = REGISTRY.entries("model")
IDS = [e.name for e in MODELS]
NUM_CLASSES = 7


def _batch(entry, n=4):
    """Integer tokens for embedding models, small images for image models, a length-40 float signal otherwise."""
    if "image" in entry.tags:
        return (3, 8, 8), torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    if entry.family == "embedding":
        return (2,), torch.randint(0, NUM_CLASSES, (n, 2), generator=torch.Generator().manual_seed(0))
    return (40,), torch.randn(n, 40, generator=torch.Generator().manual_seed(0))


def _build(entry, input_shape, seed=0):
    with seeded(seed):
        return entry.obj(input_shape, NUM_CLASSES, **entry.resolve())


@pytest.mark.parametrize("entry", MODELS, ids=IDS)
def test_logits_shape_finite_and_differentiable(entry):
    shape, x = _batch(entry)
    model = _build(entry, shape)
    logits = model(x)
    assert logits.shape == (4, NUM_CLASSES) and logits.dtype == torch.float32
    assert bool(torch.isfinite(logits).all())
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("entry", MODELS, ids=IDS)
def test_initialisation_is_seeded(entry):
    shape, x = _batch(entry)
    a, b, c = _build(entry, shape, 1), _build(entry, shape, 1), _build(entry, shape, 2)
    assert torch.equal(a(x), b(x))
    # Compare weights, not outputs: a centred model (`scaled`) outputs 0 at every initialisation.
    pa, pc = torch.cat([p.flatten() for p in a.parameters()]), torch.cat([p.flatten() for p in c.parameters()])
    assert not torch.equal(pa, pc)


@pytest.mark.parametrize("entry", MODELS, ids=IDS)
def test_batch_independence(entry):
    shape, x = _batch(entry, n=6)
    model = _build(entry, shape).eval()
    torch.testing.assert_close(model(x)[:2], model(x[:2]))


@pytest.mark.parametrize("entry", MODELS, ids=IDS)
def test_rejects_a_bad_input_shape(entry):
    with pytest.raises(ValueError, match="`input_shape`"):
        entry.obj((), NUM_CLASSES)


@pytest.mark.parametrize("entry", MODELS, ids=IDS)
def test_entry_documents_itself(entry):
    assert entry.summary and (entry.papers or entry.reference)
    assert "References:" in entry.obj.__doc__


@pytest.mark.parametrize("entry", MODELS, ids=[e.kind + ":" + e.name for e in MODELS])
def test_registry_hyper_matches_the_signature(entry):
    """Every keyword-only hyper-parameter is registered, with the same default."""
    params = inspect.signature(entry.obj).parameters.values()
    keyword = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name != "generator"}
    assert {name: h.default for name, h in entry.hyper.items()} == keyword
