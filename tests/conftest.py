"""Shared fixtures: tiny synthetic data sets written as real IDX files, and a quiet torch."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
import torch

from cnnlab.data import InMemoryDataset, write_idx
from cnnlab.data import datasets as ds
from cnnlab.train import RunConfig

torch.set_num_threads(1)  # pytest-xdist runs one worker per core


def make_images(n: int, num_classes: int = 10, size: int = 28, seed: int = 0):
    """Learnable synthetic images: class c lights a bar at a class-specific row, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    images = torch.randint(0, 60, (n, size, size), generator=g, dtype=torch.uint8)
    rows = (labels * (size - 4) // num_classes + 2).tolist()
    for i, r in enumerate(rows):
        images[i, r:r + 3, 4:size - 4] = 230
    return images, labels.to(torch.uint8)


def run_config(model: str, **train) -> RunConfig:
    """A quiet fp32 config for ``model`` (no plot, no TensorBoard); ``train`` sets train.* keys."""
    return RunConfig.from_dict({"model": {"name": model}, "train": {
        "precision": "fp32", "plot": False, "tensorboard": False, **train}})


@pytest.fixture
def tiny_idx_dir(tmp_path: Path) -> Path:
    """A folder laid out like Fashion-MNIST (four gzipped IDX files) with 320/80 tiny images."""
    root = tmp_path / "fashion-mnist"
    root.mkdir()
    for split, n, seed in (("train", 320, 0), ("t10k", 80, 1)):
        images, labels = make_images(n, seed=seed)
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture
def tiny_dataset() -> tuple[InMemoryDataset, InMemoryDataset]:
    """(train, test) in-memory splits of the synthetic bar images."""
    out = []
    for n, seed in ((320, 0), (80, 1)):
        images, labels = make_images(n, seed=seed)
        out.append(InMemoryDataset(images.unsqueeze(1), labels.long(), tuple(map(str, range(10))),
                                   "synthetic", (0.15,), (0.25,)))
    return tuple(out)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No CNNLAB_DATA, an empty user cache, no Debian folder, and no network."""
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(ds, "DEBIAN_ROOT", tmp_path / "debian")

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return tmp_path
