"""Predicting the classes of image files with a trained model.

An image is decoded with ``torchvision.io.decode_image`` (PNG, JPEG, GIF, WEBP), converted to the
model's channels by the decoder (``ImageReadMode.GRAY``: ITU-R 601 luma; ``RGB``: grey repeated,
alpha dropped), then resized so its shorter side equals ``resize`` (antialiased; bilinear unless
the weights ask for bicubic) and centre-cropped to ``size`` x ``size``. For a run, ``resize`` is
the model's input size — the training transform of the in-memory data sets, whose images are
already square at that size; pretrained weights bring their own (``Preprocessing``: e.g. resize
256, crop 224). Files that are missing or that do not decode are
refused with a :class:`~cnnlab.errors.DataError` naming the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms.v2 import functional as TF

from cnnlab.data.loader import normalize
from cnnlab.errors import DataError


def load_image(path: str | Path, in_chans: int, size: int, resize: int | None = None,
               interpolation: str = "bilinear") -> torch.Tensor:
    """Decode an image file to uint8 (in_chans, size, size) as described in the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {str(path)!r} does not exist")
    if in_chans not in (1, 3):
        raise DataError(f"the model takes {in_chans}-channel inputs; predict reads grey or RGB images")
    try:
        with warnings.catch_warnings():  # torchvision 0.29 warns that decoding moves to torchcodec
            warnings.simplefilter("ignore", DeprecationWarning)
            data = read_file(str(path))
            image = decode_image(data, mode=ImageReadMode.GRAY if in_chans == 1 else ImageReadMode.RGB)
    except (RuntimeError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"cannot read {str(path)!r} as an image (PNG, JPEG, GIF or WEBP): "
                        f"{reason}") from None
    if image.ndim == 4:  # an animated GIF: its first frame
        image = image[0]
    mode = TF.InterpolationMode(interpolation)
    image = TF.resize(image, resize or size, interpolation=mode, antialias=True)  # shorter side
    return TF.center_crop(image, [size, size]).contiguous()  # (C, size, size) uint8


@torch.no_grad()
def predict_top_k(model: nn.Module, images: torch.Tensor, mean: tuple[float, ...],
                  std: tuple[float, ...], k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` (probabilities, class indices), each (N, k), for uint8 images (N, C, H, W)."""
    model.eval()
    probs = model(normalize(images, mean, std)).float().softmax(1)
    top = probs.topk(min(k, probs.shape[1]), dim=1)
    return top.values, top.indices
