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


def test_confusion_table_names_classes_in_full_and_its_axes():
    from cnnlab.data.datasets import FASHION_MNIST_CLASSES
    from cnnlab.evaluate.metrics import result_from_probabilities

    labels = torch.tensor([0, 0, 9, 9, 9])
    probs = torch.nn.functional.one_hot(torch.tensor([0, 9, 9, 9, 0]), 10).float()
    lines = result_from_probabilities(probs, labels, FASHION_MNIST_CLASSES).format_confusion().splitlines()
    assert lines[0].startswith("true \\ predicted") and lines[0].split()[3:] == [*map(str, range(10)), "acc"]
    first, last = lines[1].split(), lines[10].split()
    assert lines[1].startswith("0 T-shirt/top ") and lines[10].startswith("9 Ankle boot ")
    assert first[2:] == ["1", *["0"] * 8, "1", "50.0%"]  # true T-shirt: one right, one as a boot
    assert last[3:] == ["1", *["0"] * 8, "2", "66.7%"]


def test_progress_bar_counts_the_images_and_names_the_views(tiny_dataset, monkeypatch):
    import tqdm.auto

    bars = []

    class Bar:
        def __init__(self, total=None, desc=None, disable=None, **kwargs):
            self.total, self.desc, self.disable, self.n = total, desc, disable, 0
            bars.append(self)

        def update(self, n=1):
            self.n += n

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    _, test = tiny_dataset
    evaluate_model(_Oracle(), test, batch_size=30, tta="flip", progress="evaluate")
    assert (bars[-1].desc, bars[-1].total, bars[-1].n) == ("evaluate x 2 views", len(test), len(test))
    assert bars[-1].disable is None  # tqdm's rule: shown on a terminal only
    evaluate_model(_Oracle(), test, batch_size=30)
    assert bars[-1].disable is True  # no label, no bar
