"""Bring your own data from Python: ``torch`` datasets as a :class:`~losslab.data.base.SplitData`, and
user datasets in the registry so a spec can name them.

:func:`from_torch_dataset` materialises any map-style ``torch.utils.data.Dataset``;
:func:`register_dataset` makes a ``SplitData`` (or a zero-argument builder)
available to specs run in this process as ``datasets: [{name: NAME}]``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from losslab.core.registry import REGISTRY, Entry
from losslab.core.validation import check_number, fail
from losslab.data.arrays import stratified_split
from losslab.data.base import SplitData

_USER_DATASETS: set[str] = set()  # names registered by register_dataset, the only ones it may replace


def _sample_x(x: Any, where: str) -> Tensor:
    """One sample's features as a real tensor; a number becomes shape ``(1,)``."""
    if isinstance(x, Tensor):
        out = x.detach().cpu()
    else:
        try:  # torch.tensor copies, so read-only numpy arrays are fine
            out = torch.tensor(np.asarray(x))
        except (TypeError, ValueError, RuntimeError):
            fail(where, "a tensor, a numpy array or a (nested) sequence of numbers", type(x).__name__)
    if out.dtype.is_complex:
        fail(where, "real-valued features", out.dtype)
    return out.reshape(1) if out.ndim == 0 else out


def _sample_y(y: Any, where: str) -> int:
    """One label: a Python/NumPy int, or a 0-d (or one-element) integer tensor or array."""
    if isinstance(y, Tensor):
        integral = not (y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool)
        size = y.numel()
    elif isinstance(y, np.ndarray):
        integral, size = y.dtype.kind in "iu", y.size
    else:
        if isinstance(y, bool) or not isinstance(y, numbers.Integral):
            fail(where, "an integer class id (an int or a 0-d integer tensor)", repr(y))
        return int(y)
    if not integral or size != 1:
        fail(where, "an integer class id (an int or a 0-d integer tensor)",
             f"a {type(y).__name__} of dtype {y.dtype} and shape {tuple(y.shape)}")
    return int(y.reshape(()).item())


def _materialise(dataset: Any, name: str) -> tuple[Tensor, Tensor]:
    """All ``(x, y)`` pairs of a map-style dataset as float32 ``x (N, *shape)`` and int64 ``y (N,)``."""
    if isinstance(dataset, torch.utils.data.IterableDataset) or not (
            hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        fail(name, "a map-style dataset (with __len__ and __getitem__)", type(dataset).__name__)
    n = len(dataset)
    if n == 0:
        fail(name, "a non-empty dataset", "0 samples")
    xs, ys = [], []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            fail(f"{name}[{i}]", "an (x, y) pair", f"{type(item).__name__}"
                 + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else ""))
        xs.append(_sample_x(item[0], f"{name}[{i}][0]"))
        ys.append(_sample_y(item[1], f"{name}[{i}][1]"))
        if xs[-1].shape != xs[0].shape:
            fail(f"{name}[{i}][0]", f"of the same shape as sample 0, {tuple(xs[0].shape)}", f"{tuple(xs[-1].shape)}")
    x = torch.stack([t.to(torch.float32) for t in xs])
    if not bool(torch.isfinite(x).all()):
        fail(name, "finite features (no NaN or Inf, also after the cast to float32)",
             f"{int((~torch.isfinite(x)).sum())} non-finite value(s)")
    return x, torch.tensor(ys, dtype=torch.int64)


