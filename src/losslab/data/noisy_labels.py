"""Benchmarks with real human label noise: CIFAR-10N/100N, and image folders with noisy label lists.

For these datasets ``y_train`` holds the *noisy* labels a model is trained on
and ``y_train_clean`` the ground truth, so the engine can score how many noisy
labels a model memorised and how well it fits the clean ones. Use
:func:`noise_rate` for the realised fraction of wrong train labels.

CIFAR-N files. ``CIFAR-10_human.pt`` and ``CIFAR-100_human.pt`` (repository
UCSC-REAL/cifar-10-100n, folder ``data/``) are ``torch.save`` dicts of numpy
int arrays of length 50,000 indexed like CIFAR's python train batches:

========================  ==========================================================
CIFAR-10_human.pt         ``clean_label``, ``aggre_label``, ``worse_label``,
                          ``random_label1``, ``random_label2``, ``random_label3``
CIFAR-100_human.pt        ``clean_label``, ``noisy_label``
========================  ==========================================================

They are loaded with ``torch.load(weights_only=True)``, allow-listing only
numpy's array reconstructor, ``ndarray`` and the bool/int/float dtypes
(:func:`torch.serialization.safe_globals`), so a tampered file cannot run
code; the ``.npy`` twins would need ``allow_pickle=True``, which can. No
SHA-256 is published for them, so they are trusted on first use (see
:mod:`losslab.data.download`) and checked structurally instead: the keys,
the lengths, the label range, and ``clean_label`` equal to CIFAR's own train
labels element-wise (which also proves the index order matches).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from losslab.core.registry import choice, integer, register, text
from losslab.core.validation import check_choice, check_number, fail
from losslab.data.base import SplitData
from losslab.data.cifar import NUM_CLASSES, cifar_arrays, to_split
from losslab.data.download import RemoteFile, cache_dir, ensure_file
from losslab.data.vision import COMMON_HYPER

_CIFAR_N = "https://raw.githubusercontent.com/UCSC-REAL/cifar-10-100n/main/data/"
_CIFAR_N_GH = "https://github.com/UCSC-REAL/cifar-10-100n/raw/main/data/"
# No published SHA-256 exists for these files: sha256=None means trust on first use plus the
# structural checks in `human_labels`. Tests point these at tiny fixtures (monkeypatch.setitem).
SOURCES: dict[str, RemoteFile] = {
    "cifar10n": RemoteFile("CIFAR-10_human.pt", (_CIFAR_N + "CIFAR-10_human.pt", _CIFAR_N_GH + "CIFAR-10_human.pt"),
                           None),
    "cifar100n": RemoteFile("CIFAR-100_human.pt",
                            (_CIFAR_N + "CIFAR-100_human.pt", _CIFAR_N_GH + "CIFAR-100_human.pt"), None),
}
LABEL_SETS = {
    "cifar10n": {"aggre": "aggre_label", "worst": "worse_label", "random1": "random_label1",
                 "random2": "random_label2", "random3": "random_label3"},
    "cifar100n": {"noisy": "noisy_label"},
}
_BASE = {"cifar10n": "cifar10", "cifar100n": "cifar100"}
_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_SAFE_NUMPY = [
    _RECONSTRUCT, (_RECONSTRUCT, "numpy.core.multiarray._reconstruct"),  # name under numpy < 2
    np.ndarray, np.dtype, *{type(np.dtype(code)) for code in "?bBhHiIlLqQefd"},
]
_WEI = ("Wei, Zhu, Cheng, Liu, Niu and Liu, Learning with Noisy Labels Revisited: A Study Using "
        "Real-World Human Annotations, ICLR 2022 (CIFAR-10N/CIFAR-100N).")


def load_human_labels(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a CIFAR-N ``.pt`` label file without executing code: ``{key: int64 array}``.

    Raises:
        ValueError: if the file is not a ``torch.save`` archive of a dict of
            integer arrays, or needs globals beyond numpy's array constructors.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_SAFE_NUMPY):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        reason = _short_reason(err)
        fail(path.name, "a CIFAR-N label file loadable with weights_only=True", f"an unreadable file ({reason})")
    if not isinstance(obj, dict):
        fail(path.name, "a dict of label arrays", type(obj).__name__)
    out = {}
    for key, value in obj.items():
        arr = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            fail(f"{path.name}[{key!r}]", "a 1-D integer label array", f"{arr.dtype} of shape {arr.shape}")
        out[str(key)] = arr.astype(np.int64)
    return out


def _short_reason(err: BaseException) -> str:
    """The paragraph of torch's multi-paragraph load error that names the refused global, on one line."""
    paras = [" ".join(p.split()) for p in str(err).split("\n\n") if p.strip()] or [type(err).__name__]
    useful = next((p for p in paras if "GLOBAL" in p or "Unpickler" in p), paras[0])
    return useful.removeprefix("WeightsUnpickler error: ")[:300]


