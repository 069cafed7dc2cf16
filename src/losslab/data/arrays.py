"""Bring your own arrays: NumPy files or in-memory arrays as a :class:`~losslab.data.base.SplitData`.

Also holds the three steps every "bring your own data" source shares (the
table, image-folder and ``torch`` adapters import them), so each rule is
written once:

- :func:`resolve_path` — a user path, resolved against the working directory;
- :func:`encode_class_ids` — labels to contiguous int64 class ids ``0..C-1``;
- :func:`stratified_split` — a seeded, stratified train/test index split.

Label rules (shared by ``table``, ``arrays`` and ``image_folder``): labels must
be integer class ids (integer-valued floats such as ``2.0`` count as integers;
other floats are an error, since regression is not supported). Ids that are not
already ``0..C-1`` are remapped to their rank among the distinct values
(``{-1, 1} -> {0, 1}``, ``{3, 7, 9} -> {0, 1, 2}``), and a single class is an error.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from losslab.core.registry import integer, real, register, text
from losslab.core.validation import check_number, fail
from losslab.data.base import SplitData

# ---- shared by the file sources ------------------------------------------------------------------


def resolve_path(path: Any, name: str, *, suffixes: tuple[str, ...] = (), directory: bool = False) -> Path:
    """An existing file (or folder) named by a user: ``~`` expanded, relative paths against the cwd.

    Args:
        path: a ``str`` or ``os.PathLike``.
        name: the argument name used in error messages (``"path"``, ``"root"``).
        suffixes: accepted lower-case file suffixes (``(".csv", ".tsv")``); empty accepts any.
        directory: expect a folder instead of a file.

    Returns:
        The absolute :class:`~pathlib.Path`.

    Raises:
        ValueError: (one line, naming ``name``) on a missing or empty path, a suffix
            outside ``suffixes``, or a path that does not exist; a relative path's
            message also names the working directory it was resolved against.

    Example:
        >>> resolve_path(".", "root", directory=True) == Path.cwd()
        True
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        fail(name, "a path (a non-empty string)", repr(path))
    given = Path(path).expanduser()
    if suffixes and given.suffix.lower() not in suffixes:
        fail(name, "a path ending in " + ", ".join(suffixes), repr(str(path)))
    full = given if given.is_absolute() else Path.cwd() / given
    exists = full.is_dir() if directory else full.is_file()
    if not exists:
        what = "an existing folder" if directory else "an existing file"
        where = "" if given.is_absolute() else f"; relative paths are resolved against the cwd {Path.cwd()}"
        fail(name, what, f"{str(path)!r} (not found{where})")
    return full


