"""The `arrays` dataset and `from_arrays`: NumPy data as a SplitData, with the shared label and split rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from losslab.core.registry import REGISTRY
from losslab.data.arrays import encode_class_ids, from_arrays, load_arrays, resolve_path, stratified_split


def _error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    return msg


def _xy(n=40, c=4, shape=(3,), seed=0):
    rng = np.random.default_rng(seed)
    x = 0.1 * rng.normal(size=(n, *shape))
    x[:, ...] += np.arange(n).reshape(n, *([1] * len(shape)))  # sample i is identifiable by its mean
    return x, np.arange(n) % c


def _index(x: torch.Tensor) -> np.ndarray:
    """Recover each row's source index from `_xy` features."""
    return np.rint(x.reshape(x.shape[0], -1).double().mean(1).numpy()).astype(int)


# ---- labels -------------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-50, 50), min_size=2, max_size=60).filter(lambda v: len(set(v)) >= 2))
def test_class_ids_are_ranks_of_the_distinct_values(values):
    ids, classes = encode_class_ids(np.array(values))
    distinct = sorted(set(values))
    assert ids.dtype == np.int64 and classes.tolist() == distinct
    assert ids.tolist() == [distinct.index(v) for v in values]  # rank, an independent formula
    np.testing.assert_array_equal(classes[ids], values)


def test_contiguous_ids_are_kept_and_integer_floats_accepted():
    ids, _ = encode_class_ids(np.array([2, 0, 1, 2]))
    assert ids.tolist() == [2, 0, 1, 2]
    ids, classes = encode_class_ids(np.array([1.0, 0.0, 1.0]))
    assert ids.tolist() == [1, 0, 1] and classes.dtype == np.int64


def test_label_errors_are_one_line_and_named():
    with pytest.raises(ValueError) as exc:
        encode_class_ids(np.array([0.0, 0.5]), "y")
    assert "`y`" in _error(exc) and "regression" in _error(exc) and "0.5" in _error(exc)
    with pytest.raises(ValueError) as exc:
        encode_class_ids(np.array([3, 3, 3]), "y")
    assert "at least 2 classes" in _error(exc) and "3" in _error(exc)
    with pytest.raises(ValueError) as exc:
        encode_class_ids(np.array(["a", "b"]), "y")
    assert "non-numeric" in _error(exc)
    with pytest.raises(ValueError) as exc:
        encode_class_ids(np.zeros((2, 2)), "y")
    assert "1-D" in _error(exc)
    assert encode_class_ids(np.array(["b", "a", "b"]), encode=True)[0].tolist() == [1, 0, 1]


# ---- the split ----------------------------------------------------------------------------------

def test_stratified_split_partitions_and_keeps_proportions():
    y = np.r_[np.zeros(80, int), np.ones(40, int), np.full(8, 2)]
    tr, te = stratified_split(y, test_fraction=0.25, split_seed=3)
    assert sorted(np.r_[tr, te].tolist()) == list(range(128)) and len(te) == 32
    for c, n in enumerate((80, 40, 8)):
        assert abs(int((y[te] == c).sum()) - n / 4) <= 1
    tr2, te2 = stratified_split(y, test_fraction=0.25, split_seed=3)
    assert np.array_equal(te, te2) and not np.array_equal(np.sort(te), np.sort(stratified_split(
        y, test_fraction=0.25, split_seed=4)[1]))


def test_stratified_split_errors():
    with pytest.raises(ValueError) as exc:
        stratified_split(np.array([0, 0, 0, 1]), test_fraction=0.5, split_seed=0, name="y",
                         classes=np.array(["cat", "dog"]))
    assert "`y`" in _error(exc) and "'dog'" in _error(exc)
    with pytest.raises(ValueError) as exc:
        stratified_split(np.arange(30) % 3, test_fraction=0.05, split_seed=0)
    assert "`test_fraction`" in _error(exc) and "3 classes" in _error(exc)
    with pytest.raises(ValueError) as exc:
        stratified_split(np.arange(30) % 3, test_fraction=0.3, split_seed=-1)
    assert "`split_seed`" in _error(exc)


# ---- from_arrays --------------------------------------------------------------------------------

def test_from_arrays_split_rows_stay_with_their_labels():
    x, y = _xy(40, 4)
    data = from_arrays(x, y + 10, name="mine")  # ids 10..13 remapped to 0..3
    assert data.name == "mine" and data.num_classes == 4 and data.x_train.dtype == torch.float32
    for xs, ys in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        np.testing.assert_array_equal(ys.numpy(), _index(xs) % 4)
    assert data.x_test.shape == (10, 3)


def test_from_arrays_accepts_tensors_and_explicit_test_split():
    x, y = _xy(20, 2)
    xt, yt = _xy(6, 2, seed=1)
    data = from_arrays(torch.from_numpy(x), torch.from_numpy(y * 5), x_test=xt, y_test=yt * 5)
    assert torch.equal(data.x_train, torch.from_numpy(x).float())
    assert torch.equal(data.x_test, torch.from_numpy(xt).float())
    assert data.y_train.tolist() == y.tolist() and data.y_test.tolist() == yt.tolist()  # {0, 5} -> {0, 1}


def test_gray_images_gain_a_channel_other_shapes_are_kept():
    x, y = _xy(16, 2, shape=(5, 6))
    assert from_arrays(x, y).x_train.shape[1:] == (1, 5, 6)
    x4, y4 = _xy(16, 2, shape=(3, 5, 6))
    assert from_arrays(x4, y4).x_train.shape[1:] == (3, 5, 6)
    x2, y2 = _xy(16, 2, shape=(7,))
    assert from_arrays(x2, y2).x_train.shape[1:] == (7,)


