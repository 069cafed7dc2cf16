"""The Clothing1M-style image folder with noisy / clean / test label lists, on PNGs written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from losslab.core.registry import REGISTRY
from losslab.data.noisy_labels import make_noisy_folder, noise_rate, read_label_list


def _image(rng, h=6, w=5):
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    """4 train and 2 test RGB PNGs (lossless) in sub-folders, plus the three label lists."""
    rng = np.random.default_rng(0)
    pixels = {}
    for rel in ("imgs/a/0.png", "imgs/a/1.png", "imgs/b/my cat.png", "imgs/b/3.png", "test/0.png", "test/1.png"):
        pixels[rel] = _image(rng)
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[rel]).save(tmp_path / rel)
    (tmp_path / "noisy.txt").write_text(
        "# path label\nimgs/a/0.png 1\nimgs/a/1.png 0\n\nimgs/b/my cat.png 2\n./imgs/b/3.png 3\n")
    (tmp_path / "clean.txt").write_text("imgs/a/0.png 0\nimgs/b/3.png 3\nimgs/unused.png 4\n")
    (tmp_path / "test.txt").write_text("test/0.png 2\ntest/1.png 1\n")
    return tmp_path, pixels


def _make(root, **kw):
    kw = {"train_labels": "noisy.txt", "test_labels": "test.txt", **kw}
    return make_noisy_folder(root=str(root), **kw)


def test_round_trip(folder):
    root, pixels = folder
    data = _make(root, clean_labels="clean.txt")
    assert data.x_train.shape == (4, 3, 6, 5) and data.x_test.shape == (2, 3, 6, 5)
    train = ["imgs/a/0.png", "imgs/a/1.png", "imgs/b/my cat.png", "imgs/b/3.png"]
    expected = torch.from_numpy(np.stack([pixels[p] for p in train]).transpose(0, 3, 1, 2)).float() / 255
    torch.testing.assert_close(data.x_train, expected)
    assert (data.x_train[2, :, 0, 0] * 255).round().tolist() == pixels["imgs/b/my cat.png"][0, 0].tolist()
    assert data.y_train.tolist() == [1, 0, 2, 3]
    assert data.y_train_clean.tolist() == [0, 0, 2, 3]  # verified where listed, else the noisy label
    assert data.y_test.tolist() == [2, 1] and data.num_classes == 4  # the unused clean entry (id 4) does not count
    assert noise_rate(data) == pytest.approx(0.25)


def test_without_clean_list_clean_equals_noisy(folder):
    root, _ = folder
    data = _make(root)
    assert torch.equal(data.y_train_clean, data.y_train) and data.num_classes == 4


def test_gray_and_resize(folder):
    root, pixels = folder
    gray = _make(root, mode="gray")
    ref = np.asarray(Image.fromarray(pixels["test/1.png"]).convert("L"), dtype=np.float32) / 255
    assert gray.x_train.shape == (4, 1, 6, 5)
    torch.testing.assert_close(gray.x_test[1, 0], torch.from_numpy(ref))
    resized = _make(root, size=3)
    assert resized.x_train.shape == (4, 3, 3, 3) and resized.x_test.shape == (2, 3, 3, 3)


def test_missing_image_names_file_and_line(folder):
    root, _ = folder
    (root / "noisy.txt").write_text("imgs/a/0.png 1\n\nimgs/a/nope.png 0\n")
    with pytest.raises(ValueError, match=r"`train_labels line 3`.*'imgs/a/nope.png'"):
        _make(root)


def test_mismatched_sizes_need_size(folder):
    root, _ = folder
    Image.fromarray(_image(np.random.default_rng(1), h=7)).save(root / "imgs/b/3.png")
    with pytest.raises(ValueError, match=r"line 6`.*or pass size.*'imgs/b/3.png'"):
        _make(root)
    assert _make(root, size=4).x_train.shape == (4, 3, 4, 4)


def test_unreadable_image(folder):
    root, _ = folder
    (root / "test/1.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"`test_labels line 2`.*readable image"):
        _make(root)


@pytest.mark.parametrize("line, match", [
    ("imgs/a/0.png", "class_id"),
    ("imgs/a/0.png -1", "class_id"),
    ("imgs/a/0.png one", "class_id"),
    ("../secret.png 0", r"without '\.\.'"),
    ("/etc/passwd 0", r"without '\.\.'"),
])
def test_malformed_lines(folder, line, match):
    root, _ = folder
    (root / "noisy.txt").write_text(f"imgs/a/0.png 1\n{line}\n")
    with pytest.raises(ValueError, match=f"`train_labels line 2`.*{match}"):
        _make(root)


def test_conflicting_clean_duplicates(folder):
    root, _ = folder
    (root / "clean.txt").write_text("imgs/a/0.png 0\nimgs/a/0.png 2\n")
    with pytest.raises(ValueError, match="`clean_labels line 2`"):
        _make(root, clean_labels="clean.txt")


@pytest.mark.parametrize("kwargs, arg", [
    ({"train_labels": None}, "train_labels"),
    ({"test_labels": None}, "test_labels"),
    ({"train_labels": "missing.txt"}, "train_labels"),
    ({"size": 0}, "size"),
    ({"mode": "cmyk"}, "mode"),
])
def test_invalid_arguments(folder, kwargs, arg):
    root, _ = folder
    with pytest.raises(ValueError, match=f"`{arg}`"):
        _make(root, **kwargs)


def test_root_required(tmp_path):
    with pytest.raises(ValueError, match="`root`"):
        make_noisy_folder(train_labels="a", test_labels="b")
    with pytest.raises(ValueError, match="`root`"):
        make_noisy_folder(root=str(tmp_path / "none"), train_labels="a", test_labels="b")


def test_read_label_list_skips_comments_and_keeps_spaces(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("# c\n\n a b/c d.jpg   7 \n")
    assert read_label_list(path, "x") == [("a b/c d.jpg", 7, 3)]
    path.write_text("# only comments\n")
    with pytest.raises(ValueError, match="at least one entry"):
        read_label_list(path, "x")


def test_registry_entry(folder):
    root, _ = folder
    entry = REGISTRY.get("dataset", "noisy_folder")
    params = entry.resolve({"root": str(root), "train_labels": "noisy.txt", "test_labels": "test.txt", "size": 2})
    assert entry.obj(**params).x_train.shape == (4, 3, 2, 2)
