"""Bring your own images: a folder with one sub-folder per class, as a :class:`~losslab.data.base.SplitData`.

Layout (the torchvision ``ImageFolder`` convention)::

    root/
      cat/ 001.png  002.jpg  more/003.png
      dog/ 001.png  ...

Class ids are the sorted folder names (``cat -> 0``, ``dog -> 1``). Images are
found recursively inside each class folder; hidden files and folders (a leading
``.``) and files with other suffixes are ignored. Decoding uses Pillow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from losslab.core.registry import choice, integer, real, register, text
from losslab.core.validation import check_choice, check_number, fail
from losslab.data.arrays import resolve_path, stratified_split
from losslab.data.base import SplitData

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
MODES = ("rgb", "gray")
_PIL_MODE = {"rgb": "RGB", "gray": "L"}


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def class_names(root: Any) -> list[str]:
    """The class folder names under ``root``, sorted; class ``k`` is the ``k``-th name.

    Args:
        root: the dataset folder; a relative path is resolved against the working directory.

    Returns:
        Sorted names of the non-hidden sub-folders.

    Raises:
        ValueError: on a missing folder or fewer than 2 class folders.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("dog", "cat", ".cache"): (root / name).mkdir()
        >>> class_names(root)
        ['cat', 'dog']
    """
    folder = resolve_path(root, "root", directory=True)
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) < 2:
        fail("root", "a folder with at least 2 class sub-folders (one per class)",
             f"{str(root)!r} with {len(names)}: {names}")
    return names


def image_files(root: Any, classes: list[str], name: str = "root") -> tuple[list[Path], np.ndarray]:
    """Every image under ``root/<class>/`` (recursively, sorted) and its class id.

    Raises:
        ValueError: on a class folder without images (naming it).
    """
    folder = resolve_path(root, name, directory=True)
    files, labels = [], []
    for k, cls in enumerate(classes):
        found = sorted(p for p in (folder / cls).rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not _hidden(p, folder))
        if not found:
            fail(name, f"a folder whose class folders each hold images ({', '.join(IMAGE_SUFFIXES)})",
                 f"an empty class folder {str(folder / cls)!r}")
        files += found
        labels += [k] * len(found)
    return files, np.asarray(labels, dtype=np.int64)


def decode_image(path: Path, *, mode: str = "rgb", size: int | None = None) -> np.ndarray:
    """One image as float32 ``(C, H, W)`` in ``[0, 1]`` (``C = 3`` for rgb, 1 for gray).

    ``PIL.Image.open(path).convert("RGB" | "L")`` (the first frame of an animation),
    resized to ``size x size`` with bilinear filtering when ``size`` is given,
    then ``uint8 / 255``.

    Raises:
        ValueError: naming the file when Pillow cannot read it.
    """
    check_choice(mode, "mode", MODES)
    if size is not None:
        check_number(size, "size", low=1, integer=True)
    try:
        with Image.open(path) as im:
            im = im.convert(_PIL_MODE[mode])
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            pixels = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:  # SyntaxError: broken PNG chunks
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        fail("image", "a file Pillow can decode", f"{str(path)!r} ({first})")
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return pixels.astype(np.float32) / np.float32(255.0)


def _stack(files: list[Path], mode: str, size: int | None) -> np.ndarray:
    images = [decode_image(f, mode=mode, size=size) for f in files]
    first = images[0].shape
    for f, im in zip(files, images):
        if im.shape != first:
            fail("size", f"set (e.g. size: {max(first[1:])}) because the images differ in size",
                 f"{str(files[0])!r} of {first[2]}x{first[1]} and {str(f)!r} of {im.shape[2]}x{im.shape[1]}")
    return np.stack(images)


@register("dataset", "image_folder", family="user",
          reference="User-provided image folder, one sub-folder per class (the torchvision ImageFolder "
                    "layout), decoded with Pillow.",
          tags=("files",),
          hyper={"root": text(None, doc="required: a folder with one sub-folder of images per class"),
                 "test_root": text(None, doc="optional test folder with the same class sub-folders"),
                 "size": integer(None, 1, doc="resize every image to size x size (bilinear)"),
                 "mode": choice("rgb", MODES, doc="3 colour channels or 1 gray channel"),
                 "test_fraction": real(0.25, 0.0, 1.0, low_open=True, high_open=True,
                                       doc="fraction in the test split when there is no test_root"),
                 "split_seed": integer(0, 0, doc="seed of the stratified train/test split")})
def load_image_folder(*, root: str | None = None, test_root: str | None = None, size: int | None = None,
                      mode: str = "rgb", test_fraction: float = 0.25, split_seed: int = 0) -> SplitData:
    """Images in class sub-folders as float32 ``(N, C, H, W)`` tensors in ``[0, 1]``.

    Use it to run losslab on your own small image dataset. Class ids are the
    sorted sub-folder names of ``root`` (:func:`class_names`). With
    ``test_root`` (which must hold the same class folders) it is the test
    split; otherwise the images are split by
    :func:`~losslab.data.arrays.stratified_split`. Pixels are ``uint8 / 255``
    after ``convert("RGB")`` or ``convert("L")`` (alpha is dropped); without
    ``size`` every image must already share one size.

    Args:
        root: the image folder (required); relative paths use the working directory.
        test_root: optional test folder with the same class sub-folders.
        size: resize each image to ``size x size`` with Pillow's BILINEAR filter.
        mode: ``"rgb"`` (3 channels) or ``"gray"`` (1 channel).
        test_fraction: test share of a split, in ``(0, 1)`` (ignored with ``test_root``).
        split_seed: non-negative seed of the split (ignored with ``test_root``).

    Returns:
        :class:`SplitData` named ``"image_folder:<root folder name>"`` with float32
        ``x (N, C, H, W)`` and int64 ``y`` in ``[0, number of class folders)``.

    Raises:
        ValueError: (one line) on a missing folder, fewer than 2 class folders, an
            empty class folder, different class folders in ``test_root``, an image
            Pillow cannot read (naming it), images of different sizes without
            ``size`` (naming two of them), or a split that cannot be stratified.

    References:
        Pillow (PIL fork) image decoding; the ImageFolder layout of torchvision.datasets.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp()) / "shapes"
        >>> for cls in ("a", "b"):
        ...     (root / cls).mkdir(parents=True)
        ...     for i in range(2): Image.new("L", (4, 4), i * 99).save(root / cls / f"{i}.png")
        >>> d = load_image_folder(root=str(root), mode="gray", test_fraction=0.5)
        >>> d.name, tuple(d.x_train.shape), d.num_classes
        ('image_folder:shapes', (2, 1, 4, 4), 2)
    """
    mode = check_choice(mode, "mode", MODES)
    if size is not None:
        size = check_number(size, "size", low=1, integer=True)
    classes = class_names(root)
    files, y = image_files(root, classes)
    if test_root is not None:
        test_classes = sorted(p.name for p in resolve_path(test_root, "test_root", directory=True).iterdir()
                              if p.is_dir() and not p.name.startswith("."))
        if test_classes != classes:
            fail("test_root", f"a folder with the same class folders as `root` {classes}", f"{test_classes}")
        test_files, y_test = image_files(test_root, classes, "test_root")
        x, x_test = np.split(_stack(files + test_files, mode, size), [len(files)])
        parts = (x, y, x_test, y_test)
    else:
        train, test = stratified_split(y, test_fraction=test_fraction, split_seed=split_seed, name="root",
                                       classes=np.asarray(classes))
        x = _stack(files, mode, size)
        parts = (x[train], y[train], x[test], y[test])
    x_tr, y_tr, x_te, y_te = (torch.from_numpy(np.ascontiguousarray(p)) for p in parts)
    return SplitData(name=f"image_folder:{resolve_path(root, 'root', directory=True).name}", x_train=x_tr,
                     y_train=y_tr, x_test=x_te, y_test=y_te, num_classes=len(classes))