def encode_class_ids(y: Any, name: str = "y", *, encode: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Labels to contiguous int64 class ids ``0..C-1`` and the original value of each id.

    Integer ids (or integer-valued floats, or booleans) that already are
    ``0..C-1`` are kept; any other set of integers is remapped to its rank among
    the sorted distinct values. With ``encode=True`` any labels (strings too) are
    mapped: the ``k``-th smallest distinct value becomes class ``k``.

    Args:
        y: 1-D labels ``(N,)``, array-like.
        name: the argument name used in error messages.
        encode: map any sorted distinct values (strings included) to ``0..C-1``.

    Returns:
        ``(ids, classes)``: int64 ``ids (N,)`` and ``classes (C,)`` with ``classes[ids] == y``.

    Raises:
        ValueError: on non-1-D or empty labels, non-numeric labels without
            ``encode``, non-finite or non-integer floats, or fewer than 2 classes.

    Example:
        >>> ids, classes = encode_class_ids([7, 3, 7, 9])
        >>> ids.tolist(), classes.tolist()
        ([1, 0, 1, 2], [3, 7, 9])
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        fail(name, "a non-empty 1-D array of class labels (N,)", f"shape {y.shape}")
    if encode:
        values = y.astype(str) if y.dtype.kind in "OSU" else y  # mixed objects sort as text
        classes, ids = np.unique(values, return_inverse=True)
    else:
        if y.dtype.kind not in "biuf":
            fail(name, "integer class ids (encode text labels first)",
                 f"non-numeric labels of dtype {y.dtype}, such as {y[0].item()!r}")
        if y.dtype.kind == "f":
            bad = ~np.isfinite(y) | (y != np.round(y))
            if bad.any():
                fail(name, "integer class ids (regression targets are not supported)",
                     f"the non-integer value {y[bad][0].item()!r}")
            y = y.astype(np.int64)
        classes, ids = np.unique(y, return_inverse=True)
    if classes.size < 2:
        fail(name, "labels of at least 2 classes", f"a single class {classes[0].item()!r}")
    return ids.reshape(-1).astype(np.int64), classes


def stratified_split(y: np.ndarray, *, test_fraction: float, split_seed: int, name: str = "y",
                     classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded train/test split that keeps the class proportions in both parts.

    ``sklearn.model_selection.train_test_split(arange(N), test_size=test_fraction,
    stratify=y, random_state=split_seed)``: ``ceil(test_fraction * N)`` test samples.

    Args:
        y: int64 class ids ``(N,)`` in ``[0, C)``.
        test_fraction: fraction of samples in the test split, in ``(0, 1)``.
        split_seed: non-negative seed.
        name: the label argument named in error messages.
        classes: the original label of each id, for error messages.

    Returns:
        ``(train_index, test_index)``, int64 arrays that partition ``arange(N)``.

    Raises:
        ValueError: on a bad ``test_fraction`` or ``split_seed``, a class with fewer
            than 2 samples, or a ``test_fraction`` that leaves a split smaller than the
            number of classes.

    Example:
        >>> tr, te = stratified_split(np.array([0, 0, 0, 1, 1, 1]), test_fraction=0.5, split_seed=0)
        >>> sorted(np.r_[tr, te].tolist()), len(te)
        ([0, 1, 2, 3, 4, 5], 3)
    """
    test_fraction = check_number(test_fraction, "test_fraction", low=0.0, high=1.0, low_open=True, high_open=True)
    split_seed = check_number(split_seed, "split_seed", low=0, integer=True)
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu" or y.size == 0 or int(y.min()) < 0:
        fail(name, "non-empty 1-D class ids >= 0 (see encode_class_ids)", f"{y.dtype} of shape {y.shape}")
    counts = np.bincount(y)
    present = np.flatnonzero(counts)
    smallest = present[np.argmin(counts[present])]
    if counts[smallest] < 2:
        label = smallest.item() if classes is None else classes[smallest].item()
        fail(name, "at least 2 samples of every class for a stratified split (or a separate test set)",
             f"class {label!r} with {counts[smallest]} sample")
    n, c = len(y), len(present)
    n_test = math.ceil(test_fraction * n)
    if n_test < c or n - n_test < c:
        fail("test_fraction", f"a fraction that leaves at least one sample of each of the {c} classes in both "
             f"splits of {n} samples", repr(test_fraction))
    train, test = train_test_split(np.arange(n), test_size=test_fraction, stratify=y,
                                   random_state=split_seed % 2**32)
    return train.astype(np.int64), test.astype(np.int64)


# ---- arrays ---------------------------------------------------------------------------------------


def _features(x: Any, name: str) -> np.ndarray:
    """Numeric ``(N, *shape)`` features as float32; 3-D ``(N, H, W)`` gains a channel axis."""
    if isinstance(x, torch.Tensor):  # half/bfloat16 have no exact numpy twin, so widen first
        x = x.detach().cpu()
        x = (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x).numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        fail(name, "numeric features (bool, int or float)", f"dtype {x.dtype}")
    if x.ndim < 2 or x.shape[0] == 0:
        fail(name, "a non-empty array of shape (N, *shape) (reshape 1-D features with x.reshape(-1, 1))",
             f"shape {x.shape}")
    out = x.astype(np.float32)
    if not np.isfinite(out).all():
        fail(name, "finite (no NaN or Inf, also after the cast to float32)",
             f"{int((~np.isfinite(out)).sum())} non-finite value(s)")
    return out[:, None] if out.ndim == 3 else out


def _labels(y: Any) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    return np.asarray(y)


def _check_length(x: np.ndarray, y: np.ndarray, x_name: str, y_name: str) -> None:
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        fail(y_name, f"a 1-D array of {x.shape[0]} labels, one per row of `{x_name}`", f"shape {y.shape}")


def from_arrays(x: Any, y: Any, *, x_test: Any = None, y_test: Any = None, test_fraction: float = 0.25,
                split_seed: int = 0, name: str = "arrays") -> SplitData:
    """Features and labels (NumPy arrays or tensors) as a :class:`SplitData`.

    Use it to run losslab on data already in memory. Without ``x_test`` the
    data is split by :func:`stratified_split`; with it, both splits are used as
    given. Labels follow the module's rules (contiguous ids kept, other integer
    ids remapped to their rank over train and test together, a single class is
    an error). Features are cast to float32 as stored (no scaling); the
    per-sample shape is kept, except that 3-D ``(N, H, W)`` becomes
    ``(N, 1, H, W)`` so image models see a channel axis.

    Args:
        x: numeric features ``(N, *shape)`` with ``N >= 1`` and at least 2 dimensions.
        y: class labels ``(N,)``.
        x_test: optional test features ``(M, *shape)``; give it with ``y_test``.
        y_test: optional test labels ``(M,)``.
        test_fraction: test share of a split, in ``(0, 1)`` (ignored with ``x_test``).
        split_seed: non-negative seed of the split (ignored with ``x_test``).
        name: the dataset name stored in the result.

    Returns:
        :class:`SplitData` with float32 ``x (N', *shape)``, int64 ``y`` in ``[0, C)``.

    Raises:
        ValueError: on non-numeric or non-finite features, mismatched lengths or
            per-sample shapes, ``x_test`` without ``y_test`` (or the reverse),
            labels that break the rules above, or a split that cannot be stratified.

    Example:
        >>> d = from_arrays(np.arange(16.0).reshape(8, 2), [5, 9] * 4, test_fraction=0.5)
        >>> tuple(d.x_train.shape), d.num_classes, sorted(d.y_test.tolist())
        ((4, 2), 2, [0, 0, 1, 1])
    """
    if not isinstance(name, str) or not name:
        fail("name", "a non-empty string", repr(name))
    x, y = _features(x, "x"), _labels(y)
    _check_length(x, y, "x", "y")
    if (x_test is None) != (y_test is None):
        fail("x_test" if x_test is None else "y_test", "given together with "
             + ("`y_test`" if x_test is None else "`x_test`"), None)
    if x_test is None:
        ids, classes = encode_class_ids(y, "y")
        train, test = stratified_split(ids, test_fraction=test_fraction, split_seed=split_seed, classes=classes)
        parts = (x[train], ids[train], x[test], ids[test])
    else:
        xt, yt = _features(x_test, "x_test"), _labels(y_test)
        _check_length(xt, yt, "x_test", "y_test")
        if xt.shape[1:] != x.shape[1:]:
            fail("x_test", f"samples of the same shape as `x`, {x.shape[1:]}", f"{xt.shape[1:]}")
        ids, classes = encode_class_ids(np.concatenate([y, yt]), "y")
        parts = (x, ids[: len(y)], xt, ids[len(y):])
    x_tr, y_tr, x_te, y_te = (torch.from_numpy(np.ascontiguousarray(p)) for p in parts)
    return SplitData(name=name, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, num_classes=len(classes))


_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _load_npy(path: Path, name: str) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # object arrays, truncated or foreign files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        fail(name, "a readable NumPy file of numeric arrays (loaded with allow_pickle=False)",
             f"{str(path)!r} ({first})")


def _npz_arrays(archive: Any, path: Path) -> dict[str, np.ndarray]:
    """The split's arrays from an open ``.npz``: the four split keys, or ``x`` and ``y``."""
    keys = set(archive.files)
    want = _SPLIT_KEYS if set(_SPLIT_KEYS) <= keys else ("x", "y") if {"x", "y"} <= keys else None
    if want is None or ({"x", "y"} <= keys and set(_SPLIT_KEYS) <= keys):
        fail("path", "a .npz holding either x_train, y_train, x_test, y_test or x, y (not both)",
             f"{str(path)!r} with keys {sorted(keys)}")
    try:
        return {k: archive[k] for k in want}
    except ValueError as exc:  # an object array inside the archive
        fail("path", "a .npz of numeric arrays (loaded with allow_pickle=False)", f"{str(path)!r} ({exc})")


@register("dataset", "arrays", family="user",
          reference="User-provided NumPy arrays (.npz with x_train/y_train/x_test/y_test or x/y, or a .npy "
                    "of features with a .npy of labels).",
          tags=("files",),
          hyper={"path": text(None, doc="required: a .npz file, or a .npy of features (then give target_path)"),
                 "target_path": text(None, doc="a .npy of labels (N,), with a .npy `path`"),
                 "test_fraction": real(0.25, 0.0, 1.0, low_open=True, high_open=True,
                                       doc="fraction in the test split when the file has no split"),
                 "split_seed": integer(0, 0, doc="seed of the stratified train/test split")})
def load_arrays(*, path: str | None = None, target_path: str | None = None, test_fraction: float = 0.25,
                split_seed: int = 0) -> SplitData:
    """A dataset from NumPy files: a ``.npz`` archive, or a ``.npy`` of features plus one of labels.

    Use it to bring features you computed elsewhere (embeddings, images,
    measurements). Accepted layouts, loaded with ``allow_pickle=False``:

    - ``.npz`` with ``x_train, y_train, x_test, y_test``: the split as stored;
    - ``.npz`` with ``x, y``: split by :func:`stratified_split`;
    - ``.npy`` features ``(N, *shape)`` with ``target_path`` a ``.npy`` of labels ``(N,)``: split.

    Everything else follows :func:`from_arrays` (float32 features as stored,
    ``(N, H, W)`` becomes ``(N, 1, H, W)``, labels remapped to ``0..C-1`` when
    they are not contiguous). Relative paths are resolved against the working
    directory.

    Args:
        path: the ``.npz`` or ``.npy`` file (required).
        target_path: the ``.npy`` of labels; required with a ``.npy`` ``path``, refused with ``.npz``.
        test_fraction: test share of a split, in ``(0, 1)``.
        split_seed: non-negative seed of the split.

    Returns:
        :class:`SplitData` named ``"arrays:<file stem>"``.

    Raises:
        ValueError: (one line) on a missing file, a wrong suffix, an ``.npz`` without
            the expected keys, object arrays, or any check of :func:`from_arrays`.

    References:
        NumPy ``.npy``/``.npz`` formats (numpy.lib.format).

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "toy.npz"
        >>> np.savez(f, x=np.eye(8), y=[0, 1] * 4)
        >>> load_arrays(path=str(f), test_fraction=0.5).name
        'arrays:toy'
    """
    file = resolve_path(path, "path", suffixes=(".npz", ".npy"))
    name = f"arrays:{file.stem}"
    if file.suffix.lower() == ".npz":
        if target_path is not None:
            fail("target_path", "unset with a .npz `path` (its labels are inside the archive)", repr(target_path))
        archive = _load_npy(file, "path")
        if not isinstance(archive, np.lib.npyio.NpzFile):
            fail("path", "a .npz archive (made with numpy.savez)", f"{str(file)!r}, which holds a single array")
        with archive:
            arrays = _npz_arrays(archive, file)
        if "x" in arrays:
            return from_arrays(arrays["x"], arrays["y"], test_fraction=test_fraction, split_seed=split_seed,
                               name=name)
        return from_arrays(arrays["x_train"], arrays["y_train"], x_test=arrays["x_test"], y_test=arrays["y_test"],
                           name=name)
    if target_path is None:
        fail("target_path", "a .npy file of labels when `path` is a .npy of features", None)
    labels = resolve_path(target_path, "target_path", suffixes=(".npy",))
    x, y = _load_npy(file, "path"), _load_npy(labels, "target_path")
    if isinstance(x, np.lib.npyio.NpzFile) or isinstance(y, np.lib.npyio.NpzFile):
        fail("path", "a .npy array, not an .npz archive renamed", repr(str(file)))
    return from_arrays(x, y, test_fraction=test_fraction, split_seed=split_seed, name=name)