def from_torch_dataset(train: Any, test: Any = None, *, test_fraction: float = 0.25, split_seed: int = 0,
                       num_classes: int | None = None, name: str = "dataset") -> SplitData:
    """Materialise map-style ``torch`` datasets (``len`` + ``__getitem__`` giving ``(x, y)``) into a :class:`SplitData`.

    Use it to run losslab's conditions and engine on data you already wrap in
    a ``Dataset`` (apply your transforms in the dataset; the result is fixed
    tensors). Each ``x`` may be a tensor, a numpy array or a nested sequence of
    numbers (a single number becomes shape ``(1,)``), all of one shape; it is cast
    to float32. Each ``y`` is an int or a 0-d integer tensor; labels are kept as
    given (no remapping) and must lie in ``[0, num_classes)``. Without ``test``
    the samples are split by :func:`~losslab.data.arrays.stratified_split`.

    Args:
        train: the (training) dataset, ``N`` samples.
        test: optional test dataset; otherwise ``train`` is split.
        test_fraction: test share of a split, in ``(0, 1)`` (ignored with ``test``).
        split_seed: non-negative seed of the split (ignored with ``test``).
        num_classes: number of classes; ``None`` infers ``max label + 1`` over both datasets.
        name: the dataset name stored in the result.

    Returns:
        :class:`SplitData` with float32 ``x (N', *shape)`` and int64 ``y`` in ``[0, num_classes)``.

    Raises:
        ValueError: on an iterable-style or empty dataset, an item that is not an
            ``(x, y)`` pair, non-numeric or non-finite features, samples of different
            shapes (naming the index), a non-integer label, a label outside
            ``[0, num_classes)``, fewer than 2 classes, or a split that cannot be stratified.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> ds = TensorDataset(torch.arange(16.0).reshape(8, 2), torch.tensor([0, 1] * 4))
        >>> d = from_torch_dataset(ds, test_fraction=0.5, name="toy")
        >>> tuple(d.x_train.shape), d.num_classes
        ((4, 2), 2)
    """
    if not isinstance(name, str) or not name:
        fail("name", "a non-empty string", repr(name))
    x, y = _materialise(train, "train")
    x_te, y_te = (None, None) if test is None else _materialise(test, "test")
    if x_te is not None and x_te.shape[1:] != x.shape[1:]:
        fail("test", f"samples of the same shape as `train`, {tuple(x.shape[1:])}", f"{tuple(x_te.shape[1:])}")
    labels = y if y_te is None else torch.cat([y, y_te])
    if int(labels.min()) < 0:
        fail("train" if int(y.min()) < 0 else "test", "labels >= 0", f"a label {int(labels.min())}")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
        if num_classes < 2:
            fail("train", "labels of at least 2 classes (or pass `num_classes`)", f"only label {num_classes - 1}")
    num_classes = check_number(num_classes, "num_classes", low=2, integer=True)
    if int(labels.max()) >= num_classes:
        fail("num_classes", f"larger than every label, at least {int(labels.max()) + 1}", num_classes)
    if y_te is None:
        train_idx, test_idx = stratified_split(y.numpy(), test_fraction=test_fraction, split_seed=split_seed,
                                               name="train")
        tr, te = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
        x, y, x_te, y_te = x[tr], y[tr], x[te], y[te]
    return SplitData(name=name, x_train=x, y_train=y, x_test=x_te, y_test=y_te, num_classes=num_classes)


