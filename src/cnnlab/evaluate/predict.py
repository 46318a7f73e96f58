"""Predictions: :func:`predict`, the one path from a model and a data set to logits, and image files.

:func:`predict` is what training's evaluation, ``cnnlab evaluate``, the report, ensembles and the
lab all call: batches of ``batch_size`` inputs (``batch_size // V`` examples when each has V
test-time views, so one forward pass takes all views of a batch), the model in eval mode on the
precision's device, dtype and memory format, float32 logits back on the CPU. Images (uint8) are
cut into views (:func:`cnnlab.evaluate.tta.tta_views`) and normalised with the data set's mean and
std; float inputs (cached features, :class:`cnnlab.transfer.FeatureDataset`) go in as they are.

An image file is decoded by :func:`cnnlab.data.images.decode_image_file`, the image folders'
decoder (torchvision.io, PIL for what it cannot read; 16-bit scaled to 0-255; converted to the
model's channels: ITU-R 601 luma for grey, grey repeated for RGB, alpha dropped), then resized
so its shorter side equals ``resize`` (antialiased; bilinear unless the weights ask for bicubic)
and centre-cropped to ``size`` x ``size``. For a run, ``resize`` is the model's input size — the
training transform of the in-memory data sets, whose images are already square at that size;
pretrained weights bring their own (``Preprocessing``: e.g. resize 256, crop 224). Files that are
missing or that do not decode are refused with a :class:`~cnnlab.errors.DataError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from cnnlab.data.datasets import InMemoryDataset
from cnnlab.data.images import decode_image_file
from cnnlab.data.loader import normalize
from cnnlab.device import Precision, resolve_precision
from cnnlab.errors import ConfigError, DataError
from cnnlab.evaluate.tta import NUM_VIEWS, TTA_MODES, tta_views


@torch.no_grad()
def predict(model: nn.Module, dataset, tta: str = "none", crop_size: int | None = None,
            batch_size: int = 500, precision: Precision | None = None,
            progress: str | None = None) -> torch.Tensor:
    """Logits (V, N, classes), float32 on the CPU, of every view of every example, in order.

    Args:
        model: any module mapping a batch to logits; run in eval mode, its mode restored after.
        dataset: an :class:`InMemoryDataset` (uint8 images) or anything with ``take(index)``,
            ``len``, ``mean`` and ``std`` (cached features: float, no views but ``none``).
        tta: test-time views (:mod:`cnnlab.evaluate.tta`; ``none``: V = 1).
        crop_size: side of the crops (default: the images' size).
        batch_size: inputs per forward pass, views included.
        precision: device, autocast dtype and memory format (default: CPU fp32).
        progress: the label of a progress bar over the examples (shown on a terminal only);
            None: no bar.
    """
    if tta not in TTA_MODES:
        raise ConfigError(f"unknown TTA mode {tta!r}; choose one of {', '.join(TTA_MODES)}")
    precision = precision or resolve_precision("cpu", "fp32")
    views = NUM_VIEWS[tta]
    step = max(1, batch_size // views)  # keep V * step near batch_size
    crop = crop_size or dataset.image_shape[-1]
    was_training = model.training
    model.eval()
    outputs = []
    from tqdm.auto import tqdm

    views_note = f" x {views} views" if views > 1 else ""
    bar = tqdm(total=len(dataset), desc=f"{progress}{views_note}" if progress else None,
               unit="img", leave=False, dynamic_ncols=True,
               disable=None if progress else True)  # None: shown on a terminal only
    try:
        for raw in _raw_batches(dataset, step):
            raw = raw.to(precision.device)  # (B, C, H, W) uint8, or (B, ...) float features
            if raw.dtype == torch.uint8:
                batch = tta_views(raw, tta, crop)  # (V, B, C, h, w)
                x = normalize(batch.reshape(-1, *batch.shape[2:]), dataset.mean, dataset.std)
            elif tta != "none":
                raise ConfigError(f"--tta {tta} needs images; cached features have no views")
            else:
                x = raw
            with precision.autocast():
                logits = model(precision.format(x)).float()  # (V*B, classes): one pass
            outputs.append(logits.view(views, len(raw), -1).cpu())
            bar.update(len(raw))
    finally:
        bar.close()
        model.train(was_training)
    return torch.cat(outputs, dim=1)


def _raw_batches(dataset, step: int):
    """The examples in order, ``step`` at a time: sliced (``take``), or decoded by the workers of
    a data set that streams from files."""
    indices = list(torch.arange(len(dataset)).split(step))
    if hasattr(dataset, "stream"):
        return dataset.stream(indices)
    return (dataset.take(index) for index in indices)


def load_image(path: str | Path, in_chans: int, size: int, resize: int | None = None,
               interpolation: str = "bilinear") -> torch.Tensor:
    """Decode an image file to uint8 (in_chans, size, size) as described in the module docstring."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"image {str(path)!r} is a folder, not an image file; give the image "
                        f"files in it (e.g. {str(path / '*.png')!r})")
    if not path.is_file():
        raise DataError(f"image {str(path)!r} does not exist")
    if in_chans not in (1, 3):
        raise DataError(f"the model takes {in_chans}-channel inputs; predict reads grey or RGB images")
    image = decode_image_file(path, in_chans)  # (C, H, W) uint8, the image folders' decoder
    mode = TF.InterpolationMode(interpolation)
    image = TF.resize(image, resize or size, interpolation=mode, antialias=True)  # shorter side
    return TF.center_crop(image, [size, size]).contiguous()  # (C, size, size) uint8


def predict_top_k(model: nn.Module, images: torch.Tensor, mean: tuple[float, ...],
                  std: tuple[float, ...], k: int = 5, precision: Precision | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` (probabilities, class indices), each (N, k), for uint8 images (N, C, H, W),
    through :func:`predict`."""
    batch = InMemoryDataset(images, torch.zeros(len(images), dtype=torch.long), ("",), "images",
                            tuple(mean), tuple(std))
    probs = predict(model, batch, precision=precision)[0].softmax(1)
    top = probs.topk(min(k, probs.shape[1]), dim=1)
    return top.values, top.indices
