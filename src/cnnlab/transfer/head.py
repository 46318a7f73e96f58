"""Training only the head on cached features — with the Trainer, like any other run.

Where the cache is cut (:func:`split_for_cache`):

* ``"pre_logits"`` — when every parameter of ``stages()["head"]`` belongs to the final linear
  classifier (ResNet, EfficientNet: pooling, [dropout,] ``fc``), the parameter-free pooling is
  frozen too and the cache holds ``forward_head(..., pre_logits=True)``: one vector per image (512
  floats for ResNet-18) and the head is the classifier, after the head's dropout if it has one;
* ``"features"`` — otherwise (LeNet's F6, AlexNet/VGG's dropout + MLP heads): the cache holds
  ``forward_features(x)`` and the head is ``forward_head``, dropout included.

The Trainer then trains a :class:`CachedHead` — the network run from its cache point — on a
:class:`FeatureDataset`, which gives each example one random cached view per epoch. Optimizer,
schedule, precision, clipping, EMA, early stopping, metrics.csv, checkpoints and resume are the
Trainer's; there is no second loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def _head_dropouts(model: nn.Module) -> list[nn.Module]:
    head = model.stages()["head"]
    return [m for m in head.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


def _cache_point(model: nn.Module) -> str:
    classifier = model.get_classifier()
    classifier_ids = {id(p) for p in classifier.parameters()}
    only_classifier = all(id(p) in classifier_ids for p in model.stages()["head"].parameters())
    return "pre_logits" if isinstance(classifier, nn.Linear) and only_classifier else "features"


class CachedHead(nn.Module):
    """``model`` run from its cache point: ``forward(cached) -> logits``.

    Its state dict is the whole network's (same keys, no prefix), so the Trainer's checkpoints and
    ``model.safetensors`` are those of an ordinary run of ``model`` and ``cnnlab evaluate`` loads
    them as it loads any run.
    """

    def __init__(self, model: nn.Module, point: str) -> None:
        super().__init__()
        self.network, self.point = model, point
        self.dropouts = _head_dropouts(model) if point == "pre_logits" else []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.point == "features":
            return self.network.forward_head(x)  # (B, num_classes) from the feature map
        for dropout in self.dropouts:  # (B, D): the head's dropout acts on the pooled vector
            x = dropout(x)
        return self.network.get_classifier()(x)

    def state_dict(self, *args, **kwargs):
        return self.network.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.network.load_state_dict(state_dict, strict=strict, assign=assign)


def split_for_cache(model: nn.Module) -> tuple[str, Callable, CachedHead]:
    """(cache point, extract(x) -> cached tensor, the network from that point) for ``model``."""
    point = _cache_point(model)
    if point == "pre_logits":
        def extract(x: torch.Tensor) -> torch.Tensor:
            return model.forward_head(model.forward_features(x), pre_logits=True)
    else:
        extract = model.forward_features
    return point, extract, CachedHead(model, point)


class FeatureDataset:
    """Cached features (V, N, ...) and labels, batched like an :class:`InMemoryDataset`.

    A training loader (which passes a generator) gets one random view of each example per batch;
    evaluation gets view 0, the plain image. Inputs are float and are not normalised again.
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...],
                 name: str) -> None:
        self.features, self.labels, self.classes, self.name = features, labels, classes, name
        self.mean = self.std = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.features.shape[2:])

    def subset(self, index: torch.Tensor) -> FeatureDataset:
        """The examples at ``index`` (every view), as :meth:`InMemoryDataset.subset`."""
        return FeatureDataset(self.features[:, index], self.labels[index], self.classes, self.name)

    def take(self, index: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if generator is None or self.features.shape[0] == 1:
            return self.features[0, index]  # (B, ...) from the memory-mapped cache
        view = torch.randint(self.features.shape[0], (len(index),), generator=generator,
                             device=generator.device).cpu()
        return self.features[view, index]