def human_labels(name: str, path: str | os.PathLike[str], clean: np.ndarray, label_set: str) -> np.ndarray:
    """The ``label_set`` noisy labels of a CIFAR-N file, after checking it is aligned with ``clean``.

    Args:
        name: ``"cifar10n"`` or ``"cifar100n"``.
        path: the ``.pt`` file.
        clean: CIFAR's own ``(N,)`` train labels, in batch order.
        label_set: a key of ``LABEL_SETS[name]`` (e.g. ``"worst"``).

    Returns:
        ``(N,)`` int64 noisy labels.

    Raises:
        ValueError: on a missing key, a length other than ``N``, labels out of
            range, or a ``clean_label`` that differs from ``clean`` anywhere
            (a different file, or images in a different order).
    """
    check_choice(name, "name", tuple(LABEL_SETS))
    check_choice(label_set, "label_set", tuple(LABEL_SETS[name]))
    labels, key, fname = load_human_labels(path), LABEL_SETS[name][label_set], Path(path).name
    for need in ("clean_label", key):
        if need not in labels:
            fail(fname, f"a CIFAR-N file with key {need!r}", "keys " + ", ".join(sorted(labels)))
        if labels[need].shape != clean.shape:
            fail(f"{fname}[{need!r}]", f"{clean.shape[0]} labels, one per CIFAR train image (wrong file?)",
                 f"{labels[need].shape[0]}")
    bad = np.flatnonzero(labels["clean_label"] != clean)
    if bad.size:
        fail(f"{fname}['clean_label']", f"equal to the {_BASE[name]} train labels (same images, same order)",
             f"{bad.size} mismatches, first at index {bad[0]} (wrong file or wrong order)")
    noisy, num_classes = labels[key], NUM_CLASSES[(_BASE[name], "fine")]
    if noisy.min() < 0 or noisy.max() >= num_classes:
        fail(f"{fname}[{key!r}]", f"labels in [0, {num_classes})", f"range [{noisy.min()}, {noisy.max()}]")
    return noisy


def noise_rate(data: SplitData) -> float:
    """Fraction of train samples whose label differs from the clean one: ``mean(y_train != y_train_clean)``.

    Example:
        >>> y = torch.tensor([0, 1, 2, 3])
        >>> x = torch.zeros(4, 1)
        >>> noise_rate(SplitData("d", x, torch.tensor([0, 1, 0, 0]), x, y, 4, y_train_clean=y))
        0.5
    """
    if not isinstance(data, SplitData):
        fail("data", "a SplitData", type(data).__name__)
    if data.y_train.numel() == 0:
        fail("data", "a SplitData with train samples", "an empty train split")
    return float((data.y_train != data.y_train_clean).double().mean())


def _load_cifar_n(name: str, *, root, download, train_size, test_size, label_set) -> SplitData:
    check_choice(label_set, "label_set", tuple(LABEL_SETS[name]))
    arrays = cifar_arrays(_BASE[name], root=root, download=download)
    path = ensure_file(SOURCES[name], cache_dir(root) / "cifar_n", download=download)
    noisy = human_labels(name, path, arrays[1], label_set)
    clean = arrays[1]
    # stratify any subset by the true class, so the noise rate of a slice tracks the full set's
    return to_split(name, (arrays[0], noisy, arrays[2], arrays[3]), NUM_CLASSES[(_BASE[name], "fine")],
                    train_size=train_size, test_size=test_size, y_train_clean=clean, stratify_by=clean)


@register("dataset", "cifar10n", family="image", reference=_WEI, tags=("download", "noisy_labels"),
          hyper={**COMMON_HYPER, "label_set": choice("worst", tuple(LABEL_SETS["cifar10n"]),
                                                     doc="which human label set trains the model")})
