"""Network in Network: mlpconv blocks and global average pooling (Lin, Chen & Yan 2013)."""

import torch
from torch import nn

from cnnlab.models import create_model, model_info


def _count(table, in_chs, num_classes):
    """Parameters of a stack of (kernel, out) convolutions with bias: sum (k*k*c_in + 1) * c_out."""
    total = 0
    for kernel, out in table:
        out = out or num_classes
        total += (kernel * kernel * in_chs + 1) * out
        in_chs = out
    return total


def test_cifar_nin_parameter_count_from_the_released_configuration():
    table = [(5, 192), (1, 160), (1, 96), (5, 192), (1, 192), (1, 192), (3, 192), (1, 192), (1, 0)]
    expected = _count(table, 3, 10)
    model = create_model("nin")
    assert sum(p.numel() for p in model.parameters()) == expected == model_info("nin").params


def test_imagenet_nin_parameter_count():
    table = [(11, 96), (1, 96), (1, 96), (5, 256), (1, 256), (1, 256), (3, 384), (1, 384),
             (1, 384), (3, 1024), (1, 1024), (1, 0)]
    with torch.device("meta"):
        model = create_model("nin_imagenet")
    assert sum(p.numel() for p in model.parameters()) == _count(table, 3, 1000)


def test_every_block_is_a_conv_then_two_1x1_convs():
    model = create_model("nin")
    for block in model.blocks:
        kernels = [m.kernel_size for m in block[0] if isinstance(m, nn.Conv2d)]
        assert kernels[1:] == [(1, 1), (1, 1)] and kernels[0] != (1, 1)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())  # no FC layer


def test_global_average_pooling_of_class_maps():
    torch.manual_seed(0)
    model = create_model("nin").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 192, 8, 8)
        class_maps = torch.relu(model.get_classifier()(feats))  # (B, 10, 8, 8)
        assert torch.allclose(model(x), class_maps.mean(dim=(2, 3)), atol=1e-6)
        assert model.forward_head(feats, pre_logits=True).shape == (2, 192)


def test_reset_classifier_and_small_inputs():
    model = create_model("nin", num_classes=10, in_chans=1, input_size=28)
    model.reset_classifier(4)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 4)
    model = create_model("nin_imagenet", num_classes=10, input_size=32)
    assert model.blocks[0][0][0].stride == (1, 1)  # small-input stem rule
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
