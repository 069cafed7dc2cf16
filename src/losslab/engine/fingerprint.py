"""Content fingerprints of datasets read from the user's files, so a run id changes when the data does.

A run id hashes its config. For a built-in dataset the config determines the
data; for a CSV, a NumPy file, an image folder or a dataset passed in from
Python it does not: the same path can hold new rows tomorrow. The plan adds a
``fingerprint`` to such a dataset's config, so edited data gets new runs
instead of silently reusing results computed on the old data (which stay in
the store under their own ids). Downloaded benchmarks need none: their files
are pinned by SHA-256.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from losslab.core.registry import REGISTRY

_CHUNK = 1 << 20


def dataset_fingerprint(name: str, params: dict[str, Any]) -> str | None:
    """A short digest of the data behind a ``files`` or ``user`` dataset; None for any other dataset.

    Files are hashed by content (SHA-256); a folder by the sorted relative path,
    size and modification time of every file under it (reading every image of
    a large folder at each plan would cost more than the check is worth).
    A user dataset (``register_dataset``) is hashed by its tensors.
    """
    entry = REGISTRY.get("dataset", name)
    if "user" in entry.tags:
        return _tensor_digest(entry.obj())
    if "files" not in entry.tags:
        return None
    h = hashlib.sha256()
    for key in sorted(params):
        value = params[key]
        if entry.hyper[key].type != "str" or value is None or not os.path.exists(value):
            continue
        h.update(f"{key}\0".encode())
        path = Path(value)
        _digest_dir(path, h) if path.is_dir() else _digest_file(path, h)
    return h.hexdigest()[:16]


def _digest_file(path: Path, h: Any) -> None:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)


def _digest_dir(root: Path, h: Any) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fname in sorted(filenames):
            st = (Path(dirpath) / fname).stat()
            rel = os.path.relpath(os.path.join(dirpath, fname), root)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())


def _tensor_digest(data: Any) -> str:
    h = hashlib.sha256()
    for name in ("x_train", "y_train", "x_test", "y_test", "y_train_clean"):
        t = getattr(data, name).contiguous().cpu()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.flatten().view(torch.uint8).numpy().tobytes())  # raw bytes, whatever the dtype
    h.update(str(data.num_classes).encode())
    return h.hexdigest()[:16]
