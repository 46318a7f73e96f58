"""Image folders: ``root/<split>/<class>/<image>``, in memory or streamed from the files.

A folder holds ``train/`` and ``test/`` (or ``val/``, ``valid/``), each with one folder per class;
classes are the folder names of ``train/``, sorted. Without a test split, ``val_fraction`` of
``train/`` is held out: per class, ``round(n * val_fraction)`` images (at least one, leaving one
for training) picked by a seeded permutation, so every class is in both parts (stratified) and the
same seed holds out the same files.

Checked before anything is decoded (each a :class:`~cnnlab.errors.DataError` naming what is
wrong): a test class that train/ lacks, a single class, an empty class folder, and — by a quick
header scan — files that are not images (``bad_images="error"`` names the first; ``"skip"`` leaves
them out and reports how many).

``in_memory``: ``"true"`` decodes the split once (shorter side resized to ``resize`` — the image
size unless pretrained weights say otherwise —, centre crop) into one uint8 tensor, augmented on
the device like the MNIST family; ``"false"`` streams the files
(:class:`~cnnlab.data.stream.FileImageDataset`); ``"auto"`` keeps the split in memory when its
decoded size, N x C x size x size bytes, fits ``memory_budget_gb``. Mean and std are those of the
training split: all of it in memory, a seeded sample of 512 images when streaming.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from cnnlab.data.datasets import InMemoryDataset
from cnnlab.data.images import IMAGE_SUFFIXES, scan_headers
from cnnlab.data.stream import FileImageDataset
from cnnlab.errors import ConfigError, DataError

TEST_NAMES = ("test", "val", "valid")
IN_MEMORY_CHOICES = ("auto", "true", "false")
BAD_IMAGE_CHOICES = ("error", "skip")
STATS_SAMPLE = 512  # images whose pixels give a streamed split's mean and std


def _test_dir(root: Path) -> Path | None:
    return next((root / n for n in TEST_NAMES if (root / n).is_dir()), None)


def _images(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())


def list_folder(root: str | Path, split: str, val_fraction: float = 0.1, split_seed: int = 0
                ) -> tuple[list[Path], torch.Tensor, tuple[str, ...]]:
    """(files, labels, classes) of ``split`` ("train" or "test"), checked as the module says."""
    root = Path(root)
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r}; choose 'train' or 'test'")
    train_dir, test_dir = root / "train", _test_dir(root)
    if not train_dir.is_dir():
        raise DataError(f"{str(root)!r} has no train/ folder; an image folder holds train/ and "
                        f"test/ (or val/), each with one folder per class")
    classes = tuple(sorted(d.name for d in train_dir.iterdir() if d.is_dir()))
    per_class = {c: _images(train_dir / c) for c in classes}
    if not any(per_class.values()):
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {str(train_dir)!r}/<class>/")
    empty = [c for c, files in per_class.items() if not files]
    if empty:
        raise DataError(f"class folder {str(train_dir / empty[0])!r} holds no images "
                        f"({', '.join(IMAGE_SUFFIXES)}); add images or remove the folder")
    if len(classes) < 2:
        raise DataError(f"{str(train_dir)!r} holds one class ({classes[0]!r}): a classifier needs "
                        f"at least two class folders")
    if test_dir is not None:
        extra = sorted(d.name for d in test_dir.iterdir() if d.is_dir() and d.name not in classes
                       and _images(d))
        if extra:
            raise DataError(f"{str(test_dir)!r} has class {extra[0]!r} that train/ lacks (train/ "
                            f"classes: {', '.join(classes)}); add it to train/ or remove it from "
                            f"{test_dir.name}/")
        if split == "test":
            files = [(f, label) for label, c in enumerate(classes) if (test_dir / c).is_dir()
                     for f in _images(test_dir / c)]
            if not files:
                raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under "
                                f"{str(test_dir)!r}/<class>/")
            return [f for f, _ in files], torch.tensor([lb for _, lb in files]), classes
    elif not 0 < val_fraction < 1:
        raise DataError(f"{str(root)!r} has no test/ or val/ folder; add one (one folder per "
                        f"class), or hold out part of train/ with data.val_fraction=0.1")
    pairs = []
    for label, c in enumerate(classes):
        files = per_class[c]
        if test_dir is None:  # seeded, per-class hold-out
            g = torch.Generator().manual_seed(split_seed * 1_000_003 + label)
            order = torch.randperm(len(files), generator=g).tolist()
            n_val = min(len(files) - 1, max(1, round(len(files) * val_fraction)))
            chosen = sorted(order[:n_val] if split == "test" else order[n_val:])
            if not chosen:
                raise DataError(f"class {c!r} has {len(files)} image(s) in {str(train_dir)!r}: "
                                f"too few to hold out a test image (data.val_fraction)")
            files = [files[i] for i in chosen]
        pairs += [(f, label) for f in files]
    return [f for f, _ in pairs], torch.tensor([lb for _, lb in pairs]), classes


def _drop_bad(files: list[Path], labels: torch.Tensor, policy: str, log: Callable
              ) -> tuple[list[Path], torch.Tensor]:
    if policy not in BAD_IMAGE_CHOICES:
        raise ConfigError(f"data.bad_images must be one of {', '.join(BAD_IMAGE_CHOICES)}, "
                          f"got {policy!r}")
    bad = scan_headers(files)
    if not bad:
        return files, labels
    if policy == "error":
        path, reason = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"{str(path)!r} is not a readable image ({reason}){more}; replace or "
                        f"remove it, or set data.bad_images=skip to leave such files out")
    bad_set = {p for p, _ in bad}
    keep = [i for i, f in enumerate(files) if f not in bad_set]
    log(f"data.bad_images=skip: left out {len(bad)} of {len(files)} files that are not readable "
        f"images: " + ", ".join(str(p) for p, _ in bad[:5]) + (" ..." if len(bad) > 5 else ""))
    if not keep:
        raise DataError(f"none of the {len(files)} files is a readable image")
    return [files[i] for i in keep], labels[keep]


def load_image_folder(root: str | Path, split: str = "train", image_size: int = 64,
                      workers: int = 2, in_memory: str = "auto", memory_budget_gb: float = 4.0,
                      val_fraction: float = 0.1, split_seed: int = 0, bad_images: str = "error",
                      in_chans: int | None = None, resize: int | None = None,
                      interpolation: str = "bilinear", log: Callable | None = None
                      ) -> InMemoryDataset | FileImageDataset:
    """One split of an image folder, in memory or streamed (see the module docstring)."""
    log = log or (lambda *_: None)
    if in_memory not in IN_MEMORY_CHOICES:
        raise ConfigError(f"data.in_memory must be one of {', '.join(IN_MEMORY_CHOICES)}, "
                          f"got {in_memory!r}")
    root, chans = Path(root), in_chans or 3
    if (root / "train").is_dir() and _test_dir(root) is None and 0 < val_fraction < 1:
        log(f"image folder {root.name}: no test/ folder, so {val_fraction:.0%} of each class of "
            f"train/ is held out for testing (data.val_fraction={val_fraction:g}, seed "
            f"data.subset_seed={split_seed})")
    splits = {}
    for part in dict.fromkeys(["train", split]):
        files, labels, classes = list_folder(root, part, val_fraction, split_seed)
        splits[part] = _drop_bad(files, labels, bad_images, log)
    files, labels = splits[split]
    decoded = len(files) * chans * image_size ** 2
    fits = decoded <= memory_budget_gb * 1e9
    memory = in_memory == "true" or (in_memory == "auto" and fits)
    why = {"true": "data.in_memory=true", "false": "data.in_memory=false"}.get(
        in_memory, f"{'fits' if fits else 'exceeds'} data.memory_budget_gb={memory_budget_gb:g}")
    log(f"image folder {root.name}/{split}: {len(files):,} images, {decoded / 1e6:,.1f} MB decoded "
        f"at {chans}x{image_size}x{image_size}, {why} -> "
        + ("in memory" if memory else f"streaming ({workers} worker processes)"))

    def dataset(part: str, mean=(0.0,) * chans, std=(1.0,) * chans) -> FileImageDataset:
        paths, part_labels = splits[part]
        return FileImageDataset([str(p) for p in paths], part_labels.long(), classes, root.name,
                                tuple(mean), tuple(std), image_size, chans,
                                resize if resize else (image_size if memory else None),
                                interpolation, workers)

    train = dataset("train")
    if memory:
        images = _decode_all(dataset(split))
        mean, std = _channel_stats(images.split(256) if split == "train" else _batches(train))
        return InMemoryDataset(images, labels.long(), classes, root.name, mean, std)
    sample = torch.randperm(len(train), generator=torch.Generator().manual_seed(split_seed))
    mean, std = _channel_stats(_batches(train, sample[:STATS_SAMPLE].sort().values))
    return dataset(split, mean, std)


def _batches(dataset: FileImageDataset, index: torch.Tensor | None = None, batch: int = 64):
    """The images at ``index`` (default: all), evaluation transform, in uint8 batches; the
    decoding workers end with the pass."""
    index = torch.arange(len(dataset)) if index is None else index
    yield from dataset.stream(list(index.split(batch)))
    dataset.close()


def _decode_all(dataset: FileImageDataset) -> torch.Tensor:
    """Every image of ``dataset`` in one uint8 tensor (N, C, S, S), filled batch by batch."""
    out = torch.empty((len(dataset), *dataset.image_shape), dtype=torch.uint8)
    start = 0
    for images in _batches(dataset):
        out[start:start + len(images)] = images
        start += len(images)
    return out


def _channel_stats(batches) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (unbiased) std of pixels in [0, 1] over uint8 batches (B, C, H, W),
    accumulated in float64 a batch at a time (no float copy of the whole split)."""
    total = square = None
    count = 0
    for images in batches:
        pixels = images.to(torch.float64) / 255
        sums, squares = pixels.sum(dim=(0, 2, 3)), pixels.square().sum(dim=(0, 2, 3))
        total, square = (sums, squares) if total is None else (total + sums, square + squares)
        count += pixels.numel() // pixels.shape[1]
    mean = total / count
    var = (square - count * mean.square()) / max(count - 1, 1)
    return tuple(mean.tolist()), tuple(var.clamp(min=0).sqrt().tolist())
