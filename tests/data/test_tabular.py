"""The `table` dataset: CSV/TSV/Parquet files read, encoded and split without test leakage."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from losslab.core.registry import REGISTRY
from losslab.data.base import SplitData
from losslab.data.tabular import (
    UNSEEN_CODE,
    fit_tabular_encoder,
    load_table,
    make_table,
    select_features,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "breast_cancer.csv"


def _error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    return msg


def _frame(n=60, seed=0):
    """Three classes (ids 0..2), a unique `id`, two numeric and one text feature."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return pd.DataFrame({
        "id": np.arange(n, dtype=float),
        "a": rng.normal(5.0, 2.0, n) + y,
        "b": rng.uniform(-1, 1, n),
        "color": rng.choice(["red", "green", "blue"], n),
        "label": y,
    })


def _csv(tmp_path, frame, name="toy.csv", **kw):
    path = tmp_path / name
    frame.to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",", **kw)
    return str(path)


def _rows(data: SplitData, split: str) -> np.ndarray:
    """The `id` column (first feature, unstandardized) of a split: which source rows it holds."""
    return getattr(data, f"x_{split}")[:, 0].numpy().astype(int)


# ---- the shipped example ------------------------------------------------------------------------

def test_breast_cancer_example_is_sklearns_data_exactly():
    frame = pd.read_csv(EXAMPLE)
    bunch = load_breast_cancer()
    assert frame.shape == (569, 31) and list(frame.columns[:-1]) == [n.replace(" ", "_") for n in bunch.feature_names]
    np.testing.assert_array_equal(frame.iloc[:, :30].to_numpy(), bunch.data)  # same values, same rounding
    assert (frame["diagnosis"].to_numpy() == bunch.target_names[bunch.target]).all()


def test_breast_cancer_example_loads_with_encode_target():
    data = load_table(str(EXAMPLE), "diagnosis", encode_target=True)
    assert data.name == "table:breast_cancer" and data.num_classes == 2
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.x_train.shape == (426, 30) and data.x_test.shape == (143, 30)
    # sorted distinct values: benign -> 0 (357 rows), malignant -> 1 (212 rows)
    counts = torch.bincount(torch.cat([data.y_train, data.y_test])).tolist()
    assert counts == [357, 212]


def test_text_target_without_encode_target_says_how_to_fix(tmp_path):
    with pytest.raises(ValueError) as exc:
        load_table(str(EXAMPLE), "diagnosis")
    msg = _error(exc)
    assert "`target`" in msg and "'diagnosis'" in msg and "encode_target: true" in msg


# ---- standardization: fitted on the train split only --------------------------------------------

def test_standardization_uses_train_statistics_only(tmp_path):
    path = _csv(tmp_path, _frame(200).drop(columns=["color"]))
    raw = load_table(path, "label", features=["a", "b"], standardize=False)
    std = load_table(path, "label", features=["a", "b"])
    scaler = StandardScaler().fit(raw.x_train.double().numpy())  # fitted by hand on the raw train rows
    np.testing.assert_allclose(std.x_train.numpy(), scaler.transform(raw.x_train.double().numpy()), atol=1e-5)
    np.testing.assert_allclose(std.x_test.numpy(), scaler.transform(raw.x_test.double().numpy()), atol=1e-5)
    assert float(std.x_train.double().mean(0).abs().max()) < 1e-6
    assert float(std.x_train.double().std(0, unbiased=False).sub(1).abs().max()) < 1e-5
    assert float(std.x_test.double().mean(0).abs().max()) > 1e-3  # the test split is not re-centred
    assert torch.equal(raw.y_train, std.y_train) and torch.equal(raw.y_test, std.y_test)


def test_constant_columns_map_to_zero_not_nan(tmp_path):
    frame = _frame(40).assign(zero=0.0, tenth=0.1, big=1e5 / 3)
    data = load_table(_csv(tmp_path, frame), "label", features=["zero", "tenth", "big", "a"])
    for x in (data.x_train, data.x_test):
        assert bool(torch.isfinite(x).all())
        assert torch.equal(x[:, :3], torch.zeros_like(x[:, :3]))


