"""Target data for transfer: pick classes, relabel them, and fit images to the model's input.

The transform is part of the run (saved in ``transfer.json``) so that evaluation, prediction and
the feature cache's key all apply exactly the same one:

* **classes** — keep only the listed source labels and renumber them 0..k-1 in the order given
  (e.g. Fashion-MNIST classes 5-9 become labels 0-4 of a 5-class task);
* **size** — resize every image to ``size x size`` with bilinear interpolation and antialiasing
  (``torchvision.transforms.v2.functional.resize``), on pixel values, rounded back to uint8
  (sklearn's 8x8 digits become 28x28 for a Fashion-MNIST model);
* **channels** — 1 -> 3 channels by repeating the grey channel; 3 -> 1 by the ITU-R 601 luma
  ``0.299 R + 0.587 G + 0.114 B`` (what ``torchvision.io.ImageReadMode.GRAY`` uses);
* **normalisation** — the mean and std of pretrained weights (their ``Preprocessing``) instead of
  the data set's own statistics, so the images reach the network as it saw them in training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torchvision.transforms.v2 import functional as TF

from cnnlab.data.datasets import InMemoryDataset, load_dataset
from cnnlab.data.datasets import labels_per_class as balanced_subset
from cnnlab.errors import ConfigError


def parse_classes(text: str | None) -> tuple[int, ...] | None:
    """``"5-9"`` -> (5, 6, 7, 8, 9); ``"0,2,4"`` -> (0, 2, 4); ``None`` or ``""`` -> None."""
    if not text:
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            if sep and int(hi) < int(lo):
                raise ConfigError(f"--classes {text!r}: the range {part.strip()} is reversed; "
                                  f"write it low to high, e.g. {hi}-{lo}")
            out += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"--classes {text!r} must list labels like 5-9 or 0,2,4") from None
    if len(set(out)) != len(out) or not out:
        raise ConfigError(f"--classes {text!r} must name each class once")
    if len(out) < 2:
        raise ConfigError(f"--classes {text!r} keeps one class, but a classifier needs at least "
                          f"2 classes; name two or more, e.g. {out[0]},{out[0] + 1}")
    return tuple(out)


def select_classes(dataset: InMemoryDataset, classes: tuple[int, ...]) -> InMemoryDataset:
    """Keep the examples whose label is in ``classes``; relabel ``classes[i]`` as ``i``."""
    bad = [c for c in classes if not 0 <= c < dataset.num_classes]
    if bad:
        raise ConfigError(f"class {bad[0]} is not in {dataset.name} (labels 0-{dataset.num_classes - 1})")
    remap = torch.full((dataset.num_classes,), -1, dtype=torch.long)
    remap[list(classes)] = torch.arange(len(classes))
    keep = remap[dataset.labels] >= 0
    subset = dataset.subset(keep)
    subset.labels = remap[subset.labels]
    subset.classes = tuple(dataset.classes[c] for c in classes)
    return subset


def to_channels(images: torch.Tensor, in_chans: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, in_chans, H, W): repeat grey, or luma of RGB (ITU-R 601)."""
    chans = images.shape[1]
    if chans == in_chans:
        return images
    if chans == 1:
        return images.expand(-1, in_chans, -1, -1).contiguous()
    if chans == 3 and in_chans == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise ConfigError(f"cannot convert {chans}-channel images to the model's {in_chans} channels")


