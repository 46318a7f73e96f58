"""Metrics on a test split: loss, top-1 and top-5 accuracy, per-class accuracy, the confusion
matrix and the expected calibration error (:mod:`cnnlab.evaluate.calibration`).

``evaluate_model(..., tta="10crop", crop_size=28)`` evaluates with test-time augmentation
(:mod:`cnnlab.evaluate.tta`): the loss and every metric are then computed from the probabilities
averaged over the views. Predictions come from :func:`cnnlab.evaluate.predict.predict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.datasets import InMemoryDataset
from cnnlab.device import Precision
from cnnlab.evaluate.calibration import expected_calibration_error
from cnnlab.evaluate.predict import predict
from cnnlab.evaluate.tta import average_probabilities, view_weights


@dataclass
class EvalResult:
    loss: float  # mean cross-entropy
    accuracy: float  # top-1, in [0, 1]
    confusion: torch.Tensor  # (C, C) counts, rows = true class, columns = predicted
    classes: tuple[str, ...]  # class names
    top5: float | None = None  # top-5 accuracy in [0, 1]; None when there are 5 classes or fewer
    ece: float | None = None  # expected calibration error, 15 bins (calibration.py)
    probs: torch.Tensor | None = field(default=None, repr=False)  # (N, C) predicted probabilities

    @property
    def per_class_accuracy(self) -> torch.Tensor:
        return self.confusion.diag() / self.confusion.sum(1).clamp(min=1)

    def format_confusion(self) -> str:
        """The confusion matrix as a text table: one row per true class (numbered, full name),
        one column per predicted class (by the rows' numbers), then the row's accuracy."""
        labels = [f"{i} {name}" for i, name in enumerate(self.classes)]
        corner = "true \\ predicted"
        width = max(len(corner), *(len(x) for x in labels))
        cell = max(5, len(str(int(self.confusion.max()))) + 1) if self.confusion.numel() else 5
        lines = [f"{corner:<{width}} " + "".join(f"{i:>{cell}d}" for i in range(len(labels)))
                 + "     acc"]
        for i, row in enumerate(self.confusion.tolist()):
            acc = self.per_class_accuracy[i].item() * 100
            lines.append(f"{labels[i]:<{width}} " + "".join(f"{v:>{cell}d}" for v in row)
                         + f"  {acc:5.1f}%")
        return "\n".join(lines)


def summary_lines(result: EvalResult) -> list[str]:
    """One line each: loss, top-1, top-5 (when defined) and ECE of an :class:`EvalResult`."""
    lines = [f"test loss: {result.loss:.4f}"]
    if result.top5 is not None:
        lines.append(f"top-5 accuracy: {result.top5 * 100:.2f}%")
    if result.ece is not None:
        lines.append(f"expected calibration error (15 bins): {result.ece * 100:.2f}%")
    lines.append(f"test accuracy: {result.accuracy * 100:.2f}%")
    return lines


def top_k_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of examples whose true label is among the ``k`` highest scores (N, C)."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices  # (N, k)
    return (top == labels.view(-1, 1)).any(1).float().mean().item()


def result_from_probabilities(probs: torch.Tensor, labels: torch.Tensor,
                              classes: tuple[str, ...]) -> EvalResult:
    """Every metric from predicted probabilities (N, C): loss = mean of -log p(true class)."""
    probs = probs.float()
    loss = -probs.gather(1, labels.view(-1, 1)).clamp(min=1e-12).log().mean().item()
    predictions = probs.argmax(1)
    top5 = top_k_accuracy(probs, labels, 5) if len(classes) > 5 else None
    return EvalResult(loss, (predictions == labels).float().mean().item(),
                      confusion_matrix(predictions, labels, len(classes)), classes, top5,
                      expected_calibration_error(probs, labels), probs)


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[t, p] = number of examples of true class t predicted as p."""
    index = labels.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes**2).view(num_classes, num_classes)


def predict_logits(model: nn.Module, dataset: InMemoryDataset, batch_size: int = 1000,
                   precision: Precision | None = None) -> torch.Tensor:
    """Logits (N, num_classes) in float32 for every example, in order (:func:`predict`, one view)."""
    return predict(model, dataset, "none", None, batch_size, precision)[0]


def evaluate_model(model: nn.Module, dataset: InMemoryDataset, batch_size: int = 1000,
                   precision: Precision | None = None, tta: str = "none",
                   crop_size: int | None = None, progress: str | None = None) -> EvalResult:
    """Loss, top-1/top-5 accuracy, confusion matrix and ECE of ``model`` on ``dataset``.

    The predictions are :func:`predict`'s; with ``tta`` other than ``"none"`` each image's views
    (``crop_size``: default the images' size) are combined by averaging their softmax
    probabilities (:func:`~cnnlab.evaluate.tta.average_probabilities`) and the loss is the mean of
    -log p(true class); with one view it is the exact cross-entropy of the logits.
    ``progress`` labels a progress bar over the examples (None: none).
    """
    logits = predict(model, dataset, tta, crop_size, batch_size, precision, progress)  # (V, N, C)
    if len(logits) > 1:
        return result_from_probabilities(average_probabilities(logits, view_weights(tta)),
                                         dataset.labels, dataset.classes)
    result = result_from_probabilities(logits[0].softmax(1), dataset.labels, dataset.classes)
    result.loss = F.cross_entropy(logits[0], dataset.labels).item()  # exact, no clamping
    return result
