"""Bring your own table: a CSV, TSV or Parquet file as a :class:`~losslab.data.base.SplitData`.

The pipeline is read → select columns → handle missing values → encode the
target → stratified split → fit the feature encoder on the *train* rows only →
encode both splits. Fitting on the train split alone keeps test statistics
(means, stds, category vocabularies) out of training, as a held-out set must be.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from losslab.core.registry import choice, flag, integer, real, register, text, texts
from losslab.core.validation import check_choice, fail
from losslab.data.arrays import encode_class_ids, resolve_path, stratified_split
from losslab.data.base import SplitData

SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
CATEGORICAL = ("onehot", "ordinal")
MISSING = ("error", "drop")
UNSEEN_CODE = -1.0  # ordinal code of a test category absent from the train split
_GLOB_CHARS = set("*?[")


def read_table(path: Any) -> pd.DataFrame:
    """Read a ``.csv``, ``.tsv`` or ``.parquet``/``.pq`` file (chosen by suffix) with pandas.

    Column names become strings. Parquet needs ``pyarrow``
    (``pip install 'losslab[parquet]'``).

    Args:
        path: the file; a relative path is resolved against the working directory.

    Returns:
        The table as a :class:`pandas.DataFrame` with at least one row.

    Raises:
        ValueError: (one line, naming ``path``) on a missing file, another suffix,
            Parquet without pyarrow, a file pandas cannot parse, or no rows.
    """
    file = resolve_path(path, "path", suffixes=SUFFIXES)
    suffix = file.suffix.lower()
    if suffix in (".parquet", ".pq") and importlib.util.find_spec("pyarrow") is None:
        fail("path", "a CSV or TSV file, or Parquet with pyarrow installed "
             "(pip install 'losslab[parquet]')", f"{str(path)!r} and pyarrow is not installed")
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(file, engine="pyarrow")
        else:
            frame = pd.read_csv(file, sep="\t" if suffix == ".tsv" else ",")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        fail("path", f"a readable {suffix} table", f"{str(path)!r} ({first})")
    if len(frame) == 0:
        fail("path", "a table with at least one data row", f"{str(path)!r} with only a header")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def select_features(columns: Sequence[str], target: str, features: Sequence[str] | None = None) -> list[str]:
    """The feature columns: names or ``fnmatch`` glob patterns, in the order given, without the target.

    Args:
        columns: the table's column names.
        target: the label column, never a feature.
        features: column names or glob patterns (``"mean_*"``); ``None`` takes
            every column except ``target``. An exact name wins over a pattern.
            A pattern that also matches the target simply skips it.

    Returns:
        Distinct column names, first match first.

    Raises:
        ValueError: on a name or pattern that matches no column, the target named
            explicitly as a feature, or no feature column left.

    Example:
        >>> select_features(["a1", "a2", "b", "y"], "y", ["b", "a*"])
        ['b', 'a1', 'a2']
    """
    if features is None:
        chosen = [c for c in columns if c != target]
    else:
        chosen = []
        for item in features:
            if item == target:
                fail("features", "columns other than the target (it would leak the label)", repr(item))
            hits = [item] if item in columns else (
                [c for c in columns if fnmatch.fnmatchcase(c, item)] if _GLOB_CHARS & set(item) else [])
            if not hits:
                fail("features", f"column names or glob patterns matching one of the columns {list(columns)}",
                     f"{item!r}, which matches none")
            chosen += [c for c in hits if c != target and c not in chosen]
    if not chosen:
        fail("features", "at least one column besides the target", f"none in {list(columns)}")
    return chosen


def _check_target_column(columns: Sequence[str], target: Any) -> str:
    if not isinstance(target, str) or not target:
        fail("target", "the name of the label column", repr(target))
    if target not in columns:
        hint = difflib.get_close_matches(target, list(columns), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        fail("target", f"one of the columns {list(columns)}", f"{target!r}{extra}")
    return target


def handle_missing(frame: pd.DataFrame, used: Sequence[str], missing: str = "error") -> pd.DataFrame:
    """Refuse (``"error"``) or drop (``"drop"``) rows with a missing value in a ``used`` column.

    Missing values in columns that are not used are ignored.

    Raises:
        ValueError: with ``"error"``, one line naming each column with missing
            values, its row count and the total; with ``"drop"``, when no row is left.
    """
    check_choice(missing, "missing", MISSING)
    na = frame[list(used)].isna()
    rows = na.any(axis=1)
    if not rows.any():
        return frame
    if missing == "error":
        per_column = ", ".join(f"{c!r} ({int(n)} row{'s' * (n != 1)})" for c, n in na.sum().items() if n)
        raise ValueError(f"Expected no missing values in the target and feature columns (or `missing: drop` to "
                         f"drop those rows), but got missing values in {per_column}: {int(rows.sum())} of "
                         f"{len(frame)} rows.")
    kept = frame.loc[~rows]
    if len(kept) == 0:
        fail("missing", "'error' or a table with complete rows", f"'drop', which drops all {len(frame)} rows")
    return kept


def target_class_ids(series: pd.Series, *, encode: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The label column as int64 class ids ``0..C-1`` plus the original value of each id.

    Numeric columns must hold integer class ids (``2.0`` counts); ids that are
    not ``0..C-1`` are remapped to their rank. Text columns need ``encode=True``,
    which maps the sorted distinct values to ``0..C-1`` (any column may be encoded).

    Raises:
        ValueError: on text labels without ``encode``, non-integer floats, or a single class.
    """
    name = f"target column {series.name!r}"
    numeric = pd.api.types.is_numeric_dtype(series.dtype)
    if not numeric and not encode:
        fail("target", "a column of integer class ids (set `encode_target: true` to map its sorted distinct "
             "values to 0..C-1)", f"column {series.name!r} with non-numeric values such as {series.iloc[0]!r}")
    # float64 also covers bool and nullable integer columns; class ids never approach 2**53
    values = series.to_numpy(dtype=np.float64) if numeric else series.to_numpy()
    return encode_class_ids(values, name, encode=encode)