@pytest.mark.parametrize("kwargs, name", [
    ({"x": np.zeros(8), "y": np.arange(8) % 2}, "`x`"),
    ({"x": np.array([["a"]] * 8), "y": np.arange(8) % 2}, "`x`"),
    ({"x": np.full((8, 2), np.nan), "y": np.arange(8) % 2}, "`x`"),
    ({"x": np.zeros((8, 2)), "y": np.arange(7) % 2}, "`y`"),
    ({"x": np.zeros((8, 2)), "y": np.arange(8) % 2, "x_test": np.zeros((4, 2))}, "`y_test`"),
    ({"x": np.zeros((8, 2)), "y": np.arange(8) % 2, "x_test": np.zeros((4, 3)), "y_test": np.arange(4) % 2},
     "`x_test`"),
    ({"x": np.zeros((8, 2)), "y": np.zeros(8)}, "`y`"),
])
def test_from_arrays_errors(kwargs, name):
    with pytest.raises(ValueError) as exc:
        from_arrays(**kwargs)
    assert name in _error(exc)


# ---- files --------------------------------------------------------------------------------------

def test_npz_with_x_and_y_is_split(tmp_path):
    x, y = _xy(40, 4, shape=(6, 6))
    np.savez(tmp_path / "imgs.npz", x=x.astype(np.float32), y=y)
    data = load_arrays(path=str(tmp_path / "imgs.npz"))
    assert data.name == "arrays:imgs" and data.x_train.shape == (30, 1, 6, 6)
    np.testing.assert_array_equal(data.y_test.numpy(), _index(data.x_test) % 4)
    assert torch.equal(data.x_test, load_arrays(path=str(tmp_path / "imgs.npz")).x_test)  # deterministic


def test_npz_with_a_stored_split_is_used_as_is(tmp_path):
    x, y = _xy(12, 3)
    xt, yt = _xy(6, 3, seed=2)
    np.savez(tmp_path / "s.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    data = load_arrays(path=str(tmp_path / "s.npz"), test_fraction=0.9)  # ignored: the split is stored
    assert torch.equal(data.x_test, torch.from_numpy(xt).float()) and data.y_train.tolist() == y.tolist()


def test_npy_features_with_npy_labels(tmp_path, monkeypatch):
    x, y = _xy(24, 3)
    np.save(tmp_path / "feat.npy", x)
    np.save(tmp_path / "lab.npy", y)
    monkeypatch.chdir(tmp_path)
    data = load_arrays(path="feat.npy", target_path="lab.npy", split_seed=2)
    assert data.name == "arrays:feat" and data.x_train.shape[0] + data.x_test.shape[0] == 24
    with pytest.raises(ValueError) as exc:
        load_arrays(path="feat.npy")
    assert "`target_path`" in _error(exc)
    with pytest.raises(ValueError) as exc:
        load_arrays(path="feat.npy", target_path="gone.npy")
    assert "`target_path`" in _error(exc) and "'gone.npy'" in _error(exc) and str(tmp_path) in _error(exc)


def test_file_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", a=np.zeros(3), b=np.zeros(3))
    with pytest.raises(ValueError) as exc:
        load_arrays(path=str(tmp_path / "bad.npz"))
    assert "`path`" in _error(exc) and "['a', 'b']" in _error(exc)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "lab.npy", np.arange(2))
    with pytest.raises(ValueError) as exc:
        load_arrays(path=str(tmp_path / "obj.npy"), target_path=str(tmp_path / "lab.npy"))
    assert "`path`" in _error(exc) and "allow_pickle=False" in _error(exc)
    np.savez(tmp_path / "ok.npz", x=np.zeros((8, 2)), y=np.arange(8) % 2)
    with pytest.raises(ValueError) as exc:
        load_arrays(path=str(tmp_path / "ok.npz"), target_path=str(tmp_path / "lab.npy"))
    assert "`target_path`" in _error(exc)
    with pytest.raises(ValueError) as exc:
        load_arrays(path=str(tmp_path / "x.csv"))
    assert "`path`" in _error(exc) and ".npz" in _error(exc)
    with pytest.raises(ValueError) as exc:
        load_arrays()
    assert "`path`" in _error(exc)


def test_resolve_path_names_the_argument_and_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as exc:
        resolve_path("nope", "root", directory=True)
    assert "`root`" in _error(exc) and "existing folder" in _error(exc) and str(tmp_path) in _error(exc)
    assert resolve_path(".", "root", directory=True) == tmp_path


# ---- registry and conditions --------------------------------------------------------------------

@pytest.mark.parametrize("condition, params", [("symmetric_noise", {"rate": 0.4}), ("long_tail", {"ratio": 4.0})])
def test_conditions_apply_unchanged(tmp_path, condition, params):
    x, y = _xy(80, 4, shape=(4, 4))
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = REGISTRY.get("dataset", "arrays")
    data = ds.obj(**ds.resolve({"path": str(tmp_path / "d.npz")}))
    entry = REGISTRY.get("condition", condition)
    out = entry.obj(data, generator=torch.Generator().manual_seed(0), **entry.resolve(params))
    assert out.x_test is data.x_test and out.records[-1].name == condition
    np.testing.assert_array_equal(out.y_train_clean.numpy(), _index(out.x_train) % 4)  # clean labels follow rows
