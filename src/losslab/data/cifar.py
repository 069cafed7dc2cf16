"""CIFAR-10 and CIFAR-100 from the official python-pickle tarballs, extracted and unpickled safely.

Archive layout (Krizhevsky, 2009)::

    cifar-10-python.tar.gz   cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    cifar-100-python.tar.gz  cifar-100-python/{train, test, meta}

Each batch is a Python-2 pickle of a dict with ``data``: uint8 ``(n, 3072)``
rows holding the R, G and B 32x32 planes in that order (each plane
row-major), and ``labels`` (CIFAR-10) or ``fine_labels``/``coarse_labels``
(CIFAR-100): lists of ``n`` ints.

Safety. The tarball's SHA-256 is checked against the published digest before
anything is read; tar members with absolute paths, ``..`` components, links
or device entries are rejected before any file is written; and the pickles
are read by an unpickler that only resolves the numpy array constructors, so
a tampered batch cannot run code.
"""

from __future__ import annotations

import codecs
import os
import pickle
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from losslab.core.registry import choice, register
from losslab.core.validation import check_choice, fail
from losslab.data.base import SplitData
from losslab.data.download import RemoteFile, cache_dir, ensure_file
from losslab.data.vision import COMMON_HYPER, check_flag, stratified_head

# SHA-256 digests: TensorFlow Datasets, tensorflow_datasets/url_checksums/cifar10.csv and cifar100.csv
# (the python tarballs); Keras pins the same values in keras/datasets/cifar10.py and cifar100.py.
# Tests point these at tiny local fixtures (monkeypatch.setitem); nothing else writes them.
SOURCES: dict[str, RemoteFile] = {
    "cifar10": RemoteFile("cifar-10-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                          "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
    "cifar100": RemoteFile("cifar-100-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                           "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),
}
# folder inside the archive, train batches, test batches
LAYOUT = {
    "cifar10": ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",)),
    "cifar100": ("cifar-100-python", ("train",), ("test",)),
}
LABEL_KEYS = {"cifar10": {"fine": "labels"}, "cifar100": {"fine": "fine_labels", "coarse": "coarse_labels"}}
NUM_CLASSES = {("cifar10", "fine"): 10, ("cifar100", "fine"): 100, ("cifar100", "coarse"): 20}
_STAMP = ".losslab-extracted"


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[Path]:
    """Extract the regular files of a tar archive under ``dest``, refusing anything that could escape it.

    Every member is checked before anything is written: absolute names, ``..``
    components, symlinks, hard links and device/FIFO entries are rejected.
    Files are written with :meth:`tarfile.TarFile.extractfile`, so no
    ownership, permission or link metadata from the archive is applied.

    Args:
        archive: a ``.tar``, ``.tar.gz``, ``.tgz`` or ``.tar.bz2`` file.
        dest: the folder to extract into (created on demand).

    Returns:
        The extracted file paths, in archive order.

    Raises:
        ValueError: if the archive is unreadable or holds an unsafe member.

    Example:
        >>> import io, tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> with tarfile.open(d / "a.tar", "w") as tar:
        ...     info = tarfile.TarInfo("x/hello.txt"); info.size = 2
        ...     tar.addfile(info, io.BytesIO(b"hi"))
        >>> [p.relative_to(d / "out").as_posix() for p in safe_extract(d / "a.tar", d / "out")]
        ['x/hello.txt']
    """
    archive, dest = Path(archive), Path(dest)
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as err:
        fail("archive", "a readable tar archive", f"{archive.name} ({err})")
    with tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member, archive.name)
        written = []
        for member in members:
            if member.isdir():
                (dest / member.name).mkdir(parents=True, exist_ok=True)
                continue
            target = dest / PurePosixPath(member.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(f"{target.name}.{os.getpid()}.part")
            with tar.extractfile(member) as src, part.open("wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.replace(part, target)  # a reader in another process never sees half a file
            written.append(target)
    return written


def _check_member(member: tarfile.TarInfo, archive: str) -> None:
    name = PurePosixPath(member.name)
    if not name.parts and member.isdir():  # "./", the archive's own root
        return
    if not name.parts or member.name.startswith(("/", "\\")) or name.is_absolute() or ":" in name.parts[0]:
        fail(f"{archive} member", "a relative path", repr(member.name))
    if ".." in name.parts or "\\" in member.name:
        fail(f"{archive} member", "a path without '..' or backslashes", repr(member.name))
    if not (member.isfile() or member.isdir()):
        fail(f"{archive} member", "a regular file or folder (links and devices are refused)", repr(member.name))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled numpy array needs; anything else is refused."""

    _RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's _reconstruct, whatever module numpy keeps it in
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name} in a CIFAR batch") from None


def read_batch(path: str | os.PathLike[str], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR pickle batch: uint8 images ``(n, 3, 32, 32)`` (R, G, B planes) and int64 labels ``(n,)``.

    Args:
        path: a batch file (``data_batch_1``, ``test_batch``, ``train``, ``test``).
        label_key: ``"labels"``, ``"fine_labels"`` or ``"coarse_labels"``.

    Raises:
        ValueError: if the file is not a CIFAR batch (unpicklable, refused globals,
            missing keys, wrong row length or label count).
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            batch = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        fail(str(path.name), "a CIFAR python batch", f"an unreadable file ({err})")
    if not isinstance(batch, dict):
        fail(path.name, "a pickled dict", type(batch).__name__)
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        fail(f"{path.name}['data']", "a uint8 array of shape (n, 3072)", got)
    if labels is None:
        fail(path.name, f"a batch with key {label_key!r}", "keys " + ", ".join(sorted(map(str, batch))))
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (data.shape[0],):
        fail(f"{path.name}[{label_key!r}]", f"{data.shape[0]} labels", f"shape {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def cifar_arrays(name: str, *, root: str | None = None, download: bool = True, label_type: str = "fine",
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The full CIFAR splits as numpy: ``x_train`` uint8 ``(N, 3, 32, 32)``, ``y_train``, ``x_test``, ``y_test``.

    The tarball is cached in ``cache_dir(root) / name``, verified, and extracted
    next to it once (re-extracted when the tarball changes).

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: cache folder override.
        download: fetch the tarball if missing; ``False`` uses the cache or fails naming the expected path.
        label_type: ``"fine"``; for CIFAR-100 also ``"coarse"`` (the 20 superclasses).

    Raises:
        ValueError: on bad arguments, missing/corrupt files, or batches that are not CIFAR's.
    """
    check_choice(name, "name", tuple(SOURCES))
    check_choice(label_type, "label_type", tuple(LABEL_KEYS[name]))
    download = check_flag(download, "download")
    folder = cache_dir(root) / name
    archive = ensure_file(SOURCES[name], folder, download=download)
    inner, train_files, test_files = LAYOUT[name]
    _extract_once(archive, folder, [f"{inner}/{f}" for f in train_files + test_files])
    out = []
    for files in (train_files, test_files):
        parts = [read_batch(folder / inner / f, LABEL_KEYS[name][label_type]) for f in files]
        out += [np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])]
    num_classes = NUM_CLASSES[(name, label_type)]
    for labels in (out[1], out[3]):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            fail(f"{name} labels", f"in [0, {num_classes})", f"range [{labels.min()}, {labels.max()}]")
    return out[0], out[1], out[2], out[3]