def make_cifar10n(*, root: str | None = None, download: bool = True, train_size: int | None = None,
                  test_size: int | None = None, label_set: str = "worst") -> SplitData:
    """CIFAR-10 with real human noisy train labels (CIFAR-10N); test labels stay clean.

    Use it to judge noise-robust objectives on annotator noise rather than
    synthetic flips. Label sets and the paper's noise rates: ``aggre``
    (majority of three, 9.03%), ``random1``/``random2``/``random3`` (one
    annotator each, 17.23/18.12/17.64%), ``worst`` (a wrong one where any
    annotator erred, 40.21%). :func:`noise_rate` reports the realised rate.

    Args:
        root: cache folder override.
        download: fetch missing files (CIFAR-10 tarball and ``CIFAR-10_human.pt``).
        train_size: subset of the train split, stratified by the clean class.
        test_size: stratified subset of the test split.
        label_set: ``"aggre"``, ``"worst"``, ``"random1"``, ``"random2"`` or ``"random3"``.

    Returns:
        :class:`SplitData` ``"cifar10n"``: as :func:`~losslab.data.cifar.make_cifar10`, with
        ``y_train`` the chosen human labels and ``y_train_clean`` CIFAR-10's labels.

    Raises:
        ValueError: see :func:`human_labels` and :func:`~losslab.data.cifar.cifar_arrays`.

    References:
        Wei et al., Learning with Noisy Labels Revisited: A Study Using Real-World Human
        Annotations, ICLR 2022.

    Example:
        >>> data = make_cifar10n(label_set="aggre")  # doctest: +SKIP
        >>> round(noise_rate(data), 4)  # doctest: +SKIP
        0.0903
    """
    return _load_cifar_n("cifar10n", root=root, download=download, train_size=train_size,
                         test_size=test_size, label_set=label_set)


@register("dataset", "cifar100n", family="image", reference=_WEI, tags=("download", "noisy_labels"),
          hyper={**COMMON_HYPER, "label_set": choice("noisy", ("noisy",), doc="the one human label set")})
def make_cifar100n(*, root: str | None = None, download: bool = True, train_size: int | None = None,
                   test_size: int | None = None, label_set: str = "noisy") -> SplitData:
    """CIFAR-100 with real human noisy fine train labels (CIFAR-100N, 40.20% noise in the paper).

    Args:
        root: cache folder override.
        download: fetch missing files (CIFAR-100 tarball and ``CIFAR-100_human.pt``).
        train_size: subset of the train split, stratified by the clean class.
        test_size: stratified subset of the test split.
        label_set: ``"noisy"``.

    Returns:
        :class:`SplitData` ``"cifar100n"`` with 100 classes, ``y_train`` the human labels and
        ``y_train_clean`` CIFAR-100's fine labels.

    Raises:
        ValueError: see :func:`human_labels` and :func:`~losslab.data.cifar.cifar_arrays`.

    References:
        Wei et al., Learning with Noisy Labels Revisited: A Study Using Real-World Human
        Annotations, ICLR 2022.

    Example:
        >>> round(noise_rate(make_cifar100n()), 4)  # doctest: +SKIP
        0.402
    """
    return _load_cifar_n("cifar100n", root=root, download=download, train_size=train_size,
                         test_size=test_size, label_set=label_set)


