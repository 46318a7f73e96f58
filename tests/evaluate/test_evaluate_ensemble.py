"""Ensembles average the members' probabilities (or logits) and report the gain."""

import pytest
import torch
from torch import nn

from cnnlab.data import InMemoryDataset
from cnnlab.errors import ConfigError
from cnnlab.evaluate import ensemble_evaluate
from cnnlab.evaluate.ensemble import combine_predictions


class _Fixed(nn.Module):
    """Returns preset logits for the images in order (ignores pixel values)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.logits[: len(x)]


def _dataset(labels):
    return InMemoryDataset(torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), torch.tensor(labels),
                           ("a", "b", "c"), "t", (0.5,), (0.5,))


def test_probability_and_logit_averaging_by_hand():
    z1 = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    z2 = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
    p1, p2 = z1.softmax(1), z2.softmax(1)
    torch.testing.assert_close(combine_predictions([z1, z2], "prob"), (p1 + p2) / 2)
    torch.testing.assert_close(combine_predictions([z1, z2], "logit"), ((z1 + z2) / 2).softmax(1))
    with pytest.raises(ConfigError):
        combine_predictions([z1], "median")


def test_ensemble_beats_members_where_they_disagree():
    labels = [0, 1, 2, 0]
    # member A right on examples 0,1 (confidently), wrong but unsure on 2,3;
    # member B right on 2,3 (confidently), wrong but unsure on 0,1
    a = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0.3, 0, 0], [0, 0.3, 0]])
    b = torch.tensor([[0, 0.3, 0], [0.3, 0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    ds = _dataset(labels)
    result = ensemble_evaluate([_Fixed(a), _Fixed(b)], [ds, ds], ["A", "B"], batch_size=4)
    assert [m.accuracy for m in result.members] == [0.5, 0.5]
    assert result.ensemble.accuracy == 1.0
    assert result.gain == pytest.approx(0.5)
    expected = (a.softmax(1) + b.softmax(1)) / 2
    torch.testing.assert_close(result.ensemble.probs, expected)
    text = result.format()
    assert "ensemble (prob)" in text and "+50.00 points" in text


def test_members_must_share_labels():
    a = torch.zeros(2, 3)
    with pytest.raises(ConfigError, match="different examples or labels"):
        ensemble_evaluate([_Fixed(a), _Fixed(a)], [_dataset([0, 1]), _dataset([1, 0])])