def test_non_finite_feature_is_an_error(tmp_path):
    frame = _frame(30)
    frame.loc[4, "b"] = np.inf
    with pytest.raises(ValueError) as exc:
        load_table(_csv(tmp_path, frame), "label")
    assert "'b'" in _error(exc) and "`features`" in _error(exc)


# ---- categorical features -----------------------------------------------------------------------

def test_onehot_and_ordinal_encode_each_row_by_the_sorted_vocabulary(tmp_path):
    frame = _frame(60)
    path = _csv(tmp_path, frame)
    onehot = load_table(path, "label", features=["id", "color"], standardize=False)
    ordinal = load_table(path, "label", features=["id", "color"], standardize=False, categorical="ordinal")
    vocab = ["blue", "green", "red"]
    assert onehot.x_train.shape[1] == 4 and ordinal.x_train.shape[1] == 2
    for split in ("train", "test"):
        ids = _rows(onehot, split)
        codes = np.array([vocab.index(c) for c in frame["color"].to_numpy()[ids]])
        np.testing.assert_array_equal(getattr(onehot, f"x_{split}")[:, 1:].numpy(), np.eye(3)[codes])
        assert np.array_equal(_rows(ordinal, split), ids)
        np.testing.assert_array_equal(getattr(ordinal, f"x_{split}")[:, 1].numpy(), codes)


def test_unseen_test_category_is_zeros_for_onehot_and_reserved_code_for_ordinal():
    train = pd.DataFrame({"c": ["b", "a", "b"], "v": [1.0, 2.0, 3.0]})
    test = pd.DataFrame({"c": ["z", "a"], "v": [2.0, 2.0]})
    onehot = fit_tabular_encoder(train, ["c", "v"])
    assert onehot.feature_names == ["c=a", "c=b", "v"]
    out = onehot.transform(test)
    np.testing.assert_array_equal(out[:, :2], [[0, 0], [1, 0]])
    np.testing.assert_allclose(out[:, 2], (2.0 - 2.0) / np.std([1.0, 2.0, 3.0]))
    ordinal = fit_tabular_encoder(train, ["c", "v"], categorical="ordinal", standardize=False)
    np.testing.assert_array_equal(ordinal.transform(test), [[UNSEEN_CODE, 2.0], [0.0, 2.0]])


def test_bad_categorical_choice_lists_the_choices(tmp_path):
    with pytest.raises(ValueError) as exc:
        load_table(_csv(tmp_path, _frame()), "label", categorical="hashing")
    assert "`categorical`" in _error(exc) and "'onehot'" in _error(exc) and "'ordinal'" in _error(exc)


# ---- feature selection --------------------------------------------------------------------------

def test_feature_names_and_globs():
    cols = ["mean_a", "mean_b", "worst_a", "label", "id"]
    assert select_features(cols, "label") == ["mean_a", "mean_b", "worst_a", "id"]
    assert select_features(cols, "label", ["id", "mean_*"]) == ["id", "mean_a", "mean_b"]
    assert select_features(cols, "label", ["*"]) == ["mean_a", "mean_b", "worst_a", "id"]  # glob skips the target
    assert select_features(cols, "label", ["*_a", "mean_a"]) == ["mean_a", "worst_a"]  # no duplicates


def test_a_pattern_matching_nothing_is_named(tmp_path):
    with pytest.raises(ValueError) as exc:
        load_table(_csv(tmp_path, _frame()), "label", features=["a", "size_*"])
    assert "`features`" in _error(exc) and "'size_*'" in _error(exc)


def test_the_target_cannot_be_a_feature():
    with pytest.raises(ValueError) as exc:
        select_features(["a", "label"], "label", ["a", "label"])
    assert "`features`" in _error(exc) and "'label'" in _error(exc)


def test_a_single_feature_string_is_a_list_of_one(tmp_path):
    data = load_table(_csv(tmp_path, _frame()), "label", features="b")
    assert data.x_train.shape[1] == 1


# ---- missing values -----------------------------------------------------------------------------

