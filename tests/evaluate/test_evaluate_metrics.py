import torch
from torch import nn

from cnnlab.evaluate import confusion_matrix, evaluate_model


def test_confusion_matrix_counts_pairs():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    preds = torch.tensor([0, 1, 1, 2, 0, 2])
    expected = torch.zeros(3, 3, dtype=torch.long)
    for t, p in zip(labels.tolist(), preds.tolist()):
        expected[t, p] += 1
    assert torch.equal(confusion_matrix(preds, labels, 3), expected)


class _Oracle(nn.Module):
    """Predicts class = the brightest row band, which is exactly how the synthetic data is made."""

    def forward(self, x):
        rows = x.mean(dim=(1, 3))  # (B, H)
        band = rows.argmax(1)
        logits = torch.full((len(x), 10), -10.0)
        cls = ((band - 2) * 10 // 24).clamp(0, 9)
        logits[torch.arange(len(x)), cls] = 10.0
        return logits


def test_evaluate_model_accuracy_and_loss(tiny_dataset):
    _, test = tiny_dataset
    result = evaluate_model(_Oracle(), test, batch_size=7)
    preds = _Oracle()(((test.images.float() / 255) - 0.15) / 0.25).argmax(1)
    assert result.accuracy == (preds == test.labels).float().mean().item()
    assert result.confusion.sum() == len(test)
    assert result.per_class_accuracy.shape == (10,)
    assert "acc" in result.format_confusion()