def _extract_once(archive: Path, folder: Path, needed: list[str]) -> None:
    """Extract ``archive`` into ``folder`` unless a stamp says this exact file was already extracted."""
    stat = archive.stat()
    stamp, token = folder / _STAMP, f"{archive.name} {stat.st_size} {stat.st_mtime_ns}"
    if stamp.is_file() and stamp.read_text() == token and all((folder / n).is_file() for n in needed):
        return
    stamp.unlink(missing_ok=True)
    safe_extract(archive, folder)
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        fail(archive.name, "an archive holding " + ", ".join(needed), "one missing " + ", ".join(missing))
    stamp.write_text(token)  # written last: an interrupted extraction is redone next time


def to_split(name: str, arrays: tuple[np.ndarray, ...], num_classes: int, *, train_size: int | None,
             test_size: int | None, y_train_clean: np.ndarray | None = None,
             stratify_by: np.ndarray | None = None) -> SplitData:
    """Subset (stratified) and convert uint8 CIFAR arrays to a float32 :class:`SplitData` in ``[0, 1]``."""
    x_tr, y_tr, x_te, y_te = arrays
    keep_tr = stratified_head(y_tr if stratify_by is None else stratify_by, train_size, "train_size")
    keep_te = stratified_head(y_te, test_size, "test_size")

    def floats(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x.astype(np.float32) / 255.0)

    return SplitData(
        name=name, x_train=floats(x_tr[keep_tr]), y_train=torch.from_numpy(y_tr[keep_tr]),
        x_test=floats(x_te[keep_te]), y_test=torch.from_numpy(y_te[keep_te]), num_classes=num_classes,
        y_train_clean=None if y_train_clean is None else torch.from_numpy(y_train_clean[keep_tr]),
    )


