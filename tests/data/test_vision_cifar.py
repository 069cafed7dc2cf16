"""CIFAR-10/100 and CIFAR-10N/100N builders on tiny fixtures in the real file formats."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from losslab.core.registry import REGISTRY
from losslab.data import cifar, noisy_labels
from losslab.data.cifar import make_cifar10, make_cifar100, read_batch, safe_extract
from losslab.data.download import RemoteFile, sidecar
from losslab.data.noisy_labels import load_human_labels, make_cifar10n, make_cifar100n, noise_rate

C10_TRAIN = np.array([3, 8, 0, 9, 1, 7, 2, 6, 4, 5, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])  # 5 batches x 4
C10_TEST = np.array([3, 1, 4, 1, 5, 9])
C100_FINE = np.array([0, 5, 17, 99, 42, 3, 3, 64])
C100_COARSE = np.array([4, 1, 19, 0, 7, 3, 3, 12])


def _pixels(rng, n, first=None):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    if first is not None:  # image 0, pixel (0, 0): R, G, B at row offsets 0, 1024, 2048
        data[0, [0, 1024, 2048]] = first
    return data


def _pickle(batch: dict) -> bytes:
    # protocol 2 as in the real (Python 2) files; bytes keys as Python 2 str keys load under encoding="bytes"
    return pickle.dumps({k.encode(): v for k, v in batch.items()}, protocol=2)


def _tar(path: Path, members: dict[str, bytes], folder: str) -> None:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(folder)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_cifar10(folder: Path, train=C10_TRAIN, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    train_data = _pixels(rng, len(train), first=(10, 20, 30))
    test_data = _pixels(rng, len(C10_TEST))
    members = {f"data_batch_{i + 1}": _pickle({"batch_label": b"b", "labels": list(map(int, train[4 * i:4 * i + 4])),
                                                "data": train_data[4 * i:4 * i + 4]}) for i in range(5)}
    members["test_batch"] = _pickle({"labels": list(map(int, C10_TEST)), "data": test_data})
    members["batches.meta"] = _pickle({"label_names": [b"airplane"]})
    folder.mkdir(parents=True, exist_ok=True)
    _tar(folder / "cifar-10-python.tar.gz", members, "cifar-10-batches-py")
    return {"train": train_data, "test": test_data, "sha256": _digest(folder / "cifar-10-python.tar.gz")}


def write_cifar100(folder: Path, seed=1) -> dict:
    rng = np.random.default_rng(seed)
    train_data, test_data = _pixels(rng, 8, first=(1, 2, 3)), _pixels(rng, 4)
    members = {
        "train": _pickle({"fine_labels": list(map(int, C100_FINE)), "coarse_labels": list(map(int, C100_COARSE)),
                          "data": train_data}),
        "test": _pickle({"fine_labels": [1, 2, 3, 4], "coarse_labels": [5, 6, 7, 8], "data": test_data}),
    }
    folder.mkdir(parents=True, exist_ok=True)
    _tar(folder / "cifar-100-python.tar.gz", members, "cifar-100-python")
    return {"train": train_data, "test": test_data, "sha256": _digest(folder / "cifar-100-python.tar.gz")}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pin(monkeypatch, table, name, sha256, urls=None):
    old = table[name]
    monkeypatch.setitem(table, name, RemoteFile(old.name, urls or old.urls, sha256))


@pytest.fixture
def c10(tmp_path, monkeypatch):
    info = write_cifar10(tmp_path / "cifar10")
    _pin(monkeypatch, cifar.SOURCES, "cifar10", info["sha256"])
    return info


@pytest.fixture
def c100(tmp_path, monkeypatch):
    info = write_cifar100(tmp_path / "cifar100")
    _pin(monkeypatch, cifar.SOURCES, "cifar100", info["sha256"])
    return info


def test_cifar10_decodes_rgb_planes_in_batch_order(tmp_path, c10):
    data = make_cifar10(root=str(tmp_path), download=False)
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (6, 3, 32, 32)
    assert data.x_train.dtype == torch.float32 and data.num_classes == 10
    assert (data.x_train[0, :, 0, 0] * 255).round().tolist() == [10, 20, 30]  # channels R, G, B
    rows = c10["train"]
    for k in range(20):
        for c in range(3):
            for i, j in ((0, 0), (5, 7), (31, 31)):  # row layout: plane c, then row-major 32 x 32
                assert round(float(data.x_train[k, c, i, j]) * 255) == rows[k, c * 1024 + i * 32 + j]
    assert data.y_train.tolist() == C10_TRAIN.tolist() and data.y_test.tolist() == C10_TEST.tolist()
    assert data.y_train.dtype == torch.int64
    assert torch.equal(data.y_train_clean, data.y_train)
    assert round(float(data.x_test[5, 2, 31, 31]) * 255) == c10["test"][5, 3071]


@pytest.mark.parametrize("label_type, expected, classes", [("fine", C100_FINE, 100), ("coarse", C100_COARSE, 20)])
def test_cifar100_label_types(tmp_path, c100, label_type, expected, classes):
    data = make_cifar100(root=str(tmp_path), download=False, label_type=label_type)
    assert data.num_classes == classes and data.y_train.tolist() == expected.tolist()
    assert (data.x_train[0, :, 0, 0] * 255).round().tolist() == [1, 2, 3]
    torch.testing.assert_close(data.x_test * 255, torch.from_numpy(c100["test"].reshape(4, 3, 32, 32)).float())
    with pytest.raises(ValueError, match="`label_type`"):
        make_cifar100(root=str(tmp_path), download=False, label_type="medium")


def test_subset_is_stratified_and_ordered(tmp_path, c10):
    data = make_cifar10(root=str(tmp_path), download=False, train_size=10, test_size=3)
    # every class appears twice in C10_TRAIN: the first occurrence of each is kept
    first = sorted({int(c): i for i, c in reversed(list(enumerate(C10_TRAIN)))}.values())
    assert data.y_train.tolist() == C10_TRAIN[first].tolist() and sorted(data.y_train.tolist()) == list(range(10))
    assert round(float(data.x_train[1, 0, 0, 0]) * 255) == c10["train"][first[1], 0]


def test_download_false_with_nothing_cached(tmp_path):
    with pytest.raises(ValueError) as info:
        make_cifar10(root=str(tmp_path), download=False)
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path / "cifar10" / "cifar-10-python.tar.gz") in msg


def test_corrupt_download_is_deleted_and_reported(tmp_path, monkeypatch):
    info = write_cifar10(tmp_path / "mirror")
    url = (tmp_path / "mirror" / "cifar-10-python.tar.gz").as_uri()
    _pin(monkeypatch, cifar.SOURCES, "cifar10", "a" * 64, urls=(url,))
    with pytest.raises(ValueError) as err:
        make_cifar10(root=str(tmp_path / "cache"), download=True)
    assert "a" * 64 in str(err.value) and info["sha256"] in str(err.value)
    assert list((tmp_path / "cache" / "cifar10").iterdir()) == []
    _pin(monkeypatch, cifar.SOURCES, "cifar10", info["sha256"], urls=(url,))
    assert make_cifar10(root=str(tmp_path / "cache"), download=True).y_train.tolist() == C10_TRAIN.tolist()


def test_archive_is_reextracted_when_it_changes(tmp_path, monkeypatch, c10):
    assert make_cifar10(root=str(tmp_path), download=False).y_train.tolist() == C10_TRAIN.tolist()
    new = write_cifar10(tmp_path / "cifar10", train=C10_TRAIN[::-1].copy(), seed=5)
    archive = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    os.utime(archive, ns=(1, 1))  # a different mtime even on coarse-clock filesystems
    _pin(monkeypatch, cifar.SOURCES, "cifar10", new["sha256"])
    assert make_cifar10(root=str(tmp_path), download=False).y_train.tolist() == C10_TRAIN[::-1].tolist()


def _evil_tar(path: Path, kind: str) -> None:
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo({"dotdot": "cifar-10-batches-py/../../evil.txt", "absolute": "/tmp/losslab-evil.txt",
                                "symlink": "cifar-10-batches-py/link", "hardlink": "cifar-10-batches-py/hard",
                                "fifo": "cifar-10-batches-py/fifo"}[kind])
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
        elif kind == "fifo":
            info.type = tarfile.FIFOTYPE
        else:
            info.size = 4
        ok = tarfile.TarInfo("cifar-10-batches-py/fine.txt")  # a harmless member before the bad one
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        tar.addfile(info, io.BytesIO(b"evil") if info.isfile() else None)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "fifo"])
def test_unsafe_tar_members_are_rejected_before_writing(tmp_path, kind):
    _evil_tar(tmp_path / "evil.tar", kind)
    with pytest.raises(ValueError, match="member"):
        safe_extract(tmp_path / "evil.tar", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil.txt").exists()


def test_builder_refuses_a_traversal_archive(tmp_path, monkeypatch):
    (tmp_path / "cifar10").mkdir()
    archive = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    _evil_tar(archive, "dotdot")
    _pin(monkeypatch, cifar.SOURCES, "cifar10", _digest(archive))
    with pytest.raises(ValueError, match=r"\.\./\.\./evil\.txt"):
        make_cifar10(root=str(tmp_path), download=False)
    assert not (tmp_path / "evil.txt").exists()


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_batch_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Evil(str(marker)), b"labels": [0]}, protocol=2))
    with pytest.raises(ValueError, match="refusing global"):
        read_batch(path, "labels")
    assert not marker.exists()


def test_batch_shape_checks(tmp_path):
    path = tmp_path / "b"
    path.write_bytes(_pickle({"data": np.zeros((2, 3000), np.uint8), "labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"\(n, 3072\)"):
        read_batch(path, "labels")
    path.write_bytes(_pickle({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}))
    with pytest.raises(ValueError, match="2 labels"):
        read_batch(path, "labels")
    with pytest.raises(ValueError, match="fine_labels"):
        read_batch(path, "fine_labels")


# ----- CIFAR-N ---------------------------------------------------------------------------------------------

C10N_KEYS = {"aggre": "aggre_label", "worst": "worse_label", "random1": "random_label1",
             "random2": "random_label2", "random3": "random_label3"}


def human_sets(clean: np.ndarray, num_classes: int, keys) -> dict[str, np.ndarray]:
    """Set j (1-based) flips the first j labels by +j, so each set is distinct and has noise rate j / N."""
    out = {}
    for j, key in enumerate(keys, start=1):
        noisy = clean.copy()
        noisy[:j] = (clean[:j] + j) % num_classes
        out[key] = noisy
    return out


def write_human(folder: Path, name: str, labels: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save(labels, path)
    return path


@pytest.fixture
def c10n(tmp_path, c10):
    labels = {"clean_label": C10_TRAIN.astype(np.int64), **human_sets(C10_TRAIN, 10, C10N_KEYS.values())}
    write_human(tmp_path / "cifar_n", "CIFAR-10_human.pt", labels)
    return labels


@pytest.mark.parametrize("label_set", list(C10N_KEYS))
def test_cifar10n_each_label_set_picks_its_key(tmp_path, c10n, label_set):
    data = make_cifar10n(root=str(tmp_path), download=False, label_set=label_set)
    assert data.name == "cifar10n" and data.num_classes == 10
    assert data.y_train.tolist() == c10n[C10N_KEYS[label_set]].tolist()
    assert data.y_train_clean.tolist() == C10_TRAIN.tolist()  # aligned with the CIFAR indices
    assert data.y_test.tolist() == C10_TEST.tolist()
    j = list(C10N_KEYS).index(label_set) + 1
    assert noise_rate(data) == pytest.approx(j / 20)
    assert noise_rate(data) == pytest.approx(float(np.mean(c10n[C10N_KEYS[label_set]] != C10_TRAIN)))
    assert (data.x_train[0, :, 0, 0] * 255).round().tolist() == [10, 20, 30]


def test_cifar10n_records_a_tofu_digest(tmp_path, c10n):
    make_cifar10n(root=str(tmp_path), download=False)
    path = tmp_path / "cifar_n" / "CIFAR-10_human.pt"
    assert sidecar(path).read_text().strip() == _digest(path)


def test_cifar10n_subset_keeps_noisy_and_clean_aligned(tmp_path, c10n):
    data = make_cifar10n(root=str(tmp_path), download=False, label_set="random3", train_size=10)
    first = sorted({int(c): i for i, c in reversed(list(enumerate(C10_TRAIN)))}.values())
    assert data.y_train_clean.tolist() == C10_TRAIN[first].tolist()
    assert data.y_train.tolist() == c10n["random_label3"][first].tolist()


@pytest.mark.parametrize("break_it, match", [
    (lambda d: d.update(clean_label=np.roll(d["clean_label"], 1)), "wrong file or wrong order"),
    (lambda d: d.update(clean_label=d["clean_label"][:-1]), "one per CIFAR train image"),
    (lambda d: d.update(worse_label=d["worse_label"][:-1]), "one per CIFAR train image"),
    (lambda d: d.pop("worse_label"), "'worse_label'"),
    (lambda d: d.update(worse_label=d["worse_label"] + 10), r"labels in \[0, 10\)"),
    (lambda d: d.update(worse_label=d["worse_label"].astype(np.float32)), "integer label array"),
])
def test_cifar10n_rejects_misaligned_or_malformed_files(tmp_path, c10n, break_it, match):
    labels = dict(c10n)
    break_it(labels)
    write_human(tmp_path / "cifar_n", "CIFAR-10_human.pt", labels)
    with pytest.raises(ValueError, match=match):
        make_cifar10n(root=str(tmp_path), download=False, label_set="worst")


def test_human_label_files_load_without_arbitrary_globals(tmp_path):
    marker = tmp_path / "pwned"
    path = write_human(tmp_path, "x.pt", {"clean_label": _Evil(str(marker))})
    with pytest.raises(ValueError, match="weights_only=True.*system"):
        load_human_labels(path)
    assert not marker.exists()
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="weights_only=True"):
        load_human_labels(path)


def test_human_label_files_from_numpy1_and_torch_tensors(tmp_path):
    clean = np.array([1, 2, 3], dtype=np.int64)
    src = write_human(tmp_path, "new.pt", {"clean_label": clean, "noisy_label": torch.tensor([1, 2, 0])})
    # rewrite the pickle with numpy 1.x's module name, as a file saved in 2021 would have it
    old = tmp_path / "old.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(old, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(item.filename, data)
    for path in (src, old):
        out = load_human_labels(path)
        assert out["clean_label"].tolist() == [1, 2, 3] and out["noisy_label"].tolist() == [1, 2, 0]
        assert out["noisy_label"].dtype == np.int64


def test_cifar100n(tmp_path, c100):
    labels = {"clean_label": C100_FINE.astype(np.int64), **human_sets(C100_FINE, 100, ["noisy_label"])}
    write_human(tmp_path / "cifar_n", "CIFAR-100_human.pt", labels)
    data = make_cifar100n(root=str(tmp_path), download=False)
    assert data.num_classes == 100 and data.y_train.tolist() == labels["noisy_label"].tolist()
    assert data.y_train_clean.tolist() == C100_FINE.tolist() and noise_rate(data) == pytest.approx(1 / 8)
    labels["clean_label"] = C100_COARSE.astype(np.int64)  # coarse labels are not the file's clean labels
    write_human(tmp_path / "cifar_n", "CIFAR-100_human.pt", labels)
    (tmp_path / "cifar_n" / "CIFAR-100_human.pt.sha256").unlink()
    with pytest.raises(ValueError, match="cifar100 train labels"):
        make_cifar100n(root=str(tmp_path), download=False)


def test_cifar_n_download_false_names_the_path(tmp_path, c10):
    with pytest.raises(ValueError) as info:
        make_cifar10n(root=str(tmp_path), download=False)
    assert str(tmp_path / "cifar_n" / "CIFAR-10_human.pt") in str(info.value) and "\n" not in str(info.value)


def test_cifar_n_changed_file_after_first_use_is_caught(tmp_path, c10n):
    make_cifar10n(root=str(tmp_path), download=False)
    labels = dict(c10n, worse_label=C10_TRAIN.astype(np.int64))
    write_human(tmp_path / "cifar_n", "CIFAR-10_human.pt", labels)
    with pytest.raises(ValueError, match="SHA-256"):
        make_cifar10n(root=str(tmp_path), download=False)


def test_noise_rate_validates():
    with pytest.raises(ValueError, match="`data`"):
        noise_rate(torch.zeros(3))


def test_real_tables():
    for name, archive in (("cifar10", "cifar-10-python.tar.gz"), ("cifar100", "cifar-100-python.tar.gz")):
        remote = cifar.SOURCES[name]
        assert remote.name == archive and re.fullmatch(r"[0-9a-f]{64}", remote.sha256)
        assert remote.urls == (f"https://www.cs.toronto.edu/~kriz/{archive}",)
    for name, fname in (("cifar10n", "CIFAR-10_human.pt"), ("cifar100n", "CIFAR-100_human.pt")):
        remote = noisy_labels.SOURCES[name]
        assert remote.sha256 is None and remote.name == fname
        assert remote.urls[0] == f"https://raw.githubusercontent.com/UCSC-REAL/cifar-10-100n/main/data/{fname}"


def test_registry_entries(tmp_path, c10n):
    entry = REGISTRY.get("dataset", "cifar10n")
    assert entry.hyper["label_set"].choices == tuple(C10N_KEYS) and entry.hyper["label_set"].default == "worst"
    data = entry.obj(**entry.resolve({"root": str(tmp_path), "download": False, "label_set": "aggre"}))
    assert data.y_train.tolist() == c10n["aggre_label"].tolist()
    with pytest.raises(ValueError, match="label_set"):
        entry.resolve({"label_set": "best"})
    assert REGISTRY.get("dataset", "cifar100").hyper["label_type"].choices == ("fine", "coarse")