def test_missing_values_are_an_error_naming_columns_and_rows(tmp_path):
    frame = _frame(30)
    frame.loc[[1, 2, 3], "a"] = np.nan
    frame.loc[[3, 9], "color"] = np.nan
    frame.loc[5, "label"] = np.nan
    with pytest.raises(ValueError) as exc:
        load_table(_csv(tmp_path, frame), "label")
    msg = _error(exc)
    assert "'a' (3 rows)" in msg and "'color' (2 rows)" in msg and "'label' (1 row)" in msg
    assert "5 of 30 rows" in msg and "drop" in msg


def test_missing_drop_drops_exactly_the_incomplete_rows(tmp_path):
    frame = _frame(30)
    frame.loc[[1, 2, 3], "a"] = np.nan
    frame.loc[5, "label"] = np.nan  # the label column becomes float; integer values are still ids
    frame.loc[7, "b"] = np.nan  # b is not used: the row stays
    data = load_table(_csv(tmp_path, frame), "label", features=["id", "a"], missing="drop", standardize=False)
    kept = np.sort(np.r_[_rows(data, "train"), _rows(data, "test")])
    np.testing.assert_array_equal(kept, np.setdiff1d(np.arange(30), [1, 2, 3, 5]))
    assert data.num_classes == 3


def test_missing_drop_of_every_row_is_an_error(tmp_path):
    frame = _frame(12).assign(a=np.nan)
    with pytest.raises(ValueError) as exc:
        load_table(_csv(tmp_path, frame), "label", missing="drop")
    assert "`missing`" in _error(exc)


# ---- the target ---------------------------------------------------------------------------------

def test_unknown_target_lists_the_columns(tmp_path):
    with pytest.raises(ValueError) as exc:
        load_table(_csv(tmp_path, _frame()), "lable")
    msg = _error(exc)
    assert "`target`" in msg and "'lable'" in msg and "['id', 'a', 'b', 'color', 'label']" in msg
    assert "did you mean 'label'" in msg


def test_single_class_is_an_error(tmp_path):
    with pytest.raises(ValueError) as exc:
        load_table(_csv(tmp_path, _frame().assign(label=4)), "label")
    assert "'label'" in _error(exc) and "at least 2 classes" in _error(exc)


def test_non_integer_float_target_is_an_error(tmp_path):
    with pytest.raises(ValueError) as exc:
        load_table(_csv(tmp_path, _frame().assign(label=lambda f: f["label"] + 0.5)), "label")
    assert "'label'" in _error(exc) and "regression" in _error(exc)


def test_non_contiguous_ids_are_remapped_to_their_rank(tmp_path):
    frame = _frame(60)
    frame["label"] = np.array([-5, 3, 40])[frame["label"]]
    data = load_table(_csv(tmp_path, frame), "label", features=["id"], standardize=False)
    assert data.num_classes == 3
    for split in ("train", "test"):
        expected = np.searchsorted([-5, 3, 40], frame["label"].to_numpy()[_rows(data, split)])
        np.testing.assert_array_equal(getattr(data, f"y_{split}").numpy(), expected)


def test_encode_target_maps_sorted_distinct_values(tmp_path):
    frame = _frame(60)
    frame["label"] = np.array(["zebra", "ant", "moth"])[frame["label"]]
    data = load_table(_csv(tmp_path, frame), "label", features=["id"], standardize=False, encode_target=True)
    expected = np.searchsorted(["ant", "moth", "zebra"], frame["label"].to_numpy()[_rows(data, "train")])
    np.testing.assert_array_equal(data.y_train.numpy(), expected)


# ---- the split ----------------------------------------------------------------------------------

def test_split_is_stratified_and_deterministic(tmp_path):
    frame = _frame(200)
    frame["label"] = np.r_[np.zeros(120, int), np.ones(60, int), np.full(20, 2)]
    path = _csv(tmp_path, frame)
    data = load_table(path, "label", test_fraction=0.25, features=["id"], standardize=False)
    assert data.x_test.shape[0] == 50
    for c, n in enumerate((120, 60, 20)):
        assert abs(int((data.y_test == c).sum()) - n * 0.25) <= 1
    again = load_table(path, "label", test_fraction=0.25, features=["id"], standardize=False)
    other = load_table(path, "label", test_fraction=0.25, features=["id"], standardize=False, split_seed=1)
    assert torch.equal(data.x_test, again.x_test) and torch.equal(data.y_train, again.y_train)
    assert not np.array_equal(np.sort(_rows(data, "test")), np.sort(_rows(other, "test")))
    assert set(_rows(data, "train")).isdisjoint(_rows(data, "test"))


