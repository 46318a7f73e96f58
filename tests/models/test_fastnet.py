"""FastNet's airbench options: whitening stem, dirac init, bias-only BatchNorm, logit scaling."""

import torch
import torch.nn.functional as F

from cnnlab.models import create_model
from cnnlab.models.fastnet import WhiteningConv, _param_count, batch_norm, dirac_init_


def _correlated_images(n=64, size=12, seed=0):
    """Images whose neighbouring pixels are strongly correlated (a smoothed noise field), with a
    non-zero mean: their patch covariance is far from the identity."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, size + 4, size + 4, generator=g)
    smooth = F.avg_pool2d(noise, 5, stride=1) * 3 + 0.5  # (n, 1, size, size)
    return smooth


def test_whitening_filters_whiten_the_training_patches():
    images = _correlated_images()
    layer = WhiteningConv(1, kernel_size=2, eps=1e-6)
    layer.init_from_data(images)
    # oracle: the 2x2 patches cut by hand, through the positive filters without the bias
    patches = torch.stack([images[:, 0, i:i + 11, j:j + 11] for i in (0, 1) for j in (0, 1)], -1)
    patches = patches.reshape(-1, 4).double()  # (P, 4), ordered (dy, dx) as the filters are
    raw_cov = patches.T @ patches / len(patches)
    assert (raw_cov - torch.eye(4, dtype=torch.float64)).abs().max() > 0.5  # far from white
    with torch.no_grad():
        out = F.conv2d(images, layer.weight[:4])  # (n, 4, 11, 11), bias left out
    flat = out.permute(0, 2, 3, 1).reshape(-1, 4).double()
    cov = flat.T @ flat / len(flat)
    torch.testing.assert_close(cov, torch.eye(4, dtype=torch.float64), atol=1e-3, rtol=0)
    # the second half are the negatives, and nothing about the weights trains
    torch.testing.assert_close(layer.weight[4:], -layer.weight[:4])
    assert not layer.weight.requires_grad and layer.bias.requires_grad
    assert layer.out_channels == 8


def test_fastnet_whiten_fits_its_stem_and_freezes_the_bias_after_the_given_epochs():
    model = create_model("fastnet_s", whiten=True, whiten_bias_epochs=2)
    images = _correlated_images(n=16, size=28)
    model.init_from_data(images)
    stem = model.stem[0]
    expected = WhiteningConv(1)
    expected.init_from_data(images)
    torch.testing.assert_close(stem.weight, expected.weight)
    model.set_epoch(2)
    assert stem.bias.requires_grad
    model.set_epoch(3)
    assert not stem.bias.requires_grad
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_dirac_conv_with_equal_channels_passes_its_input_through():
    conv = dirac_init_(torch.nn.Conv2d(5, 5, 3, padding=1, bias=False))
    x = torch.randn(2, 5, 7, 7)
    torch.testing.assert_close(conv(x), x)
    wider = dirac_init_(torch.nn.Conv2d(3, 6, 3, padding=1, bias=False))
    x = torch.randn(2, 3, 6, 6)
    out = wider(x)
    torch.testing.assert_close(out[:, :3], x)  # the first in_channels filters: identity
    assert not torch.allclose(out[:, 3:], torch.zeros_like(out[:, 3:]))  # the rest keep their init


def test_fastnet_dirac_initialises_every_conv_after_the_stem():
    model = create_model("fastnet_s", dirac=True)
    default = create_model("fastnet_s")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs[1:]:  # each group conv: its first in_channels filters are the identity
        eye = torch.zeros(conv.in_channels, conv.in_channels, 3, 3)
        eye[torch.arange(conv.in_channels), torch.arange(conv.in_channels), 1, 1] = 1
        torch.testing.assert_close(conv.weight[:conv.in_channels], eye)
    assert not torch.equal(convs[0].weight, convs[0].weight.new_zeros(convs[0].weight.shape))
    assert sum(p.numel() for p in default.parameters()) == _param_count(24, (32, 64, 128))


def test_bias_only_batchnorm_keeps_its_weight_and_follows_the_momentum():
    bn = batch_norm(3, momentum=0.4, weight=False)
    optimizer = torch.optim.SGD([p for p in bn.parameters() if p.requires_grad], lr=1.0)
    x = torch.randn(8, 3, 4, 4) * 2 + 1
    bn(x).pow(2).sum().backward()
    optimizer.step()
    assert bn.weight.grad is None and torch.equal(bn.weight, torch.ones(3))
    assert bn.bias.grad is not None and not torch.equal(bn.bias, torch.zeros(3))
    # running = (1 - m) running + m batch statistic (variance unbiased), m = 0.4
    expected_mean = 0.6 * torch.zeros(3) + 0.4 * x.mean((0, 2, 3))
    expected_var = 0.6 * torch.ones(3) + 0.4 * x.var((0, 2, 3), unbiased=True)
    torch.testing.assert_close(bn.running_mean, expected_mean)
    torch.testing.assert_close(bn.running_var, expected_var)
    model = create_model("fastnet_s", bn_weight=False, bn_momentum=0.4)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not m.weight.requires_grad and m.momentum == 0.4 for m in norms)


def test_logit_scale_multiplies_the_logits():
    torch.manual_seed(0)
    plain = create_model("fastnet_s").eval()
    scaled = create_model("fastnet_s", logit_scale=1 / 9).eval()
    scaled.load_state_dict(plain.state_dict())
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(scaled(x), plain(x) / 9)
