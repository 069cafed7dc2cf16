"""Python adapters: torch datasets as SplitData, and user datasets in the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, IterableDataset, TensorDataset

from losslab.core.registry import REGISTRY
from losslab.data.adapters import check_split_data, from_torch_dataset, register_dataset, unregister_dataset
from losslab.data.arrays import from_arrays
from losslab.data.base import SplitData


def _error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    return msg


class NumpyPairs(Dataset):
    """A custom map-style dataset returning ``(numpy array, numpy int)``; sample i is filled with i."""

    def __init__(self, n=30, c=3, shape=(2, 4)):
        self.n, self.c, self.shape = n, c, shape

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return np.full(self.shape, i, dtype=np.float64), np.int64(i % self.c)


class Items(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture
def user_names():
    """Names registered by a test are removed afterwards, so the registry stays as it was."""
    names = []
    yield names
    for name in names:
        if name in REGISTRY.names("dataset"):
            unregister_dataset(name)


# ---- from_torch_dataset -------------------------------------------------------------------------

def test_tensor_dataset_round_trip_with_split():
    x = torch.arange(40.0).reshape(20, 2)
    y = torch.arange(20) % 2
    data = from_torch_dataset(TensorDataset(x, y), test_fraction=0.25, split_seed=0, name="toy")
    assert data.name == "toy" and data.num_classes == 2 and data.x_train.shape == (15, 2)
    for xs, ys in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        rows = (xs[:, 0] / 2).long()
        assert torch.equal(xs, x[rows]) and torch.equal(ys, y[rows])  # rows keep their labels
    again = from_torch_dataset(TensorDataset(x, y), test_fraction=0.25, split_seed=0)
    assert torch.equal(again.x_test, data.x_test)
    assert sorted(torch.cat([data.x_train[:, 0], data.x_test[:, 0]]).tolist()) == x[:, 0].tolist()


def test_custom_numpy_dataset_with_a_test_dataset():
    data = from_torch_dataset(NumpyPairs(12), NumpyPairs(6))
    assert data.x_train.dtype == torch.float32 and data.x_train.shape == (12, 2, 4)
    assert torch.equal(data.x_train[:, 0, 0], torch.arange(12.0))
    assert data.y_train.tolist() == [i % 3 for i in range(12)]
    assert data.x_test.shape == (6, 2, 4) and data.num_classes == 3


def test_numbers_sequences_and_zero_d_tensor_labels():
    items = [([float(i), 2.0 * i], torch.tensor(i % 2)) for i in range(8)] + [(9, 1), (10, 0)]
    with pytest.raises(ValueError) as exc:  # shapes differ: sample 8 is a single number
        from_torch_dataset(Items(items))
    assert "`train[8][0]`" in _error(exc) and "(2,)" in _error(exc) and "(1,)" in _error(exc)
    data = from_torch_dataset(Items(items[:8]), test_fraction=0.5)
    assert data.x_train.shape == (4, 2)
    scalars = from_torch_dataset(Items([(float(i), i % 2) for i in range(8)]), test_fraction=0.5)
    assert scalars.x_train.shape == (4, 1)


def test_num_classes_inferred_or_given():
    ds = TensorDataset(torch.zeros(12, 1), torch.tensor([0, 2] * 6))
    assert from_torch_dataset(ds, test_fraction=0.5).num_classes == 3  # max + 1, labels kept as given
    data = from_torch_dataset(ds, test_fraction=0.5, num_classes=5)
    assert data.num_classes == 5 and set(data.y_train.tolist()) == {0, 2}
    with pytest.raises(ValueError) as exc:
        from_torch_dataset(ds, num_classes=2)
    assert "`num_classes`" in _error(exc) and "at least 3" in _error(exc)


@pytest.mark.parametrize("dataset, name", [
    (TensorDataset(torch.zeros(6, 1), torch.zeros(6, dtype=torch.long)), "`train`"),  # one class
    (TensorDataset(torch.zeros(6, 1), torch.tensor([0, 1, -1, 0, 1, 0])), "`train`"),
    (TensorDataset(torch.zeros(6, 1), torch.tensor([0.0, 1.0] * 3)), "`train[0][1]`"),
    (TensorDataset(torch.full((6, 1), float("nan")), torch.tensor([0, 1] * 3)), "`train`"),
    (Items([(torch.zeros(2),)] * 4), "`train[0]`"),
    (Items([("text", 0)] * 4), "`train[0][0]`"),
    (Items([(torch.zeros(2), True)] * 4), "`train[0][1]`"),
    (Items([]), "`train`"),
    ([1, 2, 3].__iter__(), "`train`"),
])
def test_adapter_errors(dataset, name):
    with pytest.raises(ValueError) as exc:
        from_torch_dataset(dataset)
    assert name in _error(exc)


def test_iterable_dataset_is_refused():
    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(1), 0

    with pytest.raises(ValueError) as exc:
        from_torch_dataset(Stream())
    assert "map-style" in _error(exc)


def test_test_dataset_must_match_the_sample_shape():
    with pytest.raises(ValueError) as exc:
        from_torch_dataset(NumpyPairs(6), NumpyPairs(6, shape=(3,)))
    assert "`test`" in _error(exc)


# ---- register_dataset ---------------------------------------------------------------------------

def _data(n=16, c=2, seed=0):
    g = np.random.default_rng(seed)
    return from_arrays(g.normal(size=(n, 3)), np.arange(n) % c, test_fraction=0.5)


def test_registered_data_is_found_and_replaced(user_names):
    user_names.append("my_data")
    first, second = _data(), _data(20, 4, seed=1)
    register_dataset("my_data", first, reference="my lab's measurements")
    entry = REGISTRY.get("dataset", "my_data")
    assert entry.obj() is first and entry.reference == "my lab's measurements" and entry.resolve() == {}
    assert "References:" in entry.obj.__doc__ and entry.family == "user"
    register_dataset("my_data", second)  # notebooks iterate: the same name is replaced
    assert REGISTRY.get("dataset", "my_data").obj() is second
    unregister_dataset("my_data")
    assert "my_data" not in REGISTRY.names("dataset")


def test_registered_builder_is_called_lazily_and_checked(user_names):
    user_names.extend(["lazy", "broken"])
    calls = []

    def build():
        calls.append(1)
        return _data()

    register_dataset("lazy", build)
    assert calls == []
    assert isinstance(REGISTRY.get("dataset", "lazy").obj(), SplitData) and calls == [1]
    register_dataset("broken", lambda: "not data")
    with pytest.raises(ValueError) as exc:
        REGISTRY.get("dataset", "broken").obj()
    assert "builder" in _error(exc) and "SplitData" in _error(exc)


def test_builtin_names_are_refused(user_names):
    import losslab.data.tabular  # noqa: F401  (registers `table`)

    for name in ("digits", "table"):
        with pytest.raises(ValueError) as exc:
            register_dataset(name, _data())
        assert "`name`" in _error(exc) and "built-in" in _error(exc) and name in _error(exc)
    assert REGISTRY.get("dataset", "digits").family == "image"


@pytest.mark.parametrize("args, name", [
    (("", None), "`name`"),
    (("has space", None), "`name`"),
    (("ok_name", 3), "`data_or_builder`"),
])
def test_register_errors(args, name):
    data = _data() if args[1] is None else args[1]
    with pytest.raises(ValueError) as exc:
        register_dataset(args[0], data)
    assert name in _error(exc)
    with pytest.raises(ValueError) as exc:
        unregister_dataset("digits")
    assert "`name`" in _error(exc)


def test_malformed_split_data_is_refused():
    good = _data()
    bad = SplitData("x", good.x_train, good.y_train.int(), good.x_test, good.y_test, num_classes=2)
    with pytest.raises(ValueError) as exc:
        register_dataset("bad_one", bad)
    assert "y_train" in _error(exc) and "int64" in _error(exc)
    out_of_range = SplitData("x", good.x_train, good.y_train + 5, good.x_test, good.y_test, num_classes=2)
    with pytest.raises(ValueError) as exc:
        check_split_data(out_of_range)
    assert "`data.y_train`" in _error(exc) and "[0, 2)" in _error(exc)
    assert "bad_one" not in REGISTRY.names("dataset")


def test_registered_dataset_runs_through_a_spec_resolution(user_names):
    """What the engine does with `{name: NAME}`: resolve the entry, build, apply a condition."""
    user_names.append("spec_data")
    register_dataset("spec_data", lambda: from_torch_dataset(NumpyPairs(60), name="spec_data"))
    entry = REGISTRY.get("dataset", "spec_data")
    data = entry.obj(**entry.resolve({}))
    with pytest.raises(ValueError) as exc:
        entry.resolve({"path": "x"})
    assert "Unknown hyper-parameter 'path'" in str(exc.value)
    for condition, params in (("symmetric_noise", {"rate": 0.3}), ("long_tail", {"ratio": 5.0})):
        cond = REGISTRY.get("condition", condition)
        out = cond.obj(data, generator=torch.Generator().manual_seed(0), **cond.resolve(params))
        assert out.x_test is data.x_test and out.records[-1].name == condition
        rows = out.x_train[:, 0, 0].long()
        assert torch.equal(out.y_train_clean, rows % 3)  # clean labels still follow their samples