@dataclass(frozen=True)
class TabularEncoder:
    """Feature encoding fitted on the train rows; :meth:`transform` applies it to any rows.

    ``numeric``: columns standardized as ``(x - mean) / scale`` (a constant column
    maps to 0, never NaN; ``mean=0, scale=1`` when ``standardize`` is off).
    ``vocab``: sorted train categories of each text column. ``categorical="onehot"``
    gives one 0/1 column per train category (an unseen category is all zeros);
    ``"ordinal"`` one column of codes ``0..K-1`` (an unseen category gets
    :data:`UNSEEN_CODE` ``= -1``). Category encodings are not standardized.
    Output columns follow ``columns``, each expanded in place.
    """

    columns: tuple[str, ...]
    numeric: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    vocab: dict[str, tuple[str, ...]]
    categorical: str = "onehot"

    @property
    def feature_names(self) -> list[str]:
        """Output column names: ``col`` for numeric/ordinal, ``col=category`` for one-hot."""
        if self.categorical == "ordinal":
            return list(self.columns)
        return [c for col in self.columns for c in ([col] if col in self.numeric else
                                                    [f"{col}={v}" for v in self.vocab[col]])]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode ``frame`` (its rows, these columns) as float32 ``(rows, len(feature_names))``."""
        return encode_features(self, frame)


def _numeric_values(frame: pd.DataFrame, col: str) -> np.ndarray:
    values = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(values).all():
        fail("features", "finite numeric columns", f"a non-finite value in column {col!r}")
    return values


def fit_tabular_encoder(frame: pd.DataFrame, columns: Sequence[str], *, categorical: str = "onehot",
                        standardize: bool = True) -> TabularEncoder:
    """Fit the feature encoding on ``frame`` (the train rows): column means/stds and category vocabularies.

    Numeric (including boolean) columns are z-scored when ``standardize``:
    ``(x - mean) / std`` with the population std (``ddof=0``, as
    ``sklearn.preprocessing.StandardScaler``); a constant column (max == min) gets
    ``mean = its value, scale = 1`` so it maps to exactly 0. Any
    other column is categorical: its values as text, sorted.

    Raises:
        ValueError: on an unknown ``categorical``, a non-bool ``standardize`` or a
            non-finite numeric value.

    Example:
        >>> enc = fit_tabular_encoder(pd.DataFrame({"a": [1.0, 3.0], "c": ["x", "y"]}), ["a", "c"])
        >>> enc.transform(pd.DataFrame({"a": [2.0], "c": ["z"]})).tolist(), enc.feature_names
        ([[0.0, 0.0, 0.0]], ['a', 'c=x', 'c=y'])
    """
    check_choice(categorical, "categorical", CATEGORICAL)
    if not isinstance(standardize, bool):
        fail("standardize", "true or false", repr(standardize))
    numeric = tuple(c for c in columns if pd.api.types.is_numeric_dtype(frame[c].dtype))
    block = np.stack([_numeric_values(frame, c) for c in numeric], 1) if numeric else np.zeros((len(frame), 0))
    if standardize and numeric:
        # Exact constancy, not std == 0: the float mean of a constant column can be off by
        # one ulp, and dividing that by a ~1e-17 std would blow it up instead of giving 0.
        constant = block.max(0) == block.min(0)
        mean = np.where(constant, block[0], block.mean(0))
        scale = np.where(constant, 1.0, block.std(0))
    else:
        mean, scale = np.zeros(len(numeric)), np.ones(len(numeric))
    vocab = {c: tuple(sorted(set(frame[c].astype(str)))) for c in columns if c not in numeric}
    return TabularEncoder(tuple(columns), numeric, mean, scale, vocab, categorical)


def encode_features(encoder: TabularEncoder, frame: pd.DataFrame) -> np.ndarray:
    """``encoder`` applied to ``frame``: float32 ``(rows, F)``; see :class:`TabularEncoder`."""
    blocks = []
    for col in encoder.columns:
        if col in encoder.numeric:
            i = encoder.numeric.index(col)
            blocks.append(((_numeric_values(frame, col) - encoder.mean[i]) / encoder.scale[i])[:, None])
            continue
        vocab = encoder.vocab[col]
        codes = pd.Index(vocab).get_indexer(frame[col].astype(str))  # -1 = unseen
        if encoder.categorical == "ordinal":
            blocks.append(np.where(codes >= 0, codes, UNSEEN_CODE).astype(np.float64)[:, None])
        else:
            blocks.append((codes[:, None] == np.arange(len(vocab))[None, :]).astype(np.float64))
    out = np.concatenate(blocks, axis=1).astype(np.float32)
    if not np.isfinite(out).all():
        fail("features", "values that fit in float32 after encoding", "an overflow to Inf")
    return out


@register("dataset", "table", family="user",
          reference="User-provided table (CSV, TSV or Parquet) read with pandas; see examples/data/ for the "
                    "UCI Breast Cancer Wisconsin (Diagnostic) example.",
          tags=("files",),
          hyper={"path": text(None, doc="required: a .csv, .tsv, .parquet or .pq file (relative to the cwd)"),
                 "target": text(None, doc="required: the label column"),
                 "features": texts(None, doc="feature columns or fnmatch globs (default: all but the target)"),
                 "categorical": choice("onehot", CATEGORICAL, doc="encoding of non-numeric feature columns"),
                 "standardize": flag(True, doc="z-score numeric features with train-split mean/std"),
                 "missing": choice("error", MISSING, doc="refuse or drop rows with missing used values"),
                 "encode_target": flag(False, doc="map the target's sorted distinct values to 0..C-1"),
                 "test_fraction": real(0.25, 0.0, 1.0, low_open=True, high_open=True,
                                       doc="fraction of rows in the test split"),
                 "split_seed": integer(0, 0, doc="seed of the stratified train/test split")})
def make_table(*, path: str | None = None, target: str | None = None, features: list[str] | None = None,
               categorical: str = "onehot", standardize: bool = True, missing: str = "error",
               encode_target: bool = False, test_fraction: float = 0.25, split_seed: int = 0) -> SplitData:
    """A classification dataset read from a CSV, TSV or Parquet table (bring your own data).

    Use it in a spec as ``{name: table, params: {path: data.csv, target: label}}``;
    this is the registry entry of :func:`load_table`, which documents the arguments and rules.

    Returns:
        :class:`SplitData` named ``"table:<file stem>"``, float32 ``x (N, F)``.

    Raises:
        ValueError: see :func:`load_table`.

    References:
        pandas ``read_csv``/``read_parquet``; scikit-learn ``train_test_split`` and ``StandardScaler``.
    """
    return load_table(path, target, features=features, categorical=categorical, standardize=standardize,
                      missing=missing, encode_target=encode_target, test_fraction=test_fraction,
                      split_seed=split_seed)


def load_table(path: Any, target: Any, *, features: Sequence[str] | None = None, categorical: str = "onehot",
               standardize: bool = True, missing: str = "error", encode_target: bool = False,
               test_fraction: float = 0.25, split_seed: int = 0) -> SplitData:
    """Read a table, encode it and split it into a stratified train/test :class:`SplitData`.

    Use it for any tabular classification problem. Steps: :func:`read_table`;
    :func:`select_features`; :func:`handle_missing` over the target and used
    features; the target to class ids (:func:`target_class_ids`: integer ids kept
    when ``0..C-1``, otherwise remapped to their rank; text only with
    ``encode_target``); a stratified split (:func:`~losslab.data.arrays.stratified_split`);
    then :func:`fit_tabular_encoder` on the train rows and the same encoding for
    both splits: numeric columns ``(x - mean_train) / std_train`` when
    ``standardize``, text columns one-hot (unseen test category → all zeros) or
    ordinal (unseen → ``-1``).

    Args:
        path: ``.csv``, ``.tsv``, ``.parquet`` or ``.pq`` file (Parquet needs pyarrow).
        target: the label column.
        features: column names or glob patterns; ``None`` uses every other column.
        categorical: ``"onehot"`` or ``"ordinal"`` for non-numeric feature columns.
        standardize: z-score numeric features with the train split's mean and std.
        missing: ``"error"`` (default) refuses missing values, ``"drop"`` drops those rows.
        encode_target: map the target's sorted distinct values (text too) to ``0..C-1``.
        test_fraction: fraction of rows in the test split, in ``(0, 1)``.
        split_seed: non-negative seed of the split.

    Returns:
        :class:`SplitData` named ``"table:<file stem>"`` with float32 ``x (N, F)``
        (``F`` after encoding) and int64 ``y`` in ``[0, C)``.

    Raises:
        ValueError: (one line, naming the argument or column) on a missing file,
            an unknown target column (listing the columns), an unmatched feature
            pattern, missing values with ``missing="error"``, a text target without
            ``encode_target``, non-integer float labels, a single class, a class
            too small to stratify, or Parquet without pyarrow.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "pets.csv"
        >>> _ = f.write_text("w,kind\\n1,cat\\n2,cat\\n3,dog\\n4,dog\\n")
        >>> d = load_table(str(f), "kind", encode_target=True, test_fraction=0.5)
        >>> d.name, tuple(d.x_train.shape), d.num_classes
        ('table:pets', (2, 1), 2)
    """
    check_choice(categorical, "categorical", CATEGORICAL)
    check_choice(missing, "missing", MISSING)
    if not isinstance(encode_target, bool):
        fail("encode_target", "true or false", repr(encode_target))
    frame = read_table(path)
    target = _check_target_column(list(frame.columns), target)
    if isinstance(features, str):
        features = [features]
    columns = select_features(list(frame.columns), target, features)
    frame = handle_missing(frame, [target, *columns], missing)
    y, classes = target_class_ids(frame[target], encode=encode_target)
    train, test = stratified_split(y, test_fraction=test_fraction, split_seed=split_seed,
                                   name="target", classes=classes)
    encoder = fit_tabular_encoder(frame.iloc[train], columns, categorical=categorical, standardize=standardize)
    x_tr, x_te = encoder.transform(frame.iloc[train]), encoder.transform(frame.iloc[test])
    return SplitData(name=f"table:{Path(str(path)).stem}", x_train=torch.from_numpy(x_tr),
                     y_train=torch.from_numpy(y[train]), x_test=torch.from_numpy(x_te),
                     y_test=torch.from_numpy(y[test]), num_classes=len(classes))


