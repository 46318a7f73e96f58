"""The training loss: the model's own when it has one, else cross-entropy.

Auxiliary classifiers are the model's business: GoogLeNet's ``loss(outputs, targets,
label_smoothing)`` adds its side branches (Szegedy et al. 2015, Sec. 5); the Trainer calls
whatever :func:`default_loss` returns, or the ``loss_fn`` it is given.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError

LossFn = Callable[[object, torch.Tensor], torch.Tensor]


def cross_entropy_loss(label_smoothing: float = 0.0) -> LossFn:
    """``loss(logits, targets)``: cross-entropy in float32 (targets: labels or mixed one-hots)."""
    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if not isinstance(outputs, torch.Tensor):
            raise ConfigError("the model returns several outputs in training mode (auxiliary "
                              "heads?): give the Trainer a loss_fn, or define model.loss(outputs, "
                              "targets, label_smoothing) as GoogLeNet does")
        return F.cross_entropy(outputs.float(), targets, label_smoothing=label_smoothing)
    return loss


def default_loss(model: nn.Module, label_smoothing: float = 0.0) -> LossFn:
    """The model's own training loss when it defines one (``model.loss(outputs, targets,
    label_smoothing)``: GoogLeNet adds its side classifiers), else cross-entropy."""
    own = getattr(model, "loss", None)
    if callable(own):
        return lambda outputs, targets: own(outputs, targets, label_smoothing=label_smoothing)
    return cross_entropy_loss(label_smoothing)
