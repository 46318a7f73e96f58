"""TDNN (Waibel et al. 1989) against the paper's layer sizes, torch's functional ops and the
scanning MLP it is (cnnlab.nn.scanning)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.errors import ShapeError
from cnnlab.models import create_model, model_info
from cnnlab.nn.scanning import scan_mlp


def test_paper_layer_sizes_and_parameter_count():
    """16 coefficients x 15 frames -> 8 x 13 (delay 3) -> 3 x 9 (delay 5) -> 3 outputs."""
    model = create_model("tdnn")
    x = torch.randn(4, 16, 15)
    assert model.forward_features(x).shape == (4, 8, 13)
    assert model(x).shape == (4, 3)
    expected = (16 * 3 * 8 + 8) + (8 * 5 * 3 + 3)  # weights + biases of the two delay layers
    assert sum(p.numel() for p in model.parameters()) == expected == model_info("tdnn").params
    assert model_info("tdnn").input_size == (16, 15)
    assert model_info("tdnn").macs == 13 * 8 * (16 * 3) + 9 * 3 * (8 * 5)


@torch.no_grad()
def test_output_integrates_sigmoid_units_over_time():
    torch.manual_seed(0)
    model = create_model("tdnn")
    x = torch.randn(2, 16, 15)
    h1 = torch.sigmoid(F.conv1d(x, model.conv1.weight, model.conv1.bias))
    h2 = torch.sigmoid(F.conv1d(h1, model.conv2.weight, model.conv2.bias))
    assert torch.allclose(model(x), h2.sum(dim=2), atol=1e-6)


@torch.no_grad()
def test_it_is_a_scanning_mlp_over_7_frames():
    """Each output frame is one MLP applied to a 7-frame window (3 + 5 - 1), moved 1 frame."""
    torch.manual_seed(0)
    model = create_model("tdnn")
    mlp, window, stride = model.scanning_mlp()
    assert (window, stride) == (7, 1)
    x = torch.randn(2, 16, 15)
    hidden2 = model.act2(model.conv2(model.forward_features(x)))  # (B, 3, 9)
    assert torch.allclose(scan_mlp(mlp, x, window, stride), hidden2, atol=1e-6)
    # the window-by-window MLP by hand: frame t of hidden 2 sees frames t .. t+6 only
    for t in (0, 4, 8):
        h1 = torch.sigmoid(F.conv1d(x[:, :, t:t + 7], model.conv1.weight, model.conv1.bias))
        h2 = torch.sigmoid(F.conv1d(h1, model.conv2.weight, model.conv2.bias))
        assert torch.allclose(h2[:, :, 0], hidden2[:, :, t], atol=1e-6)


def test_any_length_of_at_least_7_frames_and_backward():
    model = create_model("tdnn", input_size=7)
    model(torch.randn(2, 16, 7)).sum().backward()
    assert model.conv1.weight.grad is not None
    assert create_model("tdnn", num_classes=5)(torch.randn(1, 16, 40)).shape == (1, 5)
    with pytest.raises(ShapeError, match=r"'conv2'.*at least 7"):
        create_model("tdnn", input_size=6)


def test_reset_classifier_gives_a_new_time_delay_layer():
    model = create_model("tdnn")
    model.reset_classifier(6)
    assert model.conv2.kernel_size == (5,) and model(torch.randn(1, 16, 15)).shape == (1, 6)
