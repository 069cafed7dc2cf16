"""Pieces shared by the downloaded image benchmarks (MNIST, Fashion-MNIST, CIFAR, CIFAR-N).

The builders live in :mod:`losslab.data.idx` (MNIST, Fashion-MNIST),
:mod:`losslab.data.cifar` (CIFAR-10/100) and :mod:`losslab.data.noisy_labels`
(CIFAR-10N/100N, image folders with noisy label lists). This module holds what
they share: the optional ``train_size``/``test_size`` subset (deterministic and
stratified, so a CPU-sized slice keeps the class proportions) and the checks of
the common hypers.
"""

from __future__ import annotations

import numpy as np

from losslab.core.registry import flag, integer, text
from losslab.core.validation import check_number, fail

# The hypers every downloaded benchmark shares; builders add their own.
COMMON_HYPER = {
    "root": text(None, doc="cache folder (default: $LOSSLAB_DATA or ~/.cache/losslab)"),
    "download": flag(True, doc="fetch missing files; false: use the cache or fail saying where to put them"),
    "train_size": integer(None, 1, doc="keep a stratified subset of this many train samples (all if unset)"),
    "test_size": integer(None, 1, doc="keep a stratified subset of this many test samples (all if unset)"),
}


def stratified_head(y: np.ndarray, k: int | None, name: str = "train_size") -> np.ndarray:
    """Indices of a deterministic, class-stratified subset of ``k`` samples, in original order.

    Sample ``i`` of class ``c`` with within-class rank ``r`` (in file order) gets
    the key ``(r + 1/2) / n_c``; the ``k`` smallest keys are kept. Each class
    then contributes ``round(k * n_c / N)`` samples up to one, and always its
    first ones, so a smaller subset is contained in a larger one.

    Args:
        y: ``(N,)`` integer labels.
        k: subset size in ``[1, N]``, or ``None`` for all samples.
        name: the argument name used in error messages.

    Returns:
        ``(k,)`` int64 indices into ``y``, increasing.

    Raises:
        ValueError: if ``k`` is not an integer in ``[1, N]``.

    Example:
        >>> stratified_head(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 4).tolist()
        [0, 1, 4, 5]
    """
    y = np.asarray(y)
    if y.ndim != 1:
        fail("y", "a 1-D label array", f"shape {y.shape}")
    if k is None:
        return np.arange(len(y), dtype=np.int64)
    k = check_number(k, name, low=1, high=len(y), integer=True)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    rank = np.empty(len(y), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank[order] = np.arange(len(y)) - np.repeat(starts, counts)
    key = (rank + 0.5) / counts[inverse]
    keep = np.argsort(key, kind="stable")[:k]
    return np.sort(keep).astype(np.int64)


def check_flag(value: object, name: str) -> bool:
    """A real ``bool`` (``1`` is not accepted as ``True``)."""
    if not isinstance(value, bool):
        fail(name, "true or false", repr(value))
    return value
