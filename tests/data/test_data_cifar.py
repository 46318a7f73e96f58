"""CIFAR-10/100 from files written here in both official layouts (the format's own description is
the oracle: a label byte, then 1,024 red, 1,024 green, 1,024 blue bytes), a pickle that would run
a command, broken files, the lookup order and the offline error."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import cifar, load_dataset
from cnnlab.errors import DataError


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) uint8 whose red plane is the label, green the index, blue random."""
    g = np.random.default_rng(seed)
    labels = g.integers(0, 10, n)
    images = np.empty((n, 3, 32, 32), np.uint8)
    images[:, 0] = labels[:, None, None] * 20
    images[:, 1] = (np.arange(n) % 256)[:, None, None]
    images[:, 2] = g.integers(0, 256, (n, 32, 32))
    return images, labels


def _write_cifar10(root: Path, layout: str, per_batch: int = 6) -> dict:
    batches = {}
    folder = root / ("cifar-10-batches-bin" if layout == "binary" else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        images, labels = _images(per_batch, i)
        batches[name] = (images, labels)
        if layout == "binary":  # label byte, then R, G, B planes of 1,024 bytes, row-major
            records = [bytes([lab]) + img[0].tobytes() + img[1].tobytes() + img[2].tobytes()
                       for img, lab in zip(images, labels)]
            (folder / f"{name}.bin").write_bytes(b"".join(records))
        else:  # the pickled dict torchvision downloads: bytes keys, (N, 3072) uint8, a list
            batch = {b"batch_label": b"x", b"labels": labels.tolist(),
                     b"data": images.reshape(per_batch, -1), b"filenames": [b"a.png"] * per_batch}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return batches


@pytest.mark.parametrize("layout", ["binary", "python"])
def test_both_layouts_read_the_same_pixels_and_labels(isolated, layout):
    batches = _write_cifar10(isolated / "data", layout)
    train = load_dataset("cifar10", "train", data_dir=isolated / "data")
    test = load_dataset("cifar10", "test", data_dir=isolated / "data")
    images = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    assert train.images.shape == (30, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.equal(train.images, torch.from_numpy(images))
    assert torch.equal(train.labels, torch.from_numpy(labels))
    assert torch.equal(test.images, torch.from_numpy(batches["test_batch"][0]))
    assert train.classes[0] == "airplane" and len(train.classes) == 10
    expected = images.reshape(30, 3, -1).transpose(1, 0, 2).reshape(3, -1) / 255.0
    assert test.mean == pytest.approx(tuple(expected.mean(1)))  # the training split's statistics
    assert test.std == pytest.approx(tuple(expected.std(1, ddof=1)))


def test_cifar100_fine_and_coarse_labels(isolated):
    root = isolated / "c100" / "cifar-100-binary"
    root.mkdir(parents=True)
    for split, n in (("train", 8), ("test", 4)):
        images, _ = _images(n, n)
        coarse, fine = np.arange(n) % 20, (np.arange(n) * 7) % 100
        records = [bytes([c, f]) + img.tobytes() for img, c, f in zip(images, coarse, fine)]
        (root / f"{split}.bin").write_bytes(b"".join(records))
    fine_set = load_dataset("cifar100", "test", data_dir=isolated / "c100")
    coarse_set = load_dataset("cifar100-coarse", "test", data_dir=isolated / "c100")
    assert fine_set.labels.tolist() == [0, 7, 14, 21] and len(fine_set.classes) == 100
    assert coarse_set.labels.tolist() == [0, 1, 2, 3] and len(coarse_set.classes) == 20
    assert fine_set.classes[:3] == ("apple", "aquarium_fish", "baby")


class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_a_command_is_refused(isolated):
    _write_cifar10(isolated / "data", "python")
    marker = isolated / "ran"
    evil = {b"labels": [0], b"data": _RunsACommand(marker)}
    (isolated / "data" / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(evil))
    with pytest.raises(DataError, match=r"refused .*data_batch_3.*system.*nothing in it was run"):
        load_dataset("cifar10", "train", data_dir=isolated / "data")
    assert not marker.exists()


def test_broken_files_are_named(isolated):
    _write_cifar10(isolated / "a", "binary")
    path = isolated / "a" / "cifar-10-batches-bin" / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataError, match=r"data_batch_2.bin is truncated.*3,073-byte records"):
        load_dataset("cifar10", "train", data_dir=isolated / "a")
    _write_cifar10(isolated / "b", "binary")
    path = isolated / "b" / "cifar-10-batches-bin" / "test_batch.bin"
    data = bytearray(path.read_bytes())
    data[0] = 12  # a label byte out of range
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="holds label 12 but cifar10 has 10 classes"):
        load_dataset("cifar10", "test", data_dir=isolated / "b")
    _write_cifar10(isolated / "c", "python")
    path = isolated / "c" / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({b"labels": [1, 2], b"data": np.zeros((2, 10), np.uint8)}))
    with pytest.raises(DataError, match=r"expected uint8 \(N, 3072\)"):
        load_dataset("cifar10", "test", data_dir=isolated / "c")


def test_offline_without_files_names_the_archive_and_the_folder(isolated):
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", "train")
    message = str(err.value)
    assert "cifar-10-binary.tar.gz" in message and "network is unreachable" in message
    assert str(isolated / "cache" / "cnnlab" / "cifar10") in message and "\n" not in message


def test_lookup_order_and_the_checked_download(isolated, monkeypatch):
    _write_cifar10(isolated / "cache" / "cnnlab" / "cifar10", "python")
    assert len(load_dataset("cifar10", "test")) == 6  # found in the user cache
    monkeypatch.setenv("CNNLAB_DATA", str(isolated / "env"))
    _write_cifar10(isolated / "env", "binary", per_batch=3)
    assert len(load_dataset("cifar10", "test")) == 3  # CNNLAB_DATA comes first
    # the download: an archive with the official folder, checked against its MD5, unpacked
    monkeypatch.delenv("CNNLAB_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(isolated / "fresh"))
    _write_cifar10(isolated / "pack", "binary", per_batch=2)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(isolated / "pack" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    blob = buffer.getvalue()
    spec = cifar.CIFAR_DATASETS["cifar10"]
    monkeypatch.setitem(cifar.CIFAR_DATASETS, "cifar10",
                        cifar.CifarSpec(**{**spec.__dict__, "md5": hashlib.md5(blob).hexdigest()}))
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(blob))
    assert len(load_dataset("cifar10", "test")) == 2
    assert (isolated / "fresh" / "cnnlab" / "cifar10" / "cifar-10-batches-bin").is_dir()
    assert not list((isolated / "fresh" / "cnnlab" / "cifar10").glob("*.part"))


def test_an_explicit_data_dir_is_used_or_refused(isolated):
    """A complete copy in the cache is not read in place of an explicit --data-dir that lacks files."""
    from cnnlab.data.datasets import cache_dir

    _write_cifar10(cache_dir() / "cifar10", "binary")
    assert len(load_dataset("cifar10", "test")) == 6  # found in the cache without --data-dir
    _write_cifar10(isolated / "part", "binary")
    (isolated / "part" / "cifar-10-batches-bin" / "test_batch.bin").unlink()
    with pytest.raises(DataError, match=r"part.*lacks test_batch\.bin"):
        load_dataset("cifar10", "train", data_dir=isolated / "part")
    (isolated / "empty").mkdir()
    with pytest.raises(DataError, match=r"holds neither cifar-10-batches-bin/ nor cifar-10-batches-py/"):
        load_dataset("cifar10", "train", data_dir=isolated / "empty", download=False)
