"""Properties every registered dataset and condition must satisfy; registering one enrols it here."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

import losslab.data  # noqa: F401  (registers the datasets and conditions)
from losslab.core.registry import REGISTRY
from losslab.data.base import SplitData
from losslab.data.synthetic import make_gaussian_mixture

ALL_DATASETS = [e for e in REGISTRY.entries("dataset") if "user" not in e.tags]
# Datasets read from files or downloads need their own fixtures (tests/data/test_tabular.py, test_vision_cifar.py,
# ...), and user-registered ones are test-local; the rest are built here with their defaults.
DATASETS = [e for e in ALL_DATASETS if not e.tags & {"files", "download"}]
CONDITIONS = REGISTRY.entries("condition")


@pytest.mark.parametrize("entry", DATASETS, ids=[e.name for e in DATASETS])
def test_dataset_contract(entry):
    params = entry.resolve()
    data = entry.obj(**params)
    assert isinstance(data, SplitData) and data.records == ()
    assert data.y_train.dtype == torch.int64 and data.y_test.dtype == torch.int64
    assert data.x_train.dtype in (torch.float32, torch.int64)
    assert data.x_test.dtype == data.x_train.dtype and data.x_test.shape[1:] == data.x_train.shape[1:]
    assert data.x_train.shape[0] == data.y_train.shape[0] > 0 and data.x_test.shape[0] == data.y_test.shape[0] > 0
    for y in (data.y_train, data.y_test):
        assert int(y.min()) >= 0 and int(y.max()) < data.num_classes
    assert torch.equal(data.y_train_clean, data.y_train)
    if data.x_train.dtype.is_floating_point:
        assert bool(torch.isfinite(data.x_train).all()) and bool(torch.isfinite(data.x_test).all())


@pytest.mark.parametrize("entry", DATASETS, ids=[e.name for e in DATASETS])
def test_dataset_deterministic(entry):
    params = entry.resolve()
    a, b = entry.obj(**params), entry.obj(**params)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("entry", ALL_DATASETS, ids=[e.name for e in ALL_DATASETS])
def test_dataset_entry_documents_itself(entry):
    assert entry.summary and (entry.papers or entry.reference)
    assert "References:" in entry.obj.__doc__


@pytest.fixture(scope="module")
def base():
    return make_gaussian_mixture(num_classes=10, dim=5, n_train=500, n_test=100, seed=1)


def _apply(entry, data, seed=0):
    return entry.obj(data, generator=torch.Generator().manual_seed(seed), **entry.resolve())


@pytest.mark.parametrize("entry", CONDITIONS, ids=[e.name for e in CONDITIONS])
def test_condition_contract(entry, base):
    before = {k: getattr(base, k).clone() for k in ("x_train", "y_train", "y_train_clean")}
    out = _apply(entry, base)
    assert isinstance(out, SplitData) and out is not base
    shift = entry.family == "shift"
    if shift:  # shift conditions touch only the test split
        assert out.x_train is base.x_train and out.y_train is base.y_train and out.y_train_clean is base.y_train_clean
        assert out.x_test.shape[1:] == base.x_test.shape[1:] and out.y_test.shape == (out.x_test.shape[0],)
    else:  # every other condition never touches the test split
        assert out.x_test is base.x_test and out.y_test is base.y_test
    assert out.num_classes == base.num_classes
    assert len(out.records) == len(base.records) + 1 and out.records[-1].name == entry.name
    n = out.x_train.shape[0]
    assert out.y_train.shape == (n,) and out.y_train_clean.shape == (n,)
    m = out.x_test.shape[0] if shift else n  # records index the split the condition changed
    for tensor in out.records[-1].changed.values():
        assert tensor.shape[0] in (m, (base.x_test if shift else base.x_train).shape[0])
    json.dumps(out.records[-1].summary)
    json.dumps(out.records[-1].params)
    for k, v in before.items():  # the input is not modified
        assert torch.equal(getattr(base, k), v)


@pytest.mark.parametrize("entry", CONDITIONS, ids=[e.name for e in CONDITIONS])
def test_condition_deterministic_under_the_generator(entry, base):
    a, b = _apply(entry, base, seed=3), _apply(entry, base, seed=3)
    assert torch.equal(a.y_train, b.y_train) and torch.equal(a.x_train, b.x_train)
    assert torch.equal(a.y_test, b.y_test) and torch.equal(a.x_test, b.x_test)
    for key, tensor in a.records[-1].changed.items():
        assert torch.equal(tensor, b.records[-1].changed[key])


@pytest.mark.parametrize("entry", CONDITIONS, ids=[e.name for e in CONDITIONS])
def test_condition_rejects_a_non_generator(entry, base):
    with pytest.raises(ValueError, match="`generator`"):
        entry.obj(base, generator=0, **entry.resolve())


@pytest.mark.parametrize("entry", CONDITIONS, ids=[e.name for e in CONDITIONS])
def test_condition_entry_documents_itself(entry):
    assert entry.summary and (entry.papers or entry.reference)
    assert "References:" in entry.obj.__doc__


@pytest.mark.parametrize("entry", DATASETS + CONDITIONS, ids=[e.kind + ":" + e.name for e in DATASETS + CONDITIONS])
def test_registry_hyper_matches_the_signature(entry):
    """Every keyword-only hyper-parameter is registered, with the same default."""
    params = inspect.signature(entry.obj).parameters.values()
    keyword = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name != "generator"}
    assert {name: h.default for name, h in entry.hyper.items()} == keyword
