"""Test-time augmentation: several views of each image, one forward pass, probabilities averaged.

AlexNet (Krizhevsky et al., 2012, section 4.1) predicted with ten 224x224 patches — the four
corners and the centre of the 256x256 image, and their horizontal reflections — averaging the
softmax outputs. :func:`tta_views` builds those views; :func:`cnnlab.evaluate.predict.predict`
runs all views of a batch through the model as one batch of ``views * N`` images.

**One definition, everywhere**: the prediction for an image is the mean over its views of the
softmax probabilities, p = sum_v w_v softmax(z_v) with the mode's view weights w_v
(:data:`VIEW_WEIGHTS`, equal ones 1/V unless listed; :func:`average_probabilities`). Training's
``train.tta_flip`` is mode ``flip`` (with ``train.tta_shift``: ``flip_shift``), so the accuracy in
metrics.csv, ``cnnlab evaluate`` (which reads the run's mode) and the report agree; with one
view the loss is the exact cross-entropy of the logits.

Modes and views, in this order (``V`` views):

* ``none``   (1): the images unchanged;
* ``flip``   (2): the images, then their mirror images;
* ``flip_shift`` (6): airbench's mirror + translate (Jordan 2024, ``tta_level=2``): the image, its
  mirror, then the image moved 1 pixel down-right, its mirror, the image moved 1 pixel up-left,
  its mirror (cut from the image padded by 1 pixel of reflection), weighted 1/4, 1/4, 1/8 x 4:
  half the weight on the unshifted pair, half on the shifted ones (airbench averages logits with
  these weights; cnnlab averages probabilities, its one rule);
* ``center`` (1): the centre crop;
* ``5crop``  (5): top-left, top-right, bottom-left, bottom-right, centre crops;
* ``10crop`` (10): the five crops, then their mirror images in the same order.

A mirror image flips the **width** axis (the last one of NCHW), never the height.

When the images are exactly ``crop_size`` (a 28x28 model on 28x28 Fashion-MNIST) there is nothing
to crop, so the corner crops first pad the image by ``margin`` pixels of zeros (black, in raw pixel
values — apply the views *before* normalising) on each side and crop ``crop_size`` back out: the
corner views are the image shifted by ``margin`` pixels diagonally, the centre view is the image
itself. This is the test-time twin of the usual "pad 4, random crop" training augmentation.
Default margin: AlexNet's proportion, ``max(1, round(crop_size * 16 / 224))`` (its corner crops sit
16 pixels from the centre one at 224): 2 pixels at 28 and at 32.

TTA helps only when the views look like the training images: a model trained without flips or
shifts (e.g. LeNet-5 on Fashion-MNIST, whose shoes all point left) loses accuracy on mirrored and
shifted views; train with the matching augmentation first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError, ShapeError

TTA_MODES = ("none", "flip", "flip_shift", "center", "5crop", "10crop")
NUM_VIEWS = {"none": 1, "flip": 2, "flip_shift": 6, "center": 1, "5crop": 5, "10crop": 10}
# The modes whose views are not weighted equally (the others: 1/V each).
VIEW_WEIGHTS = {"flip_shift": (0.25, 0.25, 0.125, 0.125, 0.125, 0.125)}


def view_weights(mode: str) -> torch.Tensor:
    """The weight of each of ``mode``'s views in the averaged prediction (V,), summing to 1."""
    views = NUM_VIEWS[mode]
    return torch.tensor(VIEW_WEIGHTS.get(mode, (1 / views,) * views))


def _five_crops(images: torch.Tensor, crop: int) -> list[torch.Tensor]:
    """[TL, TR, BL, BR, centre] crops of ``crop x crop`` from (N, C, H, W)."""
    h, w = images.shape[-2:]
    top, left = (h - crop) // 2, (w - crop) // 2
    return [images[..., :crop, :crop], images[..., :crop, w - crop:],
            images[..., h - crop:, :crop], images[..., h - crop:, w - crop:],
            images[..., top:top + crop, left:left + crop]]


