"""The `image_folder` dataset: class sub-folders of images decoded with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

from losslab.core.registry import REGISTRY
from losslab.data.image_folder import class_names, decode_image, load_image_folder


def _error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    return msg


def _pixels(k: int, h=5, w=4, channels=3) -> np.ndarray:
    """A distinct uint8 image per ``k``: pixel (i, j, c) = (k * 7 + i * 11 + j * 5 + c * 3) mod 256."""
    i, j, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(channels), indexing="ij")
    return ((k * 7 + i * 11 + j * 5 + c * 3) % 256).astype(np.uint8)


def _folder(root: Path, counts: dict[str, int], *, suffix=".png", h=5, w=4, start=0) -> dict[Path, np.ndarray]:
    """Write ``counts[cls]`` PNG (or other) images per class; returns file -> pixels."""
    written, k = {}, start
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            px = _pixels(k, h, w)
            path = root / cls / f"img{i:02d}{suffix}"
            Image.fromarray(px, "RGB").save(path)
            written[path] = px
            k += 1
    return written


def _by_first_pixel(written: dict[Path, np.ndarray]) -> dict[tuple[int, ...], np.ndarray]:
    return {tuple(px[0, 0]): px for px in written.values()}


def test_png_round_trip_is_exact_and_classes_follow_sorted_folders(tmp_path):
    written = _folder(tmp_path / "pets", {"zebra": 4, "ant": 4, "moth": 4})
    data = load_image_folder(root=str(tmp_path / "pets"), test_fraction=0.25)
    assert data.name == "image_folder:pets" and data.num_classes == 3
    assert data.x_train.shape == (9, 3, 5, 4) and data.x_test.shape == (3, 3, 5, 4)
    assert data.x_train.dtype == torch.float32 and float(data.x_train.max()) <= 1.0
    lookup = _by_first_pixel(written)
    label_of = {tuple(px[0, 0]): ["ant", "moth", "zebra"].index(p.parent.name) for p, px in written.items()}
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        for img, label in zip(x, y):
            px = np.rint(img.numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
            assert np.array_equal(px, lookup[tuple(px[0, 0])])  # exact pixels
            assert np.allclose(img.numpy().transpose(1, 2, 0), lookup[tuple(px[0, 0])] / 255.0, atol=1e-7)
            assert int(label) == label_of[tuple(px[0, 0])]
    assert class_names(tmp_path / "pets") == ["ant", "moth", "zebra"]


def test_gray_mode_uses_pillows_luma(tmp_path):
    written = _folder(tmp_path / "d", {"a": 2, "b": 2})
    data = load_image_folder(root=str(tmp_path / "d"), mode="gray", test_fraction=0.5)
    assert data.x_train.shape == (2, 1, 5, 4)
    expected = {np.array(Image.fromarray(px).convert("L")).tobytes() for px in written.values()}
    got = {np.rint(x[0].numpy() * 255).astype(np.uint8).tobytes() for x in torch.cat([data.x_train, data.x_test])}
    assert got == expected
    px = next(iter(written.values())).astype(float)  # ITU-R 601-2 luma, independently
    luma = np.array(Image.fromarray(px.astype(np.uint8)).convert("L"), dtype=float)
    assert np.abs(luma - (px[..., 0] * 299 + px[..., 1] * 587 + px[..., 2] * 114) / 1000).max() <= 1


def test_size_resizes_with_bilinear(tmp_path):
    written = _folder(tmp_path / "d", {"a": 2, "b": 2}, h=9, w=6)
    data = load_image_folder(root=str(tmp_path / "d"), size=3, test_fraction=0.5)
    assert data.x_train.shape == (2, 3, 3, 3)
    expected = {np.array(Image.fromarray(px).resize((3, 3), Image.Resampling.BILINEAR)).tobytes()
                for px in written.values()}
    got = {np.rint(x.numpy().transpose(1, 2, 0) * 255).astype(np.uint8).tobytes()
           for x in torch.cat([data.x_train, data.x_test])}
    assert got == expected


def test_different_sizes_without_size_name_two_files(tmp_path):
    _folder(tmp_path / "d", {"a": 2, "b": 1})
    _folder(tmp_path / "d", {"b": 1}, h=7, w=7, start=10)
    (tmp_path / "d" / "b" / "img00.png").rename(tmp_path / "d" / "b" / "big.png")
    _folder(tmp_path / "d", {"b": 1}, start=20)
    with pytest.raises(ValueError) as exc:
        load_image_folder(root=str(tmp_path / "d"), test_fraction=0.5)
    msg = _error(exc)
    assert "`size`" in msg and "img00.png" in msg and "big.png" in msg and "7x7" in msg and "4x5" in msg


def test_suffixes_are_case_insensitive_and_hidden_and_other_files_ignored(tmp_path):
    root = tmp_path / "d"
    _folder(root, {"a": 2, "b": 2})
    Image.fromarray(_pixels(50)).save(root / "a" / "UPPER.JPG", quality=95)
    Image.fromarray(_pixels(51)).save(root / "b" / "pic.bmp")
    Image.fromarray(_pixels(52)).save(root / "b" / "anim.gif")
    if features.check("webp"):  # Pillow builds without libwebp cannot write it
        Image.fromarray(_pixels(53)).save(root / "b" / "x.webp")
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / ".hidden.png").write_bytes(b"garbage")
    (root / ".cache").mkdir()
    (root / "a" / "nested").mkdir()
    Image.fromarray(_pixels(54)).save(root / "a" / "nested" / "deep.png")
    data = load_image_folder(root=str(root), test_fraction=0.4)
    n_b = 4 + features.check("webp")
    assert data.num_classes == 2 and data.x_train.shape[0] + data.x_test.shape[0] == 4 + n_b
    assert torch.bincount(torch.cat([data.y_train, data.y_test])).tolist() == [4, n_b]


def test_test_root_is_the_test_split(tmp_path):
    train = _folder(tmp_path / "train", {"a": 3, "b": 2})
    test = _folder(tmp_path / "test", {"a": 1, "b": 2}, start=100)
    data = load_image_folder(root=str(tmp_path / "train"), test_root=str(tmp_path / "test"))
    assert data.x_train.shape[0] == 5 and data.x_test.shape[0] == 3
    assert data.y_train.tolist() == [0, 0, 0, 1, 1] and data.y_test.tolist() == [0, 1, 1]  # sorted file order
    got = np.rint(data.x_test[0].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    assert np.array_equal(got, test[tmp_path / "test" / "a" / "img00.png"]) and len(train) == 5
    _folder(tmp_path / "odd", {"a": 1, "c": 1})
    with pytest.raises(ValueError) as exc:
        load_image_folder(root=str(tmp_path / "train"), test_root=str(tmp_path / "odd"))
    assert "`test_root`" in _error(exc) and "['a', 'c']" in _error(exc)


def test_split_is_stratified_and_deterministic(tmp_path):
    _folder(tmp_path / "d", {"a": 12, "b": 4})
    a = load_image_folder(root=str(tmp_path / "d"), test_fraction=0.25, split_seed=1)
    b = load_image_folder(root=str(tmp_path / "d"), test_fraction=0.25, split_seed=1)
    c = load_image_folder(root=str(tmp_path / "d"), test_fraction=0.25, split_seed=2)
    assert torch.bincount(a.y_test).tolist() == [3, 1]
    assert torch.equal(a.x_test, b.x_test) and not torch.equal(a.x_test, c.x_test)


def test_folder_errors(tmp_path, monkeypatch):
    _folder(tmp_path / "one", {"only": 3})
    with pytest.raises(ValueError) as exc:
        load_image_folder(root=str(tmp_path / "one"))
    assert "`root`" in _error(exc) and "at least 2 class" in _error(exc)
    _folder(tmp_path / "e", {"a": 3})
    (tmp_path / "e" / "b").mkdir()
    with pytest.raises(ValueError) as exc:
        load_image_folder(root=str(tmp_path / "e"))
    assert "`root`" in _error(exc) and "empty class folder" in _error(exc) and "/e/b" in _error(exc)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as exc:
        load_image_folder(root="nowhere")
    assert "`root`" in _error(exc) and "'nowhere'" in _error(exc) and str(tmp_path) in _error(exc)
    with pytest.raises(ValueError) as exc:
        load_image_folder()
    assert "`root`" in _error(exc)
    with pytest.raises(ValueError) as exc:
        load_image_folder(root="e", mode="cmyk")
    assert "`mode`" in _error(exc) and "'gray'" in _error(exc)


def test_unreadable_image_is_named(tmp_path):
    _folder(tmp_path / "d", {"a": 2, "b": 2})
    (tmp_path / "d" / "b" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(ValueError) as exc:
        load_image_folder(root=str(tmp_path / "d"))
    assert "broken.jpg" in _error(exc)
    with pytest.raises(ValueError) as exc:
        decode_image(tmp_path / "d" / "b" / "broken.jpg")
    assert "broken.jpg" in _error(exc)


def test_a_class_too_small_to_split_is_named(tmp_path):
    _folder(tmp_path / "d", {"a": 4, "b": 1})
    with pytest.raises(ValueError) as exc:
        load_image_folder(root=str(tmp_path / "d"))
    assert "`root`" in _error(exc) and "'b'" in _error(exc)


@pytest.mark.parametrize("condition, params", [("symmetric_noise", {"rate": 0.5}), ("long_tail", {"ratio": 3.0})])
def test_conditions_apply_unchanged(tmp_path, condition, params):
    _folder(tmp_path / "d", {"a": 8, "b": 8, "c": 8})
    ds = REGISTRY.get("dataset", "image_folder")
    data = ds.obj(**ds.resolve({"root": str(tmp_path / "d"), "mode": "gray"}))
    entry = REGISTRY.get("condition", condition)
    out = entry.obj(data, generator=torch.Generator().manual_seed(0), **entry.resolve(params))
    assert out.x_test is data.x_test and out.records[-1].name == condition and out.num_classes == 3
    assert out.x_train.shape[1:] == (1, 5, 4)
