"""The IDX file format and the two benchmarks shipped in it: MNIST and Fashion-MNIST.

IDX layout (all integers big-endian)::

    offset 0: 0x00 0x00          two zero bytes
    offset 2: dtype code         0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    offset 3: ndim               number of dimensions d
    offset 4: d x uint32         the size of each dimension
    then:     prod(sizes) items  row-major (C order)

The files are distributed gzipped (``train-images-idx3-ubyte.gz`` etc.);
:func:`read_idx` reads either form, detected by the gzip magic bytes.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from losslab.core.registry import register
from losslab.core.validation import fail
from losslab.data.base import SplitData
from losslab.data.download import RemoteFile, cache_dir, ensure_file
from losslab.data.vision import COMMON_HYPER, check_flag, stratified_head

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse an IDX file (raw or gzipped) into a numpy array.

    Args:
        path: the ``.idx``/``-ubyte`` file, optionally gzipped.

    Returns:
        An array of the file's shape with the native-endian version of its dtype.

    Raises:
        ValueError: if the file is missing, is a corrupt gzip stream, has a bad
            magic number or dtype code, or holds fewer or more bytes than its
            header announces.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "a.idx"
        >>> _ = p.write_bytes(bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6)))
        >>> read_idx(p).tolist()
        [[0, 1, 2], [3, 4, 5]]
    """
    path = Path(path)
    if not path.is_file():
        fail("path", "an existing IDX file", str(path))
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            fail("path", "a readable gzip file", f"{path.name} ({err})")
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        fail("path", "an IDX file (magic 0x0000 then a dtype code in "
             + ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES) + ")", f"{path.name} starting with {raw[:4].hex()}")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        fail("path", f"an IDX header of {header} bytes", f"{path.name} with {len(raw)} bytes (truncated)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    need = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != need:
        state = "truncated" if len(raw) < need else "trailing bytes"
        fail("path", f"{need} bytes for shape {shape} of {dtype.name}", f"{path.name} with {len(raw)} ({state})")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _remote(names_and_digests: dict[str, tuple[str, str]], mirrors: tuple[str, ...]) -> dict[str, RemoteFile]:
    return {key: RemoteFile(name, tuple(m + name for m in mirrors), digest)
            for key, (name, digest) in names_and_digests.items()}


# SHA-256 digests: TensorFlow Datasets, tensorflow_datasets/url_checksums/mnist.txt (url, size, sha256),
# the same values Keras and torchvision's prototype datasets pin for these files.
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# SHA-256 digests: TensorFlow Datasets, tensorflow_datasets/url_checksums/fashion_mnist.txt.
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
# Tests point these at tiny local fixtures (monkeypatch.setitem); nothing else writes them.
SOURCES: dict[str, dict[str, RemoteFile]] = {
    "mnist": _remote({
        "train_images": ("train-images-idx3-ubyte.gz",
                         "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train_labels": ("train-labels-idx1-ubyte.gz",
                         "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "test_images": ("t10k-images-idx3-ubyte.gz",
                        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "test_labels": ("t10k-labels-idx1-ubyte.gz",
                        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    }, _MNIST_MIRRORS),
    "fashion_mnist": _remote({
        "train_images": ("train-images-idx3-ubyte.gz",
                         "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        "train_labels": ("train-labels-idx1-ubyte.gz",
                         "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        "test_images": ("t10k-images-idx3-ubyte.gz",
                        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        "test_labels": ("t10k-labels-idx1-ubyte.gz",
                        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    }, _FASHION_MIRRORS),
}


def load_idx_benchmark(name: str, *, root: str | None = None, download: bool = True,
                       train_size: int | None = None, test_size: int | None = None) -> SplitData:
    """An IDX image benchmark (``"mnist"`` or ``"fashion_mnist"``) as a :class:`SplitData`.

    Files are cached in ``cache_dir(root) / name`` and verified by SHA-256.
    Pixels ``0..255`` are scaled to ``[0, 1]`` and given one channel.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        root: cache folder override.
        download: fetch missing files; ``False`` uses the cache or fails naming the expected path.
        train_size: keep a stratified subset of this many train images (see :func:`stratified_head`).
        test_size: likewise for the test split.

    Returns:
        :class:`SplitData` with float32 ``x (N, 1, 28, 28)`` in ``[0, 1]``, int64 ``y`` in ``[0, 10)``.

    Raises:
        ValueError: on a bad argument, a missing file with ``download=False``, a
            failed or corrupt download, or IDX files that do not form an image/label pair.
    """
    if name not in SOURCES:
        fail("name", "one of " + ", ".join(map(repr, SOURCES)), repr(name))
    download = check_flag(download, "download")
    folder = cache_dir(root) / name
    paths = {key: ensure_file(remote, folder, download=download) for key, remote in SOURCES[name].items()}
    splits = {}
    for split, size in (("train", train_size), ("test", test_size)):
        images, labels = read_idx(paths[f"{split}_images"]), read_idx(paths[f"{split}_labels"])
        _check_pair(images, labels, paths[f"{split}_images"].name)
        keep = stratified_head(labels, size, f"{split}_size")
        x = torch.from_numpy(images[keep].astype(np.float32) / 255.0).unsqueeze(1)
        splits[split] = (x, torch.from_numpy(labels[keep].astype(np.int64)))
    return SplitData(name=name, x_train=splits["train"][0], y_train=splits["train"][1],
                     x_test=splits["test"][0], y_test=splits["test"][1], num_classes=10)


def _check_pair(images: np.ndarray, labels: np.ndarray, what: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        fail(what, "uint8 images of shape (N, 28, 28)", f"{images.dtype} of shape {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        fail(what, f"labels of shape ({images.shape[0]},) to match the images", f"shape {labels.shape}")
    if labels.size and int(labels.max()) >= 10:
        fail(what, "labels in [0, 10)", f"a label {int(labels.max())}")


@register("dataset", "mnist", family="image", hyper=dict(COMMON_HYPER), tags=("download",),
          reference="LeCun, Bottou, Bengio and Haffner, Gradient-Based Learning Applied to Document "
                    "Recognition, Proc. IEEE 1998; the MNIST database (60,000 train / 10,000 test 28x28 digits).")
def make_mnist(*, root: str | None = None, download: bool = True,
               train_size: int | None = None, test_size: int | None = None) -> SplitData:
    """MNIST handwritten digits, downloaded once and verified by SHA-256.

    Use it as the classic small image benchmark: 60,000 train and 10,000 test
    grey 28x28 digits, 10 classes. Files come from the first working mirror
    (ossci-datasets S3, Google CVDF, yann.lecun.com) into ``cache_dir(root)/mnist``.

    Args:
        root: cache folder override (default ``$LOSSLAB_DATA`` or ``~/.cache/losslab``).
        download: fetch missing files; ``False`` uses the cache or fails naming where to put them.
        train_size: stratified subset of the train split (handy on a CPU).
        test_size: stratified subset of the test split.

    Returns:
        :class:`SplitData` ``"mnist"``: float32 ``x (N, 1, 28, 28)`` in ``[0, 1]``, int64 ``y``, 10 classes.

    Raises:
        ValueError: see :func:`load_idx_benchmark`.

    References:
        LeCun et al., Gradient-Based Learning Applied to Document Recognition, 1998.

    Example:
        >>> data = make_mnist(train_size=1000)  # doctest: +SKIP
        >>> tuple(data.x_train.shape), tuple(data.x_test.shape)  # doctest: +SKIP
        ((1000, 1, 28, 28), (10000, 1, 28, 28))
    """
    return load_idx_benchmark("mnist", root=root, download=download, train_size=train_size, test_size=test_size)


@register("dataset", "fashion_mnist", family="image", hyper=dict(COMMON_HYPER), tags=("download",),
          reference="Xiao, Rasul and Vollgraf, Fashion-MNIST: a Novel Image Dataset for Benchmarking "
                    "Machine Learning Algorithms, arXiv:1708.07747, 2017.")
def make_fashion_mnist(*, root: str | None = None, download: bool = True,
                       train_size: int | None = None, test_size: int | None = None) -> SplitData:
    """Fashion-MNIST clothing images, downloaded once and verified by SHA-256.

    A drop-in MNIST replacement that is harder to fit: 60,000 train and 10,000
    test grey 28x28 images of 10 clothing classes, same IDX files and layout.

    Args:
        root: cache folder override (default ``$LOSSLAB_DATA`` or ``~/.cache/losslab``).
        download: fetch missing files; ``False`` uses the cache or fails naming where to put them.
        train_size: stratified subset of the train split.
        test_size: stratified subset of the test split.

    Returns:
        :class:`SplitData` ``"fashion_mnist"``: float32 ``x (N, 1, 28, 28)`` in ``[0, 1]``, int64 ``y``.

    Raises:
        ValueError: see :func:`load_idx_benchmark`.

    References:
        Xiao, Rasul and Vollgraf, Fashion-MNIST, arXiv:1708.07747, 2017.

    Example:
        >>> data = make_fashion_mnist(test_size=500)  # doctest: +SKIP
        >>> data.num_classes, tuple(data.x_test.shape)  # doctest: +SKIP
        (10, (500, 1, 28, 28))
    """
    return load_idx_benchmark("fashion_mnist", root=root, download=download,
                              train_size=train_size, test_size=test_size)
