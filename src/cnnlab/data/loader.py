"""Batches from an in-memory data set: sliced, moved to the device, normalised there in batch.

A background thread (the notes' "CPU thread feeding minibatches") prepares the next batch while
the current one trains; ``prefetch=0`` turns it off.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

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
    """

    def __init__(self, dataset: InMemoryDataset, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None, device: str | torch.device = "cpu",
                 drop_last: bool = False, prefetch: int = 2) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.device = torch.device(device)
        self.drop_last = drop_last
        self.prefetch = prefetch

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> torch.Tensor:
        n = len(self.dataset)
        return torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)

    def _batches(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ds = self.dataset
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            images = ds.images[index].to(self.device, non_blocking=True)  # (B, C, H, W) uint8
            labels = ds.labels[index].to(self.device, non_blocking=True)  # (B,)
            yield normalize(images, ds.mean, ds.std), labels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()  # drawn here, in the caller's thread: reproducible
        if self.prefetch <= 0:
            yield from self._batches(order)
            return
        yield from _prefetched(self._batches(order), self.prefetch)


def _prefetched(batches: Iterator, depth: int) -> Iterator:
    """Run ``batches`` in a background thread, ``depth`` items ahead of the consumer."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in batches:
                if stop.is_set():
                    return
                items.put(item)
        except BaseException as err:  # surface producer errors in the consumer
            items.put(err)
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
