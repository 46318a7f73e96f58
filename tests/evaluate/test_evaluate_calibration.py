"""ECE, top-5 and per-class accuracy against hand computations."""

import pytest
import torch

from cnnlab.evaluate import expected_calibration_error, reliability_bins, top_k_accuracy
from cnnlab.evaluate.metrics import result_from_probabilities


def test_ece_matches_a_hand_computation():
    # confidences 0.95, 0.95 (bin 15: (14/15, 1]), 0.6 (bin 9: (8/15, 9/15]), 0.55 (bin 9),
    # 0.3 (bin 5: (4/15, 5/15]); 2 classes are not enough for 0.3, so use 4 classes
    probs = torch.tensor([[0.95, 0.05, 0.0, 0.0],   # predicts 0, label 0: right
                          [0.95, 0.05, 0.0, 0.0],   # predicts 0, label 1: wrong
                          [0.6, 0.4, 0.0, 0.0],     # predicts 0, label 0: right
                          [0.2, 0.55, 0.25, 0.0],   # predicts 1, label 2: wrong
                          [0.3, 0.25, 0.25, 0.2]])  # predicts 0, label 0: right
    labels = torch.tensor([0, 1, 0, 2, 0])
    # bin (14/15,1]: 2 examples, acc 1/2, conf 0.95 -> 2/5 * 0.45 = 0.18
    # bin (8/15,9/15]: 0.6 and 0.55, acc 1/2, conf 0.575 -> 2/5 * 0.075 = 0.03
    # bin (4/15,5/15]: 0.3, acc 1, conf 0.3 -> 1/5 * 0.7 = 0.14
    assert expected_calibration_error(probs, labels) == pytest.approx(0.18 + 0.03 + 0.14)
    bins = reliability_bins(probs, labels)
    assert bins.counts.tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 2]


def test_ece_bin_edges_are_right_closed():
    # 2/3 = 10/15 exactly: belongs to bin (9/15, 10/15], the 10th bin
    probs = torch.tensor([[2 / 3, 1 / 3]])
    assert reliability_bins(probs, torch.tensor([0])).counts[9] == 1
    # a perfectly calibrated set: confidence 1 and always right
    assert expected_calibration_error(torch.eye(3), torch.arange(3)) == 0.0


def test_top_k_and_per_class():
    scores = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0, 0.0, 0.0],
                           [0.7, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0],
                           [0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.7]])
    labels = torch.tensor([0, 0, 4])
    assert top_k_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(scores, labels, 3) == pytest.approx(2 / 3)  # label 4 is 3rd in row 2
    assert top_k_accuracy(scores, labels, 4) == pytest.approx(1.0)  # label 0 is 4th in row 0
    result = result_from_probabilities(scores, labels, tuple("abcdefg"))
    assert result.top5 == pytest.approx(1.0)
    assert result.per_class_accuracy[0].item() == pytest.approx(0.5)  # one of two class-0 right
    assert result.per_class_accuracy[4].item() == 0.0
    few = result_from_probabilities(torch.eye(3), torch.arange(3), ("a", "b", "c"))
    assert few.top5 is None  # top-5 means nothing with 3 classes