def tta_views(images: torch.Tensor, mode: str, crop_size: int,
              margin: int | None = None) -> torch.Tensor:
    """The test-time views of a batch: (N, C, H, W) -> (V, N, C, crop_size, crop_size).

    Args:
        images: raw pixel batch (uint8 or float), (N, C, H, W) with H, W >= crop_size.
        mode: one of ``none``, ``flip``, ``center``, ``5crop``, ``10crop`` (module docstring).
        crop_size: side of the crops, from the training recipe (the model's input size).
        margin: zero padding used when H == W == crop_size (default
            ``max(1, round(crop_size * 16 / 224))``).
    """
    if mode not in TTA_MODES:
        raise ConfigError(f"unknown TTA mode {mode!r}; choose one of {', '.join(TTA_MODES)}")
    if images.ndim != 4:
        raise ShapeError(f"tta_views expects a (N, C, H, W) batch, got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if h < crop_size or w < crop_size:
        raise ShapeError(f"images of {h}x{w} are smaller than the crop size {crop_size}; "
                         f"resize them to at least {crop_size}x{crop_size} first")
    if mode == "none":
        return images.unsqueeze(0)
    if mode == "flip":
        return torch.stack([images, images.flip(-1)])
    if mode == "flip_shift":  # padded[1:] of a 1-px reflection pad is the image itself
        padded = F.pad(images.float(), (1, 1, 1, 1), mode="reflect").to(images.dtype)
        down_right, up_left = padded[..., :h, :w], padded[..., 2:, 2:]
        return torch.stack([images, images.flip(-1), down_right, down_right.flip(-1),
                            up_left, up_left.flip(-1)]).contiguous()
    crops = _five_crops(images, crop_size)
    if mode == "center":
        return crops[4].unsqueeze(0)
    if h == crop_size and w == crop_size:  # nothing to crop: pad, then crop back to size
        pad = max(1, round(crop_size * 16 / 224)) if margin is None else margin
        padded = F.pad(images, (pad, pad, pad, pad))  # zeros: black in raw pixel values
        crops = _five_crops(padded, crop_size)
    views = torch.stack(crops)  # (5, N, C, crop, crop)
    if mode == "10crop":
        views = torch.cat([views, views.flip(-1)])  # mirrors flip W, the last axis
    return views.contiguous()


def view_mean(values: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(V, N, classes) -> (N, classes): the mean over views, weighted by ``weights`` (V,) when
    given (:func:`view_weights`), else equal."""
    if weights is None:
        return values.mean(0)
    return torch.einsum("v,vnc->nc", weights.to(values), values)


def average_probabilities(logits: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(V, N, classes) logits -> (N, classes): the mean over views of softmax(logits), weighted
    by ``weights`` (V,) when given (:func:`view_weights`) — the one way views are combined, in
    training (``train.tta_flip``), ``cnnlab evaluate`` and ensembles."""
    return view_mean(logits.softmax(-1), weights)


class FlipTTA(nn.Module):
    """``model`` with flip TTA as one module (to export it, or to evaluate it anywhere): returns
    log(1/2 (softmax(model(x)) + softmax(model(mirror of x)))), whose softmax is mode ``flip``'s
    prediction (:func:`average_probabilities`) and whose argmax its class."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = torch.stack([self.model(x), self.model(x.flip(-1))]).float()  # (2, B, classes)
        return average_probabilities(views).log()


def predict_view_logits(model: nn.Module, dataset, mode: str, crop_size: int,
                        batch_size: int = 500, precision=None) -> torch.Tensor:
    """Logits (V, N, classes) of every view of every image: :func:`cnnlab.evaluate.predict.predict`."""
    from cnnlab.evaluate.predict import predict

    return predict(model, dataset, mode, crop_size, batch_size, precision)
