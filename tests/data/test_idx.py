"""The IDX parser and the MNIST / Fashion-MNIST builders, on tiny IDX fixtures written here."""

from __future__ import annotations

import gzip
import hashlib
import re
import struct

import numpy as np
import pytest
import torch

from losslab.core.registry import REGISTRY
from losslab.data import idx
from losslab.data.download import RemoteFile
from losslab.data.idx import make_fashion_mnist, make_mnist, read_idx

_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding written independently of the parser: struct header, big-endian payload."""
    header = struct.pack(">BBBB", 0, 0, _CODES[arr.dtype.type], arr.ndim)
    header += struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype", list(_CODES))
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(3, 4, 5)) * 50).astype(dtype)
    raw = idx_bytes(arr)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, arr)


def test_read_idx_known_bytes(tmp_path):
    # 2 x int16 [258, -2]: 0x0102 and 0xFFFE big-endian
    path = tmp_path / "b.idx"
    path.write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE]))
    assert read_idx(path).tolist() == [258, -2]


@pytest.mark.parametrize("raw, match", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "IDX file"),           # bad magic
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "IDX file"),           # unknown dtype code
    (b"\x00\x00\x08\x02\x00\x00\x00\x02", "truncated"),              # header cut short
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", "truncated"),      # 2 of 3 data bytes
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "trailing"),       # one byte too many
    (b"\x1f\x8b\x08\x00garbage", "gzip"),                            # corrupt gzip stream
])
def test_read_idx_rejects_bad_files(tmp_path, raw, match):
    path = tmp_path / "bad.idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(ValueError, match="`path`"):
        read_idx(tmp_path / "nope")


def _write_fixture(folder, n_train=12, n_test=6, seed=0):
    """Gzipped IDX image/label pairs in the real file names; returns the arrays and their digests."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 3,  # 3 classes, 4 each
        "test_images": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test, dtype=np.uint8) * 7) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    digests = {}
    for key, remote in idx.SOURCES["mnist"].items():
        data = gzip.compress(idx_bytes(arrays[key]))
        (folder / remote.name).write_bytes(data)
        digests[key] = hashlib.sha256(data).hexdigest()
    return arrays, digests


def _point_sources(monkeypatch, name, digests, urls=None):
    table = {key: RemoteFile(r.name, urls(r.name) if urls else r.urls, digests[key])
             for key, r in idx.SOURCES[name].items()}
    monkeypatch.setitem(idx.SOURCES, name, table)


@pytest.mark.parametrize("name, builder", [("mnist", make_mnist), ("fashion_mnist", make_fashion_mnist)])
def test_builder_decodes_the_files(tmp_path, monkeypatch, name, builder):
    arrays, digests = _write_fixture(tmp_path / name)
    _point_sources(monkeypatch, name, digests)
    data = builder(root=str(tmp_path), download=False)
    assert data.name == name and data.num_classes == 10
    assert data.x_train.shape == (12, 1, 28, 28) and data.x_test.shape == (6, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    for k in range(12):  # pixel (0, 0) and (27, 5) of image k are the bytes written
        assert float(data.x_train[k, 0, 0, 0]) * 255 == pytest.approx(arrays["train_images"][k, 0, 0])
        assert float(data.x_train[k, 0, 27, 5]) * 255 == pytest.approx(arrays["train_images"][k, 27, 5])
    torch.testing.assert_close(data.x_test * 255, torch.from_numpy(arrays["test_images"]).float().unsqueeze(1))
    assert data.y_train.tolist() == arrays["train_labels"].tolist()
    assert data.y_test.tolist() == arrays["test_labels"].tolist()
    assert float(data.x_train.min()) >= 0 and float(data.x_train.max()) <= 1


def test_subsets_are_stratified_first_k(tmp_path, monkeypatch):
    arrays, digests = _write_fixture(tmp_path / "mnist")
    _point_sources(monkeypatch, "mnist", digests)
    data = make_mnist(root=str(tmp_path), download=False, train_size=6, test_size=2)
    # labels 0,1,2,0,1,2,...: two of each class, the first ones in file order
    assert data.y_train.tolist() == [0, 1, 2, 0, 1, 2]
    torch.testing.assert_close(data.x_train * 255, torch.from_numpy(arrays["train_images"][:6]).float().unsqueeze(1))
    assert data.x_test.shape[0] == 2
    with pytest.raises(ValueError, match="`train_size`"):
        make_mnist(root=str(tmp_path), download=False, train_size=13)


def test_download_false_with_empty_cache_names_the_path(tmp_path):
    with pytest.raises(ValueError) as info:
        make_mnist(root=str(tmp_path), download=False)
    msg = str(info.value)
    assert "\n" not in msg and "download=False" in msg
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in msg


def test_download_from_a_mirror_and_reject_a_corrupt_one(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    _, digests = _write_fixture(src)
    _point_sources(monkeypatch, "mnist", digests, urls=lambda n: ((src / n).as_uri(),))
    data = make_mnist(root=str(tmp_path / "cache"), download=True)
    assert data.x_train.shape[0] == 12 and (tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()
    # a mirror serving different bytes than the pinned digest: error, nothing left in the cache
    bad = dict(digests, test_labels="f" * 64)
    _point_sources(monkeypatch, "mnist", bad, urls=lambda n: ((src / n).as_uri(),))
    with pytest.raises(ValueError, match="f" * 64) as info:
        make_mnist(root=str(tmp_path / "cache2"), download=True)
    assert digests["test_labels"] in str(info.value)
    assert not (tmp_path / "cache2" / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list((tmp_path / "cache2" / "mnist").glob("*.part"))


def test_labels_out_of_range_are_rejected(tmp_path, monkeypatch):
    arrays, _ = _write_fixture(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.full(12, 10, dtype=np.uint8))))
    digests = {k: hashlib.sha256((tmp_path / "mnist" / r.name).read_bytes()).hexdigest()
               for k, r in idx.SOURCES["mnist"].items()}
    _point_sources(monkeypatch, "mnist", digests)
    with pytest.raises(ValueError, match=r"labels in \[0, 10\)"):
        make_mnist(root=str(tmp_path), download=False)


def test_real_tables_pin_published_digests():
    for name in ("mnist", "fashion_mnist"):
        table = idx.SOURCES[name]
        assert {r.name for r in table.values()} == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                   "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
        for remote in table.values():
            assert re.fullmatch(r"[0-9a-f]{64}", remote.sha256)
            assert all(u.endswith("/" + remote.name) for u in remote.urls) and len(remote.urls) >= 2
    assert idx.SOURCES["mnist"]["train_images"].sha256.startswith("440fcabf")


def test_registry_entries_resolve_and_call(tmp_path, monkeypatch):
    _, digests = _write_fixture(tmp_path / "mnist")
    _point_sources(monkeypatch, "mnist", digests)
    entry = REGISTRY.get("dataset", "mnist")
    params = entry.resolve({"root": str(tmp_path), "download": False, "train_size": 3})
    assert entry.obj(**params).x_train.shape[0] == 3
    with pytest.raises(ValueError, match="download"):
        entry.resolve({"download": 1})