_CIFAR_REF = ("Krizhevsky, Learning Multiple Layers of Features from Tiny Images, tech. report, "
              "University of Toronto, 2009 (the CIFAR-10 and CIFAR-100 datasets).")


@register("dataset", "cifar10", family="image", hyper=dict(COMMON_HYPER), reference=_CIFAR_REF, tags=("download",))
def make_cifar10(*, root: str | None = None, download: bool = True,
                 train_size: int | None = None, test_size: int | None = None) -> SplitData:
    """CIFAR-10 colour images, downloaded once, verified by SHA-256 and unpickled safely.

    The standard small natural-image benchmark: 50,000 train and 10,000 test
    RGB 32x32 images of 10 classes, in the official batch order (train =
    ``data_batch_1`` .. ``data_batch_5`` concatenated, the order CIFAR-10N indexes).

    Args:
        root: cache folder override (default ``$LOSSLAB_DATA`` or ``~/.cache/losslab``).
        download: fetch the tarball if missing; ``False`` uses the cache or fails naming where to put it.
        train_size: stratified subset of the train split (handy on a CPU).
        test_size: stratified subset of the test split.

    Returns:
        :class:`SplitData` ``"cifar10"``: float32 ``x (N, 3, 32, 32)`` in ``[0, 1]`` (channels R, G, B),
        int64 ``y`` in ``[0, 10)``.

    Raises:
        ValueError: see :func:`cifar_arrays`; also on a subset size larger than the split.

    References:
        Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009.

    Example:
        >>> data = make_cifar10(train_size=5000)  # doctest: +SKIP
        >>> tuple(data.x_train.shape), data.num_classes  # doctest: +SKIP
        ((5000, 3, 32, 32), 10)
    """
    arrays = cifar_arrays("cifar10", root=root, download=download)
    return to_split("cifar10", arrays, 10, train_size=train_size, test_size=test_size)


@register("dataset", "cifar100", family="image", reference=_CIFAR_REF, tags=("download",),
          hyper={**COMMON_HYPER,
                 "label_type": choice("fine", ("fine", "coarse"), doc="100 fine classes or 20 superclasses")})
def make_cifar100(*, root: str | None = None, download: bool = True, train_size: int | None = None,
                  test_size: int | None = None, label_type: str = "fine") -> SplitData:
    """CIFAR-100 colour images with fine (100) or coarse (20) labels, verified and unpickled safely.

    Same images format as CIFAR-10 (50,000 train, 10,000 test, RGB 32x32);
    ``label_type="coarse"`` gives the 20 superclasses, a 5x easier task with
    the same inputs.

    Args:
        root: cache folder override.
        download: fetch the tarball if missing; ``False`` uses the cache or fails naming where to put it.
        train_size: stratified subset of the train split.
        test_size: stratified subset of the test split.
        label_type: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).

    Returns:
        :class:`SplitData` ``"cifar100"``: float32 ``x (N, 3, 32, 32)`` in ``[0, 1]``, int64 ``y``,
        ``num_classes`` 100 or 20.

    Raises:
        ValueError: see :func:`cifar_arrays`.

    References:
        Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009.

    Example:
        >>> make_cifar100(label_type="coarse", test_size=200).num_classes  # doctest: +SKIP
        20
    """
    arrays = cifar_arrays("cifar100", root=root, download=download, label_type=label_type)
    return to_split("cifar100", arrays, NUM_CLASSES[("cifar100", label_type)],
                    train_size=train_size, test_size=test_size)
