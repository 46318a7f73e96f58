import os
from pathlib import Path

import pytest
import torch

from cnnlab.data import datasets as ds
from cnnlab.data import find_idx_dir, load_dataset, load_digits, write_idx
from cnnlab.errors import ConfigError, DataError


def test_loads_a_split_from_data_dir(isolated, tiny_idx_dir):
    train = load_dataset("fashion-mnist", "train", data_dir=tiny_idx_dir)
    test = load_dataset("fashion-mnist", "test", data_dir=tiny_idx_dir.parent)  # root/name works
    assert train.images.shape == (320, 1, 28, 28) and train.images.dtype == torch.uint8
    assert len(test) == 80 and test.labels.dtype == torch.int64
    assert train.classes == ds.FASHION_MNIST_CLASSES and train.classes[9] == "Ankle boot"


def test_lookup_order(isolated, tiny_idx_dir, monkeypatch, tmp_path):
    cache = tmp_path / "cache" / "cnnlab" / "fashion-mnist"
    cache.parent.mkdir(parents=True)
    os.symlink(tiny_idx_dir, cache)
    debian = tmp_path / "debian" / "fashion-mnist"
    debian.parent.mkdir()
    os.symlink(tiny_idx_dir, debian)
    assert find_idx_dir("fashion-mnist") == cache  # the cache comes before Debian's folder
    other = tmp_path / "elsewhere" / "fashion-mnist"
    other.parent.mkdir()
    os.symlink(tiny_idx_dir, other)
    monkeypatch.setenv("CNNLAB_DATA", str(other.parent))
    assert find_idx_dir("fashion-mnist") == other  # the environment comes before the cache
    explicit = tmp_path / "explicit"
    os.symlink(tiny_idx_dir, explicit)
    assert find_idx_dir("fashion-mnist", data_dir=explicit) == explicit  # the argument comes first
    cache.unlink()
    monkeypatch.delenv("CNNLAB_DATA")
    assert find_idx_dir("fashion-mnist") == debian


def test_missing_data_says_how_to_get_it(isolated):
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", download=False)
    message = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in message and "CNNLAB_DATA" in message


def test_failed_download_is_a_clear_error_and_leaves_no_partial_file(isolated):
    with pytest.raises(DataError, match="download .* failed: .*network is unreachable"):
        load_dataset("fashion-mnist")
    leftovers = list((isolated / "cache").rglob("*"))
    assert not [p for p in leftovers if p.is_file()]


def test_labels_out_of_range_and_mismatched_lengths(isolated, tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    for split in ("train", "t10k"):
        write_idx(root / f"{split}-images-idx3-ubyte", torch.zeros(4, 28, 28, dtype=torch.uint8))
        write_idx(root / f"{split}-labels-idx1-ubyte", torch.tensor([0, 1, 2], dtype=torch.uint8))
    with pytest.raises(DataError, match="do not match"):
        load_dataset("fashion-mnist", data_dir=root)
    write_idx(root / "train-labels-idx1-ubyte", torch.tensor([0, 1, 2, 12], dtype=torch.uint8))
    with pytest.raises(DataError, match="label 12"):
        load_dataset("fashion-mnist", data_dir=root)


def test_unknown_names():
    with pytest.raises(ConfigError, match="unknown data set 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(ConfigError, match="unknown split"):
        load_dataset("fashion-mnist", "valid")


def test_digits_are_a_real_tiny_set():
    train, test = load_digits("train"), load_digits("test")
    assert len(train) + len(test) == 1797 and train.images.shape[1:] == (1, 8, 8)
    assert set(train.labels.tolist()) == set(range(10))
    assert int(train.images.max()) == 255


@pytest.mark.data
def test_real_fashion_mnist():
    if not Path("/usr/share/datasets/fashion-mnist").is_dir() and "CNNLAB_DATA" not in os.environ:
        pytest.fail("Fashion-MNIST is not installed: run `make data` (apt-get install dataset-fashion-mnist)")
    train = load_dataset("fashion-mnist", "train", download=False)
    test = load_dataset("fashion-mnist", "test", download=False)
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert sorted(set(train.labels.tolist())) == list(range(10))
    assert torch.bincount(test.labels).tolist() == [1000] * 10  # balanced test split
    assert abs(train.images.float().mean().item() / 255 - train.mean[0]) < 1e-3
