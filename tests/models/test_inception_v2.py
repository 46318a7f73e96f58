"""Inception v2 / BN-Inception: Figure 5 of Ioffe & Szegedy (2015)."""

import pytest
import torch
from torch import nn

from cnnlab.models import create_model, model_info

# Figure 5 rows: (#1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool proj)
FIGURE5 = [(64, 64, 64, 64, 96, 32), (64, 64, 96, 64, 96, 64), (0, 128, 160, 64, 96, 0),
           (224, 64, 96, 96, 128, 128), (192, 96, 128, 96, 128, 128),
           (160, 128, 160, 128, 160, 128), (96, 128, 192, 160, 192, 128),
           (0, 128, 192, 192, 256, 0), (352, 192, 320, 160, 224, 128),
           (352, 192, 320, 192, 224, 128)]


def _expected_params(num_classes=1000):
    """Convs without bias + BN (2 per channel): k*k*c_in*c_out + 2*c_out, summed."""
    conv = lambda k, i, o: k * k * i * o + 2 * o  # noqa: E731
    total = conv(7, 3, 64) + conv(1, 64, 64) + conv(3, 64, 192)
    in_chs = 192
    for c1, c3r, c3, d3r, d3, proj in FIGURE5:
        total += (conv(1, in_chs, c1) if c1 else 0) + conv(1, in_chs, c3r) + conv(3, c3r, c3)
        total += conv(1, in_chs, d3r) + conv(3, d3r, d3) + conv(3, d3, d3)
        total += conv(1, in_chs, proj) if proj else 0
        in_chs = c1 + c3 + d3 + (proj or in_chs)
    return total + 1024 * num_classes + num_classes


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return create_model("inception_v2").eval()


def test_parameter_count_follows_the_branch_widths(net):
    n = sum(p.numel() for p in net.parameters())
    assert n == _expected_params() == model_info("inception_v2").params
    assert round(n / 1e5) == 113  # about 11.3M


def test_no_5x5_and_bn_before_every_relu(net):
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.kernel_size != (5, 5) and c.bias is None for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == len(convs)


def test_module_widths_at_224_including_the_figure5_discrepancy(net):
    widths = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: widths.__setitem__(n, tuple(o.shape[1:])))
             for n, m in net.named_modules() if n.split(".")[-1].startswith("inception")]
    with torch.no_grad():
        out = net(torch.randn(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    got = {k.split(".")[-1][9:]: v for k, v in widths.items()}
    assert got["3a"] == (256, 28, 28) and got["3b"] == (320, 28, 28) and got["3c"] == (576, 14, 14)
    assert got["4a"] == got["4b"] == (576, 14, 14)
    assert got["4c"] == got["4d"] == (608, 14, 14)  # Figure 5 lists 576
    assert got["4e"] == (1056, 7, 7)  # Figure 5 lists 1024
    assert got["5a"] == got["5b"] == (1024, 7, 7)
    assert out.shape == (1, 1000)


def test_small_inputs():
    model = create_model("inception_v2", num_classes=10, in_chans=1, input_size=28)
    assert model.stem.conv1.conv.stride == (1, 1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