def check_split_data(data: Any, name: str = "data") -> SplitData:
    """A well-formed :class:`SplitData`: float ``x`` of matching per-sample shapes, int64 labels in range.

    Raises:
        ValueError: naming the first field that breaks the contract.
    """
    if not isinstance(data, SplitData):
        fail(name, "a SplitData", type(data).__name__)
    if isinstance(data.num_classes, bool) or not isinstance(data.num_classes, int) or data.num_classes < 2:
        fail(f"{name}.num_classes", "an int >= 2", repr(data.num_classes))
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] == 0:
            fail(f"{name}.x_{split}", "a non-empty tensor (N, *shape)", getattr(x, "shape", type(x).__name__))
        if not isinstance(y, Tensor) or y.dtype != torch.int64 or tuple(y.shape) != (x.shape[0],):
            fail(f"{name}.y_{split}", f"an int64 tensor of shape ({x.shape[0]},)",
                 f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")
        if int(y.min()) < 0 or int(y.max()) >= data.num_classes:
            fail(f"{name}.y_{split}", f"class ids in [0, {data.num_classes})",
                 f"labels in [{int(y.min())}, {int(y.max())}]")
    if data.x_test.shape[1:] != data.x_train.shape[1:] or data.x_test.dtype != data.x_train.dtype:
        fail(f"{name}.x_test", f"{data.x_train.dtype} samples of shape {tuple(data.x_train.shape[1:])} like x_train",
             f"{data.x_test.dtype} {tuple(data.x_test.shape[1:])}")
    return data


def _replace_user_entry(entry: Entry) -> None:
    """Put ``entry`` in the registry, replacing a previous *user* entry of the same name.

    ``Registry.add`` refuses a second object under a taken key on purpose (two
    modules must not silently shadow each other). A user dataset is meant to be
    replaced while iterating in a notebook, so the old entry, which
    :func:`register_dataset` checked is its own, is removed first; the new one
    then goes through ``add`` and its checks like any other.
    """
    REGISTRY.remove(entry.kind, entry.name)
    REGISTRY.add(entry)


def _builder(name: str, data_or_builder: Any, reference: str) -> Callable[[], SplitData]:
    if isinstance(data_or_builder, SplitData):
        data = check_split_data(data_or_builder, "data_or_builder")

        def build() -> SplitData:
            return data
    elif callable(data_or_builder):
        def build() -> SplitData:
            return check_split_data(data_or_builder(), f"the result of dataset {name!r}'s builder")
    else:
        fail("data_or_builder", "a SplitData or a zero-argument callable returning one", type(data_or_builder).__name__)
    build.__doc__ = f"User dataset {name!r}, registered from Python.\n\nReferences:\n    {reference}\n"
    build.__name__ = build.__qualname__ = f"user_dataset_{name}"
    return build


def register_dataset(name: str, data_or_builder: SplitData | Callable[[], SplitData], *,
                     reference: str = "user data") -> None:
    """Register a user dataset so a spec run in this process can use ``datasets: [{name: NAME}]``.

    Use it from a notebook or script: build a :class:`SplitData` (e.g. with
    :func:`from_torch_dataset` or :func:`~losslab.data.arrays.from_arrays`), register
    it, and run a spec in-process with one worker (worker processes do not see
    it). A builder (a zero-argument callable) is called when the dataset is
    needed, and its result is checked then. Registering a name again replaces
    the previous user dataset; built-in names are refused.

    Args:
        name: the dataset name, a non-empty string without whitespace.
        data_or_builder: a :class:`SplitData`, or a callable ``() -> SplitData``.
        reference: where the data comes from (shown by ``losslab list``).

    Raises:
        ValueError: on a bad ``name`` or ``reference``, a name of a built-in
            dataset, a malformed ``SplitData``, or anything else as ``data_or_builder``.

    Example:
        >>> from losslab.data.arrays import from_arrays
        >>> register_dataset("my_blobs", from_arrays(np.eye(8), [0, 1] * 4, test_fraction=0.5))
        >>> REGISTRY.get("dataset", "my_blobs").obj().num_classes
        2
        >>> unregister_dataset("my_blobs")
    """
    if not isinstance(name, str) or not name or any(ch.isspace() for ch in name):
        fail("name", "a non-empty string without whitespace", repr(name))
    if not isinstance(reference, str) or not reference.strip():
        fail("reference", "a non-empty string saying where the data comes from", repr(reference))
    if name in REGISTRY.names("dataset") and name not in _USER_DATASETS:
        fail("name", "a name no built-in dataset uses (built-ins: "
             + ", ".join(n for n in REGISTRY.names("dataset") if n not in _USER_DATASETS) + ")", repr(name))
    entry = Entry("dataset", name, "user", _builder(name, data_or_builder, reference), reference=reference,
                  tags=frozenset({"user", "in-process"}))
    _replace_user_entry(entry)
    _USER_DATASETS.add(name)


def unregister_dataset(name: str) -> None:
    """Remove a dataset added by :func:`register_dataset` (built-ins cannot be removed).

    Raises:
        ValueError: on a name that :func:`register_dataset` did not register.
    """
    if name not in _USER_DATASETS:
        fail("name", "a dataset added by register_dataset (" + (", ".join(sorted(_USER_DATASETS)) or "none")
             + ")", repr(name))
    REGISTRY.remove("dataset", name)
    _USER_DATASETS.discard(name)
