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


def test_rotate_by_right_angles_is_rot90_and_zoom_by_one_is_the_identity():
    from cnnlab.lab.equivariance import rotate, zoom

    x = torch.randint(0, 256, (2, 1, 10, 10), dtype=torch.uint8)
    assert torch.equal(rotate(x, 90), torch.rot90(x, -1, (-2, -1)))
    assert torch.equal(rotate(x, 180), torch.rot90(x, 2, (-2, -1)))
    assert torch.equal(zoom(x, 1.0), x) and rotate(x, 30).dtype == torch.uint8
    small = zoom(torch.full((1, 1, 20, 20), 200, dtype=torch.uint8), 0.5)
    assert small[0, 0, 5:15, 5:15].min() == 200 and small[0, 0, :4].max() == 0  # half the size


def _symmetrise(net: ShiftNet) -> None:
    """Make every 3x3 kernel invariant under 90-degree rotation: the net is then equivariant."""
    with torch.no_grad():
        for conv in (net.conv1[0], net.conv2[0], net.conv3[0]):
            w = conv.weight
            w.copy_(sum(torch.rot90(w, k, (-2, -1)) for k in range(4)) / 4)


def test_rotations_by_the_kernels_own_symmetry_leave_no_error_and_others_do():
    from cnnlab.lab.equivariance import layer_rotations

    torch.manual_seed(0)
    images = torch.rand(3, 1, 24, 24)
    net = ShiftNet("maxpool", input_size=24)
    generic = layer_rotations(net, images, [0, 90])
    _symmetrise(net)
    symmetric = layer_rotations(net, images, [0, 90, 180, 30])
    for name in ("conv1", "conv2", "conv3"):
        assert generic[name][0]["error"] == 0.0 and symmetric[name][0]["error"] == 0.0
        assert generic[name][1]["error"] > 0.05  # generic 3x3 filters do not rotate with x
        assert symmetric[name][1]["error"] < 1e-5 and symmetric[name][2]["error"] < 1e-5
        assert symmetric[name][3]["error"] > 1e-3  # 30 degrees: bilinear resampling is not exact
