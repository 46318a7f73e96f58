"""1x1 conv <-> Linear, locally connected layers, parameter counts, scanning MLP <-> TDNN."""

import pytest
import torch
from torch import nn

from cnnlab.nn import (
    LocallyConnected2d,
    conv1x1_to_linear,
    distributed_tdnn,
    layer_param_counts,
    linear_to_conv1x1,
    scan_mlp,
    scanning_mlp_to_tdnn,
    tdnn_to_scanning_mlp,
)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_linear_and_1x1_conv_are_the_same_layer():
    torch.manual_seed(0)
    linear = nn.Linear(5, 7)
    x = torch.randn(2, 5, 4, 3)
    per_position = linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # Linear at each (r, c)
    conv = linear_to_conv1x1(linear)
    torch.testing.assert_close(conv(x), per_position)
    back = conv1x1_to_linear(conv)
    torch.testing.assert_close(back.weight, linear.weight)
    torch.testing.assert_close(back.bias, linear.bias)
    with pytest.raises(ValueError, match="1x1"):
        conv1x1_to_linear(nn.Conv2d(5, 7, 3))


def test_locally_connected_with_tied_weights_is_a_convolution():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    local = LocallyConnected2d(3, 4, (9, 8), 3, stride=2, padding=1)
    with torch.no_grad():  # give every position the convolution's kernel and bias
        local.weight.copy_(conv.weight.reshape(1, 4, -1).expand_as(local.weight))
        local.bias.copy_(conv.bias.view(4, 1, 1).expand_as(local.bias))
    x = torch.randn(2, 3, 9, 8)
    torch.testing.assert_close(local(x), conv(x))


def test_locally_connected_positions_are_unshared():
    torch.manual_seed(0)
    local = LocallyConnected2d(2, 3, 5, 3)  # 3x3 output positions
    x = torch.randn(1, 2, 5, 5)
    y = local(x)
    for r, c in [(0, 0), (1, 2), (2, 1)]:  # a dot product of the window with its own kernel
        window = x[0, :, r:r + 3, c:c + 3].reshape(-1)
        expected = local.weight[r * 3 + c] @ window + local.bias[:, r, c]
        torch.testing.assert_close(y[0, :, r, c], expected)


def test_param_counts_match_real_layers():
    counts = layer_param_counts((3, 8, 8), 4, 3, stride=1, padding=1)
    assert counts["convolutional"] == _params(nn.Conv2d(3, 4, 3, padding=1)) == 112
    assert counts["locally_connected"] == _params(LocallyConnected2d(3, 4, 8, 3, padding=1))
    assert counts["fully_connected"] == _params(nn.Linear(3 * 8 * 8, 4 * 8 * 8))
    # the course notes' argument in numbers: (192 * 256 + 256), 64 positions * (4 * 27 + 4), 4 * 27 + 4
    assert (counts["fully_connected"], counts["locally_connected"]) == (49_408, 7_168)


def _mlp_by_hand(mlp, x, window, stride):
    """The oracle: run the MLP on each window separately, in a Python loop."""
    outs = [mlp(x[:, :, t:t + window].reshape(x.shape[0], -1))
            for t in range(0, x.shape[2] - window + 1, stride)]
    return torch.stack(outs, dim=2)


def test_scanning_mlp_equals_its_tdnn():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(3 * 8, 8), nn.ReLU(), nn.Linear(8, 16), nn.ReLU(),
                        nn.Linear(16, 4))
    x = torch.randn(2, 3, 40)
    expected = _mlp_by_hand(mlp, x, 8, 4)
    torch.testing.assert_close(scan_mlp(mlp, x, 8, 4), expected)
    tdnn = scanning_mlp_to_tdnn(mlp, window=8, stride=4)
    assert [type(m) for m in tdnn] == [nn.Conv1d, nn.ReLU, nn.Conv1d, nn.ReLU, nn.Conv1d]
    torch.testing.assert_close(tdnn(x), expected)
    assert _params(tdnn) == _params(mlp) == 24 * 8 + 8 + 8 * 16 + 16 + 16 * 4 + 4


def test_notes_distributed_tdnn_and_its_flat_mlp():
    torch.manual_seed(0)
    tdnn = distributed_tdnn(1)  # 4 filters w2 s2, 3 filters w2 s2, 2 filters w2 s2
    convs = [m for m in tdnn if isinstance(m, nn.Conv1d)]
    widths = [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in convs]
    assert widths == [(4, 2, 2), (3, 2, 2), (2, 2, 2)]
    mlp, window, stride = tdnn_to_scanning_mlp(tdnn)
    assert (window, stride) == (8, 8)
    x = torch.randn(2, 1, 64)
    torch.testing.assert_close(tdnn(x), _mlp_by_hand(mlp, x, window, stride))
    # shared: 4*2+4 + 3*(4*2)+3 + 2*(3*2)+2 = 53; the flat MLP repeats the 4 first-layer neurons
    # at 4 positions and the 3 second-layer neurons at 2: (8*16+16) + (16*6+6) + (6*2+2) = 260
    assert _params(tdnn) == 53 and _params(mlp) == 260
    torch.testing.assert_close(scanning_mlp_to_tdnn(mlp, window, stride)(x), tdnn(x))


def test_distributed_tdnn_with_overlapping_windows():
    torch.manual_seed(0)
    tdnn = distributed_tdnn(2, [(4, 3, 1), (3, 2, 2), (5, 3, 1)], activation=nn.Tanh)
    mlp, window, stride = tdnn_to_scanning_mlp(tdnn)
    assert (window, stride) == (3 + (2 - 1) * 1 + (3 - 1) * 1 * 2, 1 * 2 * 1)
    x = torch.randn(1, 2, 30)
    torch.testing.assert_close(tdnn(x), _mlp_by_hand(mlp, x, window, stride))