def test_a_class_too_small_to_stratify_is_named(tmp_path):
    frame = _frame(30)
    frame.loc[0, "label"] = 7
    with pytest.raises(ValueError) as exc:
        load_table(_csv(tmp_path, frame), "label")
    assert "`target`" in _error(exc) and "class 7" in _error(exc) and "stratified" in _error(exc)


@pytest.mark.parametrize("fraction", [0.01, 0.0, 1.0])
def test_bad_test_fraction(tmp_path, fraction):
    with pytest.raises(ValueError) as exc:
        load_table(_csv(tmp_path, _frame(30)), "label", test_fraction=fraction)
    assert "`test_fraction`" in _error(exc)


# ---- files --------------------------------------------------------------------------------------

def test_relative_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    _csv(tmp_path, _frame())
    monkeypatch.chdir(tmp_path)
    assert load_table("toy.csv", "label").name == "table:toy"
    with pytest.raises(ValueError) as exc:
        load_table("missing/nope.csv", "label")
    msg = _error(exc)
    assert "`path`" in msg and "'missing/nope.csv'" in msg and str(tmp_path) in msg


def test_absolute_missing_path_and_bad_suffix(tmp_path):
    with pytest.raises(ValueError) as exc:
        load_table(str(tmp_path / "nope.csv"), "label")
    assert "`path`" in _error(exc) and "nope.csv" in _error(exc)
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(ValueError) as exc:
        load_table(str(tmp_path / "data.xlsx"), "label")
    assert "`path`" in _error(exc) and ".parquet" in _error(exc)


def test_header_only_and_empty_files_are_errors(tmp_path):
    (tmp_path / "head.csv").write_text("a,label\n")
    (tmp_path / "empty.csv").write_text("")
    for name in ("head.csv", "empty.csv"):
        with pytest.raises(ValueError) as exc:
            load_table(str(tmp_path / name), "label")
        assert "`path`" in _error(exc) and name in _error(exc)


def test_tsv_reads_like_csv(tmp_path):
    frame = _frame()
    a = load_table(_csv(tmp_path, frame, "toy.tsv"), "label")
    b = load_table(_csv(tmp_path, frame, "toy.csv"), "label")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    with pytest.raises(ValueError) as exc:
        load_table(str(tmp_path / "t.parquet"), "label")
    assert "`path`" in _error(exc) and "pip install 'losslab[parquet]'" in _error(exc)


def test_parquet_round_trip(tmp_path):
    pytest.importorskip("pyarrow")
    frame = _frame()
    frame.to_parquet(tmp_path / "toy.pq")
    a = load_table(str(tmp_path / "toy.pq"), "label")
    b = load_table(_csv(tmp_path, frame), "label")
    assert a.name == "table:toy" and torch.allclose(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)


# ---- registry and conditions --------------------------------------------------------------------

def test_registry_entry_resolves_spec_params(tmp_path):
    entry = REGISTRY.get("dataset", "table")
    assert entry.obj is make_table
    params = entry.resolve({"path": _csv(tmp_path, _frame()), "target": "label", "features": "a"})
    data = entry.obj(**params)
    assert data.x_train.shape[1] == 1 and data.num_classes == 3
    with pytest.raises(ValueError) as exc:
        entry.obj(**entry.resolve({"target": "label"}))
    assert "`path`" in _error(exc)


@pytest.mark.parametrize("condition, params", [("symmetric_noise", {"rate": 0.4}), ("long_tail", {"ratio": 4.0})])
def test_conditions_apply_unchanged(tmp_path, condition, params):
    data = load_table(str(EXAMPLE), "diagnosis", encode_target=True)
    entry = REGISTRY.get("condition", condition)
    out = entry.obj(data, generator=torch.Generator().manual_seed(0), **entry.resolve(params))
    assert out.x_test is data.x_test and torch.equal(out.y_train_clean, data.y_train[out.records[-1].changed.get(
        "kept_index", torch.arange(data.y_train.shape[0]))])
    assert out.records[-1].name == condition
