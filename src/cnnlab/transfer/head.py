"""Training only the head, on cached features (no backbone in the loop).

Where the cache is cut (:func:`split_for_cache`):

* ``"pre_logits"`` — when every parameter of ``stages()["head"]`` belongs to the final linear
  classifier and the head has no dropout (ResNet, ConvNeXt-free heads: pooling then ``fc``), the
  parameter-free pooling is frozen too and the cache holds ``forward_head(..., pre_logits=True)``:
  one vector per image (512 floats for ResNet-18) and training is one linear layer;
* ``"features"`` — otherwise (LeNet's F6, AlexNet/VGG's dropout + MLP heads): the cache holds
  ``forward_features(x)`` and training runs ``forward_head`` on it, dropout included.

:func:`train_head` is a small loop (no augmentation: the views, if any, were cached): SGD or
AdamW as in the run config, the Trainer's learning-rate schedule (``train.schedule``), one random
cached view per example and epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.train.config import RunConfig
from cnnlab.train.optim import build_optimizer, build_scheduler


def split_for_cache(model: nn.Module) -> tuple[str, Callable, Callable]:
    """(cache point, extract(x) -> cached tensor, head(cached) -> logits) for ``model``."""
    head = model.stages()["head"]
    classifier = model.get_classifier()
    classifier_ids = {id(p) for p in classifier.parameters()}
    only_classifier = all(id(p) in classifier_ids for p in head.parameters())
    dropout = any(isinstance(m, nn.modules.dropout._DropoutNd) for m in head.modules())
    if isinstance(classifier, nn.Linear) and only_classifier and not dropout:
        return ("pre_logits",
                lambda x: model.forward_head(model.forward_features(x), pre_logits=True),
                classifier)
    return "features", model.forward_features, model.forward_head


def _batches(n: int, batch_size: int, generator: torch.Generator | None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


@torch.no_grad()
def evaluate_head(head: Callable, features: torch.Tensor, labels: torch.Tensor,
                  batch_size: int = 1000) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) of ``head`` on cached features (V, N, ...), view 0."""
    loss_sum, correct = 0.0, 0
    for index in _batches(len(labels), batch_size, None):
        logits = head(features[0, index]).float()
        loss_sum += F.cross_entropy(logits, labels[index], reduction="sum").item()
        correct += (logits.argmax(1) == labels[index]).sum().item()
    return loss_sum / len(labels), correct / len(labels)


def train_head(model: nn.Module, head: Callable, train_features: torch.Tensor,
               train_labels: torch.Tensor, test_features: torch.Tensor, test_labels: torch.Tensor,
               config: RunConfig, log=print) -> list[dict]:
    """Train the model's trainable (head) parameters on cached features; one metrics row per epoch.

    Args:
        model: the model whose parameters with ``requires_grad`` are trained (the head).
        head: cached tensor -> logits (from :func:`split_for_cache`).
        train_features: (V, N, ...) cached views; each epoch picks one random view per example.
        test_features: (V, N, ...); view 0 (the plain image) is evaluated after every epoch.
        config: the run config; ``train`` gives optimizer, lr, schedule, epochs, batch size, seed.
    """
    t = config.train
    torch.manual_seed(t.seed)
    generator = torch.Generator().manual_seed(t.seed)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, math.ceil(len(train_labels) / t.batch_size))
    num_views, history, start = train_features.shape[0], [], time.perf_counter()
    for epoch in range(1, t.epochs + 1):
        model.train()
        lr = optimizer.param_groups[0]["lr"]
        epoch_start, loss_sum, correct = time.perf_counter(), 0.0, 0
        for index in _batches(len(train_labels), t.batch_size, generator):
            view = torch.randint(num_views, (len(index),), generator=generator)
            x = train_features[view, index]  # (B, ...) gathered from the memory-mapped cache
            y = train_labels[index]
            logits = head(x).float()
            loss = F.cross_entropy(logits, y, label_smoothing=t.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
        seconds = time.perf_counter() - epoch_start
        train_loss = loss_sum / len(train_labels)
        if not math.isfinite(train_loss):
            raise ConfigError(f"the head's training loss became {train_loss} in epoch {epoch}; "
                              f"lower the learning rate (train.lr={t.lr})")
        model.eval()
        test_loss, test_acc = evaluate_head(head, test_features, test_labels)
        row = dict(epoch=epoch, train_loss=round(train_loss, 5),
                   train_acc=round(correct / len(train_labels), 5), test_loss=round(test_loss, 5),
                   test_acc=round(test_acc, 5), lr=f"{lr:.6g}",
                   images_per_s=round(len(train_labels) / seconds, 1),
                   elapsed_s=round(time.perf_counter() - start, 2))
        history.append(row)
        if log:
            log(f"epoch {epoch:>3}/{t.epochs}  train loss {train_loss:.4f} acc {row['train_acc']:.2%}  "
                f"test loss {test_loss:.4f} acc {test_acc:.2%}  "
                f"{row['images_per_s']:,.0f} img/s (cached features)")
    return history
