"""The feature cache: a frozen backbone's outputs, computed once and memory-mapped from disk.

Frozen layers give the same output every epoch (deeplearning.ai's CNN course, week 2), so computing
them again each epoch is wasted work. :func:`cached_features` runs the frozen part once over the
whole split, in batches, writes the result to a ``.npy`` file (float32, shape ``(V, N,
*feature_shape)``; V = number of cached augmented views, 1 without augmentation) and returns it
memory-mapped (``numpy.load(mmap_mode="c")`` -> ``torch.from_numpy``): head training then reads
only the cache.

The file name carries a SHA-256 key over everything the features depend on:

* the frozen weights — every state-dict tensor outside ``stages()["head"]`` (name, dtype, shape,
  bytes) and the model class;
* the data — its name, number of images, image shape and a hash of the uint8 image bytes;
* the transform — normalisation mean/std, the target spec (classes, size, channels), the cached
  views (augmentation mode and crop size), the cache point and the numeric precision (its dtype;
  not the memory layout, which changes nothing but the speed).

Change any of them and the key changes, so a stale cache is never read; the old file stays
until deleted (``--cache-dir`` is safe to wipe).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from cnnlab.data.datasets import InMemoryDataset
from cnnlab.data.loader import normalize
from cnnlab.device import Precision, resolve_precision
from cnnlab.errors import DataError
from cnnlab.evaluate.tta import NUM_VIEWS, tta_views
from cnnlab.text import plural


def _hash_tensor(h, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous().reshape(-1)  # 1-D: 0-dim tensors cannot be viewed as bytes
    h.update(f"{t.dtype}{tuple(tensor.shape)}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the modules in ``stages()["head"]``."""
    head_ids = {id(m) for m in model.stages()["head"].modules()}
    return tuple(f"{name}." for name, m in model.named_modules() if name and id(m) in head_ids)


def frozen_weights_hash(model: nn.Module) -> str:
    """SHA-256 over the model class and every state-dict tensor outside the head."""
    h = hashlib.sha256(type(model).__name__.encode())
    skip = head_prefixes(model)
    for key, tensor in model.state_dict().items():
        if not key.startswith(skip):
            h.update(key.encode())
            _hash_tensor(h, tensor)
    return h.hexdigest()


def data_hash(dataset: InMemoryDataset) -> str:
    """SHA-256 over the data set's name, size, image shape and uint8 image bytes."""
    h = hashlib.sha256(f"{dataset.name}|{len(dataset)}".encode())
    _hash_tensor(h, dataset.images)
    return h.hexdigest()


