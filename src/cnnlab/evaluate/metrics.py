"""Metrics on a test split: accuracy, loss and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.datasets import InMemoryDataset
from cnnlab.data.loader import InMemoryLoader
from cnnlab.device import Precision, resolve_precision


@dataclass
class EvalResult:
    loss: float  # mean cross-entropy
    accuracy: float  # top-1, in [0, 1]
    confusion: torch.Tensor  # (C, C) counts, rows = true class, columns = predicted
    classes: tuple[str, ...]  # class names

    @property
    def per_class_accuracy(self) -> torch.Tensor:
        return self.confusion.diag() / self.confusion.sum(1).clamp(min=1)

    def format_confusion(self) -> str:
        """The confusion matrix as a text table (rows: true class, columns: predicted)."""
        names = [c[:10] for c in self.classes]
        width = max(6, *(len(n) for n in names))
        lines = [" " * width + " " + " ".join(f"{i:>5d}" for i in range(len(names))) + "  acc"]
        for i, row in enumerate(self.confusion.tolist()):
            acc = self.per_class_accuracy[i].item() * 100
            lines.append(f"{names[i]:>{width}} " + " ".join(f"{v:>5d}" for v in row) + f" {acc:5.1f}")
        return "\n".join(lines)


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[t, p] = number of examples of true class t predicted as p."""
    index = labels.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes**2).view(num_classes, num_classes)


@torch.no_grad()
def predict_logits(model: nn.Module, dataset: InMemoryDataset, batch_size: int = 1000,
                   precision: Precision | None = None) -> torch.Tensor:
    """Logits (N, num_classes) in float32 for every example, in order, with the model in eval mode."""
    precision = precision or resolve_precision("cpu", "fp32")
    was_training = model.training
    model.eval()
    outputs = []
    try:
        for images, _ in InMemoryLoader(dataset, batch_size, device=precision.device, prefetch=0):
            if precision.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with precision.autocast():
                outputs.append(model(images).float())
    finally:
        model.train(was_training)
    return torch.cat(outputs).cpu()


def evaluate_model(model: nn.Module, dataset: InMemoryDataset, batch_size: int = 1000,
                   precision: Precision | None = None) -> EvalResult:
    """Loss, top-1 accuracy and confusion matrix of ``model`` on ``dataset``."""
    logits = predict_logits(model, dataset, batch_size, precision)
    labels = dataset.labels
    loss = F.cross_entropy(logits, labels).item()
    predictions = logits.argmax(1)
    return EvalResult(loss, (predictions == labels).float().mean().item(),
                      confusion_matrix(predictions, labels, dataset.num_classes), dataset.classes)
