"""Batches from an in-memory data set: sliced, moved to the device, normalised there in batch.

A background thread (the notes' "CPU thread feeding minibatches") prepares the next batch while
the current one trains; ``prefetch=0`` turns it off. With ``seed`` the order of epoch e and the
augmentation of batch i are drawn from generators seeded by (seed, e) and (seed, e, i, rank):
no generator state to carry, so a run resumes at any batch (``start_step``) exactly. With
``world_size`` > 1 each process takes every ``world_size``-th example of each global batch
(DistributedSampler's sharding, applied per batch). A data set that streams from files
(:class:`cnnlab.data.stream.FileImageDataset`) gets the same index batches and decodes them in its
worker processes: the same order, shards and resume point.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import torch

from cnnlab.data.datasets import InMemoryDataset


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (B, C, H, W) in [0, 255] -> float (x/255 - mean) / std, per channel."""
    mean_t = torch.tensor(mean, device=images.device, dtype=dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device, dtype=dtype).view(1, -1, 1, 1)
    return (images.to(dtype) / 255.0 - mean_t) / std_t


class InMemoryLoader:
    """Iterate over (images, labels) batches of an :class:`InMemoryDataset`.

    Args:
        dataset: the split to iterate over.
        batch_size: examples per batch; the last batch may be smaller unless ``drop_last``.
        shuffle: draw a new permutation each epoch from ``generator``.
        generator: the seeded RNG that makes the order reproducible.
        device: where batches are moved before normalisation.
        prefetch: batches prepared ahead by a background thread (0 = none).
        transform: ``f(images_uint8, labels, generator) -> (images, targets)`` run on the device
            instead of :func:`normalize` (e.g. :class:`cnnlab.data.augment.Augmenter`); one
            whose ``needs_index`` is True also gets ``index=`` (the images' positions in the
            data set) and ``epoch=``.
        seed: derive the order and the transform's generator from (seed, epoch, batch) instead
            of ``generator``; select the epoch with :meth:`set_epoch`.
        rank / world_size: this process's shard of every global batch of ``batch_size``.
    """

    def __init__(self, dataset: InMemoryDataset, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None, device: str | torch.device = "cpu",
                 drop_last: bool = False, prefetch: int = 2, transform: Callable | None = None,
                 seed: int | None = None, rank: int = 0, world_size: int = 1) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.device = torch.device(device)
        self.drop_last = drop_last or (world_size > 1 and len(dataset) % batch_size < world_size)
        self.prefetch = prefetch
        self.transform = transform
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start_step = 0  # first batch of the next iteration (resuming mid-epoch)

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch (its order and augmentation) and the batch to start from."""
        self.epoch, self.start_step = epoch, start_step

    def batch_generator(self, step: int) -> torch.Generator:
        """The generator of batch ``step`` of the current epoch (seeded mode)."""
        seed = hash((self.seed or 0, self.epoch, step, self.rank)) & 0x7FFF_FFFF_FFFF
        return torch.Generator(self.device).manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> torch.Tensor:
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n)
        if self.seed is not None:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            return torch.randperm(n, generator=generator)
        return torch.randperm(n, generator=self.generator)

    def _images(self, indices: list[torch.Tensor], start: int
                ) -> Iterator[tuple[torch.Tensor, torch.Generator | None]]:
        """(uint8 batch, its generator) for each of ``indices``: sliced from memory, or decoded
        from files by the data set's workers (training transform seeded per example if shuffled)."""
        ds = self.dataset
        generators = (self.batch_generator(i) if self.seed is not None else self.generator
                      for i in range(start, start + len(indices)))
        if not hasattr(ds, "stream"):
            for index, g in zip(indices, generators):
                yield ds.take(index, g if self.shuffle else None), g  # (B, C, H, W) uint8
            return
        seeds = None
        if self.shuffle:
            from cnnlab.data.stream import sample_seeds

            base = self.seed if self.seed is not None else int(
                torch.randint(2**31, (1,), generator=self.generator))
            seeds = [sample_seeds(base, self.epoch, index) for index in indices]
        yield from zip(ds.stream(indices, seeds, pin_memory=self.device.type == "cuda"), generators)

    def _batches(self, order: torch.Tensor, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ds = self.dataset
        indices = [order[i * self.batch_size:(i + 1) * self.batch_size][self.rank::self.world_size]
                   for i in range(start, len(self))]
        for index, (images, g) in zip(indices, self._images(indices, start)):
            images = images.to(self.device, non_blocking=True)
            labels = ds.labels[index].to(self.device, non_blocking=True)  # (B,)
            if getattr(self.transform, "needs_index", False):  # e.g. alternating flips
                yield self.transform(images, labels, g, index=index.to(self.device),
                                     epoch=self.epoch)
            elif self.transform is not None:
                yield self.transform(images, labels, g)
            elif images.dtype == torch.uint8:
                yield normalize(images, ds.mean, ds.std), labels
            else:  # float inputs (cached features) are ready as they are
                yield images, labels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()  # drawn here, in the caller's thread: reproducible
        start, self.start_step = self.start_step, 0
        if self.prefetch <= 0:
            yield from self._batches(order, start)
            return
        yield from _prefetched(self._batches(order, start), self.prefetch)


def _prefetched(batches: Iterator, depth: int) -> Iterator:
    """Run ``batches`` in a background thread, ``depth`` items ahead of the consumer."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        # One intra-op thread here: a second OpenMP team spinning beside the training step's
        # would take its cores (measured: ResNet-20 trained 25% slower on 2 cores).
        # set_num_threads is per thread for OpenMP but also sets the default of threads started
        # later, so the default is put back when the producer ends.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for item in batches:
                if stop.is_set():
                    return
                items.put(item)
        except BaseException as err:  # surface producer errors in the consumer
            items.put(err)
        finally:
            torch.set_num_threads(threads)
        items.put(done)

    thread = threading.Thread(target=produce, daemon=True, name="cnnlab-batches")
    thread.start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.01)