def read_label_list(path: str | os.PathLike[str], name: str) -> list[tuple[str, int, int]]:
    """Parse ``relative/path.jpg <class_id>`` lines into ``(path, label, line_number)``.

    Blank lines and lines starting with ``#`` are skipped; the path may hold
    spaces (the label is the last field).

    Raises:
        ValueError: naming ``name`` and the line number on a malformed line,
            a negative or non-integer label, or an absolute or ``..`` path.
    """
    path = Path(path)
    if not path.is_file():
        fail(name, "an existing label file", str(path))
    entries = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].isdigit():
            fail(f"{name} line {lineno}", "'relative/path.jpg <class_id>' with a non-negative integer id",
                 repr(line))
        rel = PurePosixPath(parts[0].replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts:
            fail(f"{name} line {lineno}", "a path relative to root without '..'", repr(parts[0]))
        entries.append((rel.as_posix(), int(parts[1]), lineno))
    if not entries:
        fail(name, "a label file with at least one entry", str(path))
    return entries


def _load_images(root: Path, entries: list[tuple[str, int, int]], name: str, size: int | None,
                 mode: str) -> np.ndarray:
    images, first = [], None
    for rel, _, lineno in entries:
        file = root / rel
        if not file.is_file():
            fail(f"{name} line {lineno}", f"an image file under {root}", f"missing file {rel!r}")
        try:
            with Image.open(file) as img:
                img = img.convert("RGB" if mode == "rgb" else "L")
                if size is not None:
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as err:
            fail(f"{name} line {lineno}", "a readable image", f"{rel!r} ({err})")
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if first is None:
            first = (rel, arr.shape)
        elif arr.shape != first[1]:
            fail(f"{name} line {lineno}", f"an image of shape {first[1]} like {first[0]!r} (or pass size)",
                 f"{rel!r} of shape {arr.shape}")
        images.append(arr)
    return np.stack(images)


@register("dataset", "noisy_folder", family="image", tags=("files", "noisy_labels"),
          reference="Generic layout of Clothing1M-style noisy-label benchmarks: Xiao, Xia, Yang, Huang and "
                    "Wang, Learning from Massive Noisy Labeled Data for Image Classification, CVPR 2015.",
          hyper={"root": text(None, doc="folder the image paths are relative to (required)"),
                 "train_labels": text(None, doc="noisy train list: 'path <class_id>' lines (required)"),
                 "clean_labels": text(None, doc="optional verified labels for some train paths"),
                 "test_labels": text(None, doc="clean test list (required)"),
                 "size": integer(None, 1, doc="resize every image to size x size (else all must match)"),
                 "mode": choice("rgb", ("rgb", "gray"), doc="decode as 3-channel RGB or 1-channel grey")})
def make_noisy_folder(*, root: str | None = None, train_labels: str | None = None, clean_labels: str | None = None,
                      test_labels: str | None = None, size: int | None = None, mode: str = "rgb") -> SplitData:
    """Images in a folder with noisy train label lists, e.g. Clothing1M or ANIMAL-10N exported to files.

    Each list holds ``relative/path.jpg <class_id>`` lines (label files may
    be given relative to ``root``). ``y_train`` comes from ``train_labels``;
    ``y_train_clean`` from ``clean_labels`` where that file lists the path,
    else the noisy label, so a sample without a verified label counts as
    correctly labelled in the clean metrics (give a complete clean list when
    those metrics matter). Decoding holds every image in memory as float32, so use it
    for folders of up to a few hundred thousand small images.

    Args:
        root: the image folder.
        train_labels: noisy train list.
        clean_labels: optional list of verified train labels.
        test_labels: clean test list.
        size: resize to ``size x size`` (bilinear); without it all images must share one size.
        mode: ``"rgb"`` (3 channels) or ``"gray"`` (1 channel).

    Returns:
        :class:`SplitData` ``"noisy_folder"``: float32 ``x (N, C, H, W)`` in ``[0, 1]`` in list order,
        ``num_classes`` one more than the largest id in any list.

    Raises:
        ValueError: on a missing argument or file, a malformed line, a missing or
            unreadable image (naming it and its line), mismatched sizes without
            ``size``, or conflicting duplicate entries in ``clean_labels``.

    References:
        Xiao et al., Learning from Massive Noisy Labeled Data for Image Classification, CVPR 2015.
    """
    for arg, value in (("root", root), ("train_labels", train_labels), ("test_labels", test_labels)):
        if not isinstance(value, (str, os.PathLike)) or str(value) == "":
            fail(arg, "a path (required)", repr(value))
    folder = Path(root).expanduser()
    if not folder.is_dir():
        fail("root", "an existing folder", str(folder))
    size = None if size is None else check_number(size, "size", low=1, integer=True)
    check_choice(mode, "mode", ("rgb", "gray"))
    train = read_label_list(folder / train_labels, "train_labels")
    test = read_label_list(folder / test_labels, "test_labels")
    verified = _clean_map(read_label_list(folder / clean_labels, "clean_labels")) if clean_labels else {}
    y_noisy = np.array([label for _, label, _ in train], dtype=np.int64)
    y_clean = np.array([verified.get(rel, label) for rel, label, _ in train], dtype=np.int64)
    y_test = np.array([label for _, label, _ in test], dtype=np.int64)
    num_classes = int(max(y_noisy.max(), y_clean.max(), y_test.max())) + 1
    x_train = _load_images(folder, train, "train_labels", size, mode)
    x_test = _load_images(folder, test, "test_labels", size, mode)
    if x_train.shape[1:] != x_test.shape[1:]:
        fail("test_labels", f"images of shape {x_train.shape[1:]} like the train images (or pass size)",
             f"shape {x_test.shape[1:]}")
    return SplitData(
        name="noisy_folder", num_classes=num_classes,
        x_train=torch.from_numpy(x_train.astype(np.float32) / 255.0), y_train=torch.from_numpy(y_noisy),
        x_test=torch.from_numpy(x_test.astype(np.float32) / 255.0), y_test=torch.from_numpy(y_test),
        y_train_clean=torch.from_numpy(y_clean),
    )


def _clean_map(entries: list[tuple[str, int, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for rel, label, lineno in entries:
        if out.get(rel, label) != label:
            fail(f"clean_labels line {lineno}", f"the same label as earlier for {rel!r} ({out[rel]})", label)
        out[rel] = label
    return out