def resize_images(images: torch.Tensor, size: int, chunk: int = 512) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size), bilinear with antialiasing.

    Resized ``chunk`` images at a time into the output, so the float copy stays small (10,000
    Fashion-MNIST images at 224 px would otherwise take 2 GB of floats).
    """
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        part = TF.resize(images[start:start + chunk].float(), [size, size], antialias=True)
        out[start:start + chunk] = part.round().clamp(0, 255).to(torch.uint8)
    return out


def _per_channel(stats: tuple[float, ...], chans: int) -> tuple[float, ...]:
    """Per-channel statistics for ``chans`` channels (the channel average when they differ)."""
    return stats if len(stats) == chans else (sum(stats) / len(stats),) * chans


@dataclass
class TargetSpec:
    """What the transfer trained on: a data set, an optional class subset, the image transform."""

    name: str  # data set name: fashion-mnist, mnist, digits
    classes: tuple[int, ...] | None = None  # source labels kept, in new-label order; None: all
    size: int | None = None  # images resized to size x size; None: unchanged
    in_chans: int | None = None  # channels converted to this; None: unchanged
    data_dir: str | None = None  # where the data set's files are
    mean: tuple[float, ...] | None = None  # normalisation (pixels in [0, 1]); None: the data's
    std: tuple[float, ...] | None = None  # None: the data set's own statistics
    options: dict | None = None  # other load_dataset keywords: the run's data section (image folders)

    def use_preprocessing(self, pre) -> None:
        """Prepare images as pretrained weights expect (a ``Preprocessing``): their mean and std,
        and for an image folder their resize and crop, applied when the files are decoded."""
        self.mean, self.std = pre.mean, pre.std
        if self.name == "imagefolder":
            self.size = pre.crop
            self.options = {**(self.options or {}), "resize": pre.resize,
                            "interpolation": pre.interpolation}

    def _load_dataset(self, split: str, download: bool):
        """The split as stored; an image folder is decoded at the target's size and channels."""
        options = dict(self.options or {})
        if self.name == "imagefolder":
            options.update({k: v for k, v in (("image_size", self.size), ("in_chans", self.in_chans))
                            if v is not None})
        return load_dataset(self.name, split, self.data_dir, download, **options)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> TargetSpec:
        raw = dict(raw)
        for key in ("classes", "mean", "std"):
            if raw.get(key) is not None:
                raw[key] = tuple(raw[key])
        return cls(**raw)

    def transform(self, dataset: InMemoryDataset, labels_per_class: int = 0,
                  subset_seed: int = 0) -> InMemoryDataset:
        """Apply the class selection, resize, channel conversion and normalisation to a split;
        with ``labels_per_class``, keep a seeded, class-balanced subset of the selected classes
        first (:func:`~cnnlab.data.datasets.labels_per_class`), so only it is resized."""
        if self.classes is not None:
            dataset = select_classes(dataset, self.classes)
        if labels_per_class:
            dataset = balanced_subset(dataset, labels_per_class, subset_seed)
        if not isinstance(dataset, InMemoryDataset):  # streamed files: decoded at size and channels
            chans = dataset.image_shape[0]
            return dataset.with_stats(self.mean or _per_channel(dataset.mean, chans),
                                      self.std or _per_channel(dataset.std, chans))
        images = dataset.images
        widen = self.in_chans is not None and self.in_chans > images.shape[1]
        if self.in_chans is not None and not widen:
            images = to_channels(images, self.in_chans)  # fewer channels first: less to resize
        if self.size is not None:
            images = resize_images(images, self.size)
        if widen:
            images = to_channels(images, self.in_chans)
        chans = images.shape[1]
        mean = self.mean or _per_channel(dataset.mean, chans)
        std = self.std or _per_channel(dataset.std, chans)
        if images is dataset.images and (mean, std) == (dataset.mean, dataset.std):
            return dataset
        return InMemoryDataset(images.contiguous(), dataset.labels, dataset.classes, dataset.name,
                               tuple(mean), tuple(std))

    def reference(self, split: str = "test", download: bool = True
                  ) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]]:
        """(class names, mean, std) of the transformed data, without resizing any image."""
        dataset = self._load_dataset(split, download)
        if self.classes is not None:
            dataset = select_classes(dataset, self.classes)
        chans = self.in_chans or dataset.image_shape[0]
        return (dataset.classes, tuple(self.mean or _per_channel(dataset.mean, chans)),
                tuple(self.std or _per_channel(dataset.std, chans)))

    def load(self, split: str, download: bool = True, labels_per_class: int = 0,
             subset_seed: int = 0) -> InMemoryDataset:
        """Load ``split`` of the named data set and transform it (see :meth:`transform`)."""
        return self.transform(self._load_dataset(split, download), labels_per_class, subset_seed)
