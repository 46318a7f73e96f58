"""Image folders that stream: files decoded by DataLoader worker processes, batch by batch.

:class:`FileImageDataset` is the face of an :class:`~cnnlab.data.datasets.InMemoryDataset`
(``labels``, ``classes``, ``mean``, ``std``, ``image_shape``, ``take``, ``subset``) over a list of
files, plus :meth:`FileImageDataset.stream`, which :class:`~cnnlab.data.loader.InMemoryLoader`
uses for its batches: the order, the sharding per rank and the resume point stay the loader's, so
streaming and in-memory data train through the same loop with the same exact mid-epoch resume.

Transforms (``torchvision.transforms.v2`` on uint8 tensors, per image in the workers):

* training: ``RandomResizedCrop(size)`` (scale 0.08-1, ratio 3/4-4/3) and a horizontal flip with
  probability 1/2, their randomness drawn from a generator seeded by (seed, epoch, image index), so
  a batch is the same whichever worker decodes it and after a resume;
* evaluation: ``Resize(resize)`` of the shorter side (``size / 0.875`` by default, the ImageNet
  convention; pretrained weights bring their own) and ``CenterCrop(size)``.

One DataLoader per data set, created on first use, keeps its workers between epochs
(``persistent_workers``) and pins memory when batches go to a GPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch

from cnnlab.data.images import decode_image_file, worker_error


def eval_resize(size: int) -> int:
    """The shorter side before the centre crop: ``size / 0.875`` (224 -> 256), rounded."""
    return round(size / 0.875)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


@functools.cache
def bound_heap_growth() -> bool:
    """Fix glibc's mmap threshold at its default (128 KiB) in this process; True when set.

    glibc raises the threshold to the size of each large block that is freed, up to 32 MiB. After
    that, every batch buffer of a streamed epoch comes from the heap, and the heap does not give
    its free pieces back. Measured: the trainer's peak resident memory over one pass grew from
    740 MB at 500 images to 926 MB at 1,500, and it stayed at 740 MB for both with the threshold
    fixed. This does nothing off glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


class _Decode(torch.utils.data.Dataset):
    """Worker side: (path index, seed or None) -> uint8 (C, size, size)."""

    def __init__(self, files: Sequence[str], in_chans: int, size: int, resize: int,
                 interpolation: str) -> None:
        from torchvision.transforms import v2

        self.files, self.in_chans = files, in_chans
        mode = v2.InterpolationMode(interpolation)
        self.train = v2.Compose([v2.RandomResizedCrop(size, interpolation=mode, antialias=True),
                                 v2.RandomHorizontalFlip()])
        self.eval = v2.Compose([v2.Resize(resize, interpolation=mode, antialias=True),
                                v2.CenterCrop(size)])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int | None]) -> torch.Tensor:
        index, seed = item
        image = decode_image_file(self.files[index], self.in_chans)  # (C, H, W) uint8
        if seed is None:
            return self.eval(image).contiguous()  # (C, size, size)
        with torch.random.fork_rng(devices=[]):  # v2 draws from the global generator
            torch.manual_seed(seed)
            return self.train(image).contiguous()  # (C, size, size)


class _Batches(torch.utils.data.Sampler):
    """The batch sampler: the batches of the current pass, set before each iteration."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int | None]]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


@dataclass(eq=False)
class FileImageDataset:
    """A split of an image folder as files, decoded when batches are asked for."""

    files: list[str]  # image paths, index = example
    labels: torch.Tensor  # (N,) int64
    classes: tuple[str, ...]  # class names, index = label
    name: str  # data set name (the folder's)
    mean: tuple[float, ...]  # per-channel normalisation, pixels in [0, 1]
    std: tuple[float, ...]
    size: int  # side of the square images batches hold
    in_chans: int = 3  # 1: grey (ITU-R 601 luma), 3: RGB
    resize: int | None = None  # evaluation: shorter side before the centre crop (None: size / 0.875)
    interpolation: str = "bilinear"  # or bicubic (pretrained weights' preprocessing)
    workers: int = 2  # DataLoader worker processes (0: decode in this process)
    _loader: object = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.in_chans, self.size, self.size)

    def subset(self, index: torch.Tensor) -> FileImageDataset:
        """The examples at ``index`` (a long tensor or boolean mask)."""
        keep = torch.arange(len(self))[index].tolist()
        return replace(self, files=[self.files[i] for i in keep], labels=self.labels[index])

    def with_stats(self, mean: tuple[float, ...], std: tuple[float, ...]) -> FileImageDataset:
        return replace(self, mean=tuple(mean), std=tuple(std))

    def take(self, index: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The images at ``index``, uint8 (B, C, size, size), with the evaluation transform."""
        return next(self.stream([index]))

    def _data_loader(self, pin_memory: bool) -> tuple[torch.utils.data.DataLoader, _Batches]:
        if self._loader is None:
            bound_heap_growth()  # batch buffers are freed every step: keep them off the heap
            sampler = _Batches()
            decode = _Decode(self.files, self.in_chans, self.size,
                             self.resize or eval_resize(self.size), self.interpolation)
            loader = torch.utils.data.DataLoader(
                decode, batch_sampler=sampler, num_workers=self.workers,
                persistent_workers=self.workers > 0, pin_memory=pin_memory,
                prefetch_factor=4 if self.workers else None)
            self._loader = (loader, sampler)
        return self._loader

    def stream(self, indices: Sequence[torch.Tensor], seeds: Sequence[Sequence[int]] | None = None,
               pin_memory: bool = False) -> Iterator[torch.Tensor]:
        """uint8 batches (B, C, size, size) of the examples in each of ``indices``, in order,
        decoded by the workers; with ``seeds`` (one per example) the training transform, else the
        evaluation one."""
        loader, sampler = self._data_loader(pin_memory)
        sampler.batches = [[(int(i), None if seeds is None else int(s)) for i, s in
                            zip(index.tolist(), seeds[b] if seeds is not None else index.tolist())]
                           for b, index in enumerate(indices)]
        try:
            yield from loader
        except Exception as err:
            unwrapped = worker_error(err)
            if unwrapped is None:
                raise
            raise unwrapped from None

    def close(self) -> None:
        """End the worker processes now (a later :meth:`stream` starts new ones)."""
        self._loader = None

    def __getstate__(self) -> dict:  # a worker process never needs the parent's DataLoader
        state = self.__dict__.copy()
        state["_loader"] = None
        return state


def sample_seeds(seed: int, epoch: int, index: torch.Tensor) -> list[int]:
    """The training transform's seed of each example of ``index`` in ``epoch``: a function of
    (seed, epoch, example) only, so neither the worker nor the rank nor a resume changes it."""
    return [hash((seed, epoch, int(i))) & 0x7FFF_FFFF_FFFF for i in index.tolist()]