def cache_key(model: nn.Module, dataset: InMemoryDataset, transform: dict) -> str:
    """The cache key: frozen weights + data identity + transform (see the module docstring)."""
    parts = dict(weights=frozen_weights_hash(model), data=data_hash(dataset),
                 mean=list(dataset.mean), std=list(dataset.std), transform=transform)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def feature_batch_size(image_shape: tuple[int, ...], views: int = 1) -> int:
    """Images per batch for a frozen forward: about 4 million input values (26 RGB images at 224,
    256 at 28x28), between 8 and 256. Large batches of large images spill the activations out
    of the CPU's caches: EfficientNet-Lite0 at 224 ran 19 images/s in batches of 64 against 32 in
    batches of 16 on one EPYC core."""
    values = views * math.prod(image_shape)
    return max(8, min(256, 4_000_000 // values))


@torch.no_grad()
def compute_features(extract: Callable[[torch.Tensor], torch.Tensor], dataset: InMemoryDataset,
                     path: Path, views: str = "none", crop_size: int | None = None,
                     batch_size: int | None = None, precision: Precision | None = None,
                     progress: bool = True) -> Path:
    """Run ``extract`` over every image (and view) in batches; write (V, N, ...) float32 to ``path``.

    The file is written under a temporary name and renamed when complete (atomic). Without a
    ``batch_size``, batches hold about 4 million input values (:func:`feature_batch_size`).
    ``progress``: a bar over the images, on a terminal only.
    """
    precision = precision or resolve_precision("cpu", "fp32")
    crop = crop_size or dataset.image_shape[-1]
    num_views = NUM_VIEWS[views]
    batch_size = batch_size or feature_batch_size(dataset.image_shape, num_views)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    out = None
    bar = tqdm(total=len(dataset), desc="features", unit="img", leave=False, dynamic_ncols=True,
               disable=None if progress else True)  # None: shown on a terminal only
    try:
        for start in range(0, len(dataset), batch_size):
            raw = dataset.images[start:start + batch_size].to(precision.device)  # (B, C, H, W) uint8
            batch_views = tta_views(raw, views, crop)  # (V, B, C, h, w)
            b = batch_views.shape[1]
            x = normalize(batch_views.reshape(num_views * b, *batch_views.shape[2:]),
                          dataset.mean, dataset.std)
            x = precision.format(x)
            with precision.autocast():
                feats = extract(x).float().cpu()  # (V*B, ...)
            feats = feats.reshape(num_views, b, *feats.shape[1:])
            if out is None:
                shape = (num_views, len(dataset), *feats.shape[2:])
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
            out[:, start:start + b] = feats.numpy()
            bar.update(b)
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        bar.close()
        if tmp.exists():
            tmp.unlink()
    return path


def load_features(path: str | Path) -> torch.Tensor:
    """A cached feature file as a memory-mapped tensor (copy-on-write: never written back).

    The file's header is checked first: it must hold float32 (never objects: nothing in the cache
    is unpickled) and be as long as its shape says; otherwise one :class:`DataError` says to delete
    it (it is computed again on the next run)."""
    path = Path(path)

    def corrupt(reason: str) -> DataError:
        return DataError(f"feature cache file {str(path)!r} {reason}; delete it and run again "
                         f"(the features are computed afresh)")

    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError) as err:
        raise corrupt(f"is not a NumPy array file ({str(err).splitlines()[0] if str(err) else 'empty'})"
                      ) from None
    if dtype != np.float32 or fortran:
        raise corrupt(f"holds {dtype} data, not the float32 features cnnlab writes")
    expected = offset + math.prod(shape) * dtype.itemsize
    if path.stat().st_size != expected:
        raise corrupt(f"is truncated or corrupt: its header {tuple(shape)} needs {expected} bytes, "
                      f"the file has {path.stat().st_size}")
    return torch.from_numpy(np.load(path, mmap_mode="c", allow_pickle=False))


def cached_features(extract: Callable[[torch.Tensor], torch.Tensor], model: nn.Module,
                    dataset: InMemoryDataset, cache_dir: str | Path, transform: dict,
                    views: str = "none", crop_size: int | None = None, batch_size: int | None = None,
                    precision: Precision | None = None, log=None, progress: bool = True,
                    files: list[Path] | None = None) -> tuple[torch.Tensor, bool]:
    """The frozen features of ``dataset``, from the cache when its key matches, else computed.

    Returns (features (V, N, ...) memory-mapped, True when read from an existing cache file).
    ``progress``: a bar while computing (on a terminal); ``files``: the cache file is appended.
    """
    precision = precision or resolve_precision("cpu", "fp32")
    # the dtype is part of the key, the memory layout is not: fp32 NCHW and fp32 channels_last
    # give the same features to rounding, and `auto` picks the layout by speed (it may differ)
    full = dict(transform, views=views, crop_size=crop_size, precision=precision.name)
    key = cache_key(model, dataset, full)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{dataset.name}-{len(dataset)}-{key[:20]}.npy"
    hit = path.is_file()
    if files is not None:
        files.append(path)
    if not hit:
        if log:
            log(f"computing features of {plural(len(dataset), dataset.name + ' image')} "
                f"({plural(NUM_VIEWS[views], 'view')}) -> {path}")
        was_training = model.training
        model.eval()  # a frozen backbone's dropout is off: the cache holds what inference sees
        try:
            compute_features(extract, dataset, path, views, crop_size, batch_size, precision,
                             progress)
        finally:
            model.train(was_training)
        meta = dict(full, key=key, data=dataset.name, images=len(dataset))
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    elif log:
        log(f"reusing cached features {path}")
    return load_features(path), hit
