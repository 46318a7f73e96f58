"""Equivariance measurements against the theory: conv commutes with shifts, pooling by its stride."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.data import InMemoryDataset
from cnnlab.lab.equivariance import ShiftNet, layer_shifts, prediction_changes, shift


def test_shift_matches_roll_with_the_wrapped_columns_zeroed():
    x = torch.randn(2, 3, 5, 9)
    for k in (1, 4):
        oracle = torch.roll(x, k, dims=-1)
        oracle[..., :k] = 0
        assert torch.equal(shift(x, k), oracle)
    assert torch.equal(shift(x, 0), x)


def test_stride_one_convolutions_shift_exactly_with_the_input():
    torch.manual_seed(0)
    net = ShiftNet("flatten", input_size=20)
    images = torch.zeros(3, 1, 20, 20)
    images[..., 4:16, 4:14] = torch.rand(3, 1, 12, 10)  # content away from the borders
    for rows in layer_shifts(net, images, [0, 1, 3]).values():
        for row in rows:
            assert row["best_map_shift"] == row["shift"]
            assert row["error"] < 1e-6


def test_after_pooling_only_multiples_of_the_stride_carry_over():
    torch.manual_seed(0)
    net = ShiftNet("maxpool", input_size=24)
    images = torch.zeros(4, 1, 24, 24)
    images[..., 4:20, 4:18] = torch.rand(4, 1, 16, 14)
    rows = {r["shift"]: r for r in layer_shifts(net, images, [1, 2])["conv2"]}  # stride 2
    assert rows[2]["best_map_shift"] == 1 and rows[2]["error"] < 1e-6  # 2 px = one pooled pixel
    assert rows[1]["error"] > 0.05  # half a pooled pixel: no exact shift explains it


def test_global_average_pooling_predictions_ignore_interior_shifts():
    images = torch.zeros(6, 1, 12, 12, dtype=torch.uint8)
    images[..., 3:9, 2:7] = torch.randint(1, 255, (6, 1, 6, 5), dtype=torch.uint8)
    test = InMemoryDataset(images, torch.arange(6) % 3, ("a", "b", "c"), "toy", (0.0,), (1.0,))
    torch.manual_seed(0)
    invariant = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten(), nn.Linear(4, 3))  # 1x1 conv + GAP: a sum over pixels
    for row in prediction_changes(invariant, test, [0, 1, 3]):
        assert row["changed"] == 0.0 and row["prob_change"] < 1e-5
