"""Data sets: in-memory uint8 tensors for the MNIST family, CIFAR and scikit-learn's 8x8 digits,
and the lookup of each by name (image folders: :mod:`cnnlab.data.imagefolder`).

Fashion-MNIST (and MNIST) are found, in order:
1. ``data_dir`` / the ``CNNLAB_DATA`` environment variable,
2. the user cache ``~/.cache/cnnlab``,
3. Debian's package (``/usr/share/datasets/<name>``, e.g. ``dataset-fashion-mnist``),
4. a download from the official source into the user cache, when the network allows;
otherwise a :class:`~cnnlab.errors.DataError` that says how to get the files. An explicit
``data_dir`` is used or refused (an error naming the missing files), never replaced by another.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.data.idx import read_idx
from cnnlab.errors import ConfigError, DataError

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEBIAN_ROOT = Path("/usr/share/datasets")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class IdxSpec:
    """Where an IDX data set lives and what it holds."""

    name: str  # the name users type: "fashion-mnist"
    classes: tuple[str, ...]  # class names, index = label
    url: str  # official download location (files end in .gz)
    debian_package: str  # Debian package that ships it, "" if none
    mean: float  # training-set pixel mean in [0, 1] (for normalisation)
    std: float  # training-set pixel standard deviation in [0, 1]


IDX_DATASETS: dict[str, IdxSpec] = {
    "fashion-mnist": IdxSpec("fashion-mnist", FASHION_MNIST_CLASSES,
                             "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                             "dataset-fashion-mnist", mean=0.2860, std=0.3530),
    "mnist": IdxSpec("mnist", tuple(str(d) for d in range(10)),
                     "https://storage.googleapis.com/cvdf-datasets/mnist/", "", 0.1307, 0.3081),
}
CIFAR_NAMES = ("cifar10", "cifar100", "cifar100-coarse")  # read by cnnlab.data.cifar
DATASET_NAMES = (*IDX_DATASETS, *CIFAR_NAMES, "digits", "imagefolder")


@dataclass
class InMemoryDataset:
    """A whole split as one uint8 tensor (N, C, H, W) and int64 labels (N,)."""

    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    classes: tuple[str, ...]  # class names, index = label
    name: str  # data set name, e.g. "fashion-mnist"
    mean: tuple[float, ...]  # per-channel mean of the training split, in [0, 1]
    std: tuple[float, ...]  # per-channel std of the training split, in [0, 1]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def take(self, index: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The uint8 images at ``index``: what a loader batches (cached features pick a view)."""
        return self.images[index]

    def subset(self, index: torch.Tensor) -> InMemoryDataset:
        """The examples at ``index`` (a long tensor or boolean mask), same classes and stats."""
        return InMemoryDataset(self.images[index], self.labels[index], self.classes, self.name,
                               self.mean, self.std)


