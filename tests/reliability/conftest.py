"""The campaign workspace: small IDX data sets, a tiny trained run and an image folder, built once
per test session and copied into a fresh folder for each case (which then breaks what it needs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torchvision.io import encode_png, write_file

from cnnlab.cli import main
from cnnlab.data import write_idx

from ..conftest import make_images

IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def write_idx_set(root: Path, n_train: int = 600, n_test: int = 100, size: int = 28) -> Path:
    """Four gzipped IDX files laid out like Fashion-MNIST, of learnable synthetic images."""
    root.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = make_images(n, size=size, seed=seed)
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


def write_image(path: Path, colour: tuple[int, ...], size: tuple[int, int] = (20, 30)) -> Path:
    """One PNG of a flat colour (1 value: grey, 3 values: RGB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = torch.tensor(colour, dtype=torch.uint8).view(-1, 1, 1).expand(-1, *size).contiguous()
    write_file(str(path), encode_png(image))
    return path


def write_image_folder(root: Path, classes=("a", "b", "c"), per_class=(4, 2)) -> Path:
    """train/ and test/ with one folder per class, flat colours that tell the classes apart."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    for split, n in zip(("train", "test"), per_class):
        for c, name in enumerate(classes):
            for i in range(n):
                write_image(root / split / name / f"{i}.png", colours[c % len(colours)])
    return root


@pytest.fixture(scope="session")
def workspace_template(tmp_path_factory) -> Path:
    """Built once: data/small (600/100 IDX), imgs/good (3 classes), runs/base (lenet5, 1 epoch)."""
    root = tmp_path_factory.mktemp("campaign")
    write_idx_set(root / "data" / "small")
    write_image_folder(root / "imgs" / "good")
    code = main(["train", "lenet5", "--data-dir", str(root / "data" / "small"), "--epochs", "1",
                 "--batch-size", "64", "--precision", "fp32", "--no-progress", "--seed", "0",
                 "--out", str(root / "runs" / "base")])
    assert code == 0
    return root


@pytest.fixture
def workspace(workspace_template, isolated, monkeypatch) -> Path:
    """A fresh copy of the template as the current folder; no system data, no cache, no network
    (``isolated``)."""
    root = isolated / "ws"
    shutil.copytree(workspace_template, root, symlinks=True)
    monkeypatch.chdir(root)
    return root