def balanced_order(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded order of the indices whose every prefix is class-balanced.

    The indices are shuffled, ranked within their class (0 for the first of each class, 1 for
    the second, ...) and sorted by rank: the first ``k * C`` hold ``k`` of each of the C classes,
    and a smaller subset is always a prefix of a larger one (nested training sets).
    """
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    onehot = torch.nn.functional.one_hot(labels[perm], int(labels.max()) + 1)  # (N, C)
    rank = (onehot.cumsum(0) * onehot).sum(1) - 1  # rank of each example within its class
    order = torch.argsort(rank * len(labels) + torch.arange(len(labels)))
    return perm[order]


def labels_per_class(dataset: InMemoryDataset, k: int, seed: int = 0) -> InMemoryDataset:
    """A seeded, class-balanced subset: ``k`` examples of every class (few-label training).

    The first ``k * C`` of :func:`balanced_order`, so the subset for a smaller ``k`` is part of the
    one for a larger ``k``, and the same seed gives the same images whatever model trains on them.
    """
    counts = torch.bincount(dataset.labels, minlength=dataset.num_classes)
    if k < 1 or k > int(counts.min()):
        rarest = int(counts.argmin())
        raise ConfigError(f"labels per class must be between 1 and {int(counts.min())} (the "
                          f"{dataset.name} training split has {int(counts.min())} images of class "
                          f"{dataset.classes[rarest]!r}), got {k}")
    return dataset.subset(balanced_order(dataset.labels, seed)[: k * dataset.num_classes])


def candidate_dirs(name: str, data_dir: str | Path | None) -> list[Path]:
    """Where a named data set is looked for, in order: ``data_dir`` (else ``CNNLAB_DATA``), the
    user cache, Debian's folder; each as ``root/name`` and ``root``."""
    roots = []
    explicit = data_dir or os.environ.get("CNNLAB_DATA")
    if explicit:
        roots.append(Path(explicit).expanduser())
    roots += [cache_dir(), DEBIAN_ROOT]
    return [d for root in roots for d in (root / name, root)]


def cache_dir() -> Path:
    """The user cache, ``$XDG_CACHE_HOME/cnnlab`` or ``~/.cache/cnnlab``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnlab"


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_idx_dir(name: str, data_dir: str | Path | None = None, download: bool = True) -> Path:
    """The first directory (in the documented order) holding all four IDX files of ``name``; with
    ``data_dir``, that folder (or its ``name`` sub-folder) or an error naming the missing files."""
    spec = _spec(name)
    stems = [s for pair in IDX_FILES.values() for s in pair]
    searched = candidate_dirs(name, data_dir)
    if data_dir:  # an explicit folder is used or refused, never silently replaced by another
        searched = searched[:2]
    for directory in searched:
        if all(_find_file(directory, s) for s in stems):
            return directory
    if data_dir:
        best = max(searched[::-1], key=lambda d: sum(bool(_find_file(d, s)) for s in stems))
        lacking = [s for s in stems if not _find_file(best, s)]
        raise DataError(f"--data-dir {str(data_dir)!r} lacks {spec.name}'s "
                        f"{', '.join(f'{best / s}[.gz]' for s in lacking)}; put "
                        f"{'it' if len(lacking) == 1 else 'them'} there, or drop --data-dir to use "
                        f"the cache, Debian's copy or a download")
    if download:
        return _download(spec, cache_dir() / name)
    raise _missing(spec, searched)


def _missing(spec: IdxSpec, searched: list[Path], reason: str = "") -> DataError:
    how = [f"set CNNLAB_DATA (or --data-dir) to a folder with the four IDX files of {spec.name}"]
    if spec.debian_package:
        how.insert(0, f"`sudo apt-get install {spec.debian_package}` (files go to "
                      f"{DEBIAN_ROOT / spec.name})")
    where = ", ".join(str(d) for d in dict.fromkeys(searched))
    because = f" The download from {spec.url} failed: {reason}." if reason else ""
    return DataError(f"{spec.name} not found (looked in {where}).{because} "
                     f"To get it: {'; or '.join(how)}.")


def _download(spec: IdxSpec, target: Path) -> Path:
    """Fetch the four gzipped IDX files into ``target``; each file lands atomically."""
    target.mkdir(parents=True, exist_ok=True)
    for stem in (s for pair in IDX_FILES.values() for s in pair):
        if _find_file(target, stem):
            continue
        url = f"{spec.url}{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=15) as response, tempfile.NamedTemporaryFile(
                dir=target, delete=False, suffix=".part"
            ) as tmp:
                shutil.copyfileobj(response, tmp)
            os.replace(tmp.name, target / f"{stem}.gz")
        except OSError as err:
            if "tmp" in locals() and os.path.exists(tmp.name):
                os.unlink(tmp.name)
            raise _missing(spec, candidate_dirs(spec.name, None), str(err)) from None
    return target


def _spec(name: str) -> IdxSpec:
    if name not in IDX_DATASETS:
        raise ConfigError(f"unknown data set {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return IDX_DATASETS[name]


def load_idx_dataset(name: str, split: str = "train", data_dir: str | Path | None = None,
                     download: bool = True) -> InMemoryDataset:
    """Load one split ("train" or "test") of an IDX data set as an :class:`InMemoryDataset`."""
    spec = _spec(name)
    if split not in IDX_FILES:
        raise ConfigError(f"unknown split {split!r}; choose 'train' or 'test'")
    directory = find_idx_dir(name, data_dir, download)
    image_path, label_path = (_find_file(directory, stem) for stem in IDX_FILES[split])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{image_path} and {label_path} do not match: images {tuple(images.shape)}, "
                        f"labels {tuple(labels.shape)} (expected (N, H, W) and (N,))")
    if labels.numel() and int(labels.max()) >= len(spec.classes):
        raise DataError(f"{label_path} holds label {int(labels.max())} but {name} has "
                        f"{len(spec.classes)} classes")
    return InMemoryDataset(images.unsqueeze(1).contiguous(), labels.long(), spec.classes, name,
                           (spec.mean,), (spec.std,))


def load_digits(split: str = "train", test_fraction: float = 0.25, seed: int = 0) -> InMemoryDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes) as uint8 in [0, 255].

    The split is a fixed, seeded permutation: ``test_fraction`` of the images form "test".
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as err:
        raise DataError("the 8x8 digits come with scikit-learn: pip install scikit-learn") from err
    bunch = sk_load_digits()
    images = torch.from_numpy(bunch.images * (255.0 / 16.0)).round().to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = round(len(labels) * test_fraction)
    index = order[n_test:] if split == "train" else order[:n_test]
    train = images[order[n_test:]].float() / 255
    return InMemoryDataset(images[index].contiguous(), labels[index], tuple(map(str, range(10))),
                           "digits", (train.mean().item(),), (train.std().item(),))


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None,
                 download: bool = True, image_size: int = 64, workers: int = 2, **folder):
    """Load a named data set split: ``fashion-mnist``, ``mnist``, ``cifar10``, ``cifar100``,
    ``cifar100-coarse``, ``digits``, or ``imagefolder`` (``data_dir`` holds ``train/`` and
    ``test/`` or ``val/``, one sub-folder per class; ``folder`` holds the other keyword arguments
    of :func:`cnnlab.data.imagefolder.load_image_folder`: streaming, hold-out, bad files).

    Returns an :class:`InMemoryDataset`, or for a streamed image folder a
    :class:`cnnlab.data.stream.FileImageDataset` with the same face."""
    if name == "digits":
        return load_digits(split)
    if name in CIFAR_NAMES:
        if split not in IDX_FILES:
            raise ConfigError(f"unknown split {split!r}; choose 'train' or 'test'")
        from cnnlab.data.cifar import load_cifar

        return load_cifar(name, split, data_dir, download)
    if name == "imagefolder":
        if data_dir is None:
            raise ConfigError("data.name=imagefolder needs --data-dir: a folder with train/ and "
                              "test/ (or val/) sub-folders of class folders")
        from cnnlab.data.imagefolder import load_image_folder

        return load_image_folder(data_dir, split, image_size, workers, **folder)
    return load_idx_dataset(name, split, data_dir, download)
