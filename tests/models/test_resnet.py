"""ResNet (ImageNet), CIFAR ResNets and plain nets against torchvision, the paper and formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.errors import ConfigError
from cnnlab.models import create_model, load_torchvision_weights, model_info
from cnnlab.models.resnet import ShortcutA

DEPTHS = (18, 34, 50, 101, 152)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def _macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """torch's FlopCounterMode counts 2 FLOPs per multiply-add of conv / matmul."""
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.empty(shape, device="meta"))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("depth", DEPTHS)
def test_params_match_torchvision_metadata(depth):
    meta = torchvision.models.get_model_weights(f"resnet{depth}").DEFAULT.meta
    name = f"resnet{depth}"
    assert _count(_meta(name)) == meta["num_params"] == model_info(name).params


@pytest.mark.parametrize("depth", [18, 50, pytest.param(152, marks=pytest.mark.slow)])
def test_macs_match_torchvision_metadata(depth):
    """torchvision's _ops (G multiply-adds at 224) for v1.5; ModelInfo.macs is exact."""
    name = f"resnet{depth}"
    macs = _macs(_meta(name).eval(), (1, 3, 224, 224))
    assert macs == model_info(name).macs
    assert round(macs / 1e9, 3) == torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"]


def test_v1_puts_the_stride_on_the_first_1x1_and_costs_3_86_gmacs():
    v1, v15 = _meta("resnet50", variant="v1").eval(), _meta("resnet50").eval()
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
    assert _count(v1) == _count(v15)
    macs = _macs(v1, (1, 3, 224, 224))
    assert round(macs / 1e9, 2) == 3.86
    assert macs == model_info("resnet50").extra["macs_v1"]


def _projection_params(in_chs: int, out_chs: int) -> int:
    return in_chs * out_chs + 2 * out_chs  # 1x1 conv without bias + BN (gamma, beta)


def test_shortcut_options_change_only_the_shortcut_parameters():
    """ResNet-18: B projects at the 3 stage transitions; A has no shortcut parameters; C projects
    all 8 shortcuts (the extra 5 are identity-shaped 1x1 projections)."""
    b = 11_689_512
    transitions = sum(_projection_params(c, 2 * c) for c in (64, 128, 256))
    identities = 2 * _projection_params(64, 64) + sum(
        _projection_params(c, c) for c in (128, 256, 512))
    assert _count(_meta("resnet18", shortcut="A")) == b - transitions
    assert _count(_meta("resnet18", shortcut="C")) == b + identities
    assert all(m.downsample is not None for m in _meta("resnet50", shortcut="C").modules()
               if hasattr(m, "downsample"))


def test_shortcut_a_is_subsampling_plus_zero_channels():
    x = torch.randn(2, 16, 7, 7)
    out = ShortcutA(16, 32, 2)(x)
    expected = torch.cat([x[:, :, ::2, ::2], torch.zeros(2, 16, 4, 4)], dim=1)
    assert torch.equal(out, expected)
    assert not list(ShortcutA(16, 32, 2).parameters())


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="shortcut"):
        create_model("resnet18", shortcut="D")
    with pytest.raises(ConfigError, match="variant"):
        create_model("resnet50", variant="v2")


def test_small_input_rule_uses_a_3x3_stride_1_stem_without_max_pool():
    small = _meta("resnet18", input_size=32)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    assert small.forward_features(torch.empty(1, 3, 32, 32, device="meta")).shape == (1, 512, 4, 4)
    big = _meta("resnet18", input_size=64)
    assert big.conv1.kernel_size == (7, 7) and isinstance(big.maxpool, nn.MaxPool2d)
    assert "3x3 stride 1" in model_info("resnet18").small_input


def test_resnet18_forward_backward_at_paper_size():
    model = create_model("resnet18")
    out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000)
    out.sum().backward()
    assert model.conv1.weight.grad is not None


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_weights_load_and_give_the_same_outputs(depth, tmp_path):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    ours = create_model(f"resnet{depth}").eval()
    if depth == 18:  # through a file, as a user with downloaded weights would
        path = tmp_path / "resnet18.pth"
        torch.save(theirs.state_dict(), path)
        load_torchvision_weights(ours, path)
    else:
        load_torchvision_weights(ours, theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


# --- CIFAR ResNets (Sec. 4.2) and plain nets ------------------------------------------------

CIFAR = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


def _cifar_params(n: int) -> int:
    """6n+2 layers: 3x3 convs without bias + BN, option-A shortcuts (free), 64 -> 10 fc."""
    params = 3 * 16 * 9 + 2 * 16
    in_chs = 16
    for width in (16, 32, 64):
        params += in_chs * width * 9 + 2 * width + (2 * n - 1) * (width * width * 9 + 2 * width)
        in_chs = width
    return params + 64 * 10 + 10


@pytest.mark.parametrize("depth", CIFAR)
def test_cifar_resnet_and_plain_counts(depth):
    n = (depth - 2) // 6
    assert _cifar_params(n) == CIFAR[depth]
    for kind in ("resnet", "plain"):
        model = _meta(f"{kind}{depth}")
        assert _count(model) == CIFAR[depth] == model_info(f"{kind}{depth}").params
        weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert len(weighted) == depth  # 6n + 2 weighted layers, no projection shortcuts
        assert _macs(model.eval(), (1, 3, 32, 32)) == model_info(f"{kind}{depth}").macs


def test_cifar_maps_are_32_16_8_and_28_gives_7():
    model = _meta("resnet20")
    shapes = [m.conv2.weight.shape[0] for m in (model.layer1[0], model.layer2[0], model.layer3[0])]
    assert shapes == [16, 32, 64]
    assert model.forward_features(torch.empty(1, 3, 32, 32, device="meta")).shape == (1, 64, 8, 8)
    mnist = _meta("resnet20", in_chans=1, input_size=28)
    assert mnist.forward_features(torch.empty(1, 1, 28, 28, device="meta")).shape == (1, 64, 7, 7)


def _manual_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """relu(bn2(conv2(relu(bn1(conv1 x))))), written with torch.nn.functional (eval-mode BN)."""
    def bn(m, t):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)
    out = F.conv2d(x, block.conv1.weight, stride=block.conv1.stride, padding=1)
    out = F.relu(bn(block.bn1, out))
    return bn(block.bn2, F.conv2d(out, block.conv2.weight, padding=1))


@torch.no_grad()
def test_residual_and_plain_blocks_follow_the_formula():
    """Residual: y = relu(F(x) + shortcut(x)); plain: y = relu(F(x)); same weights in both."""
    torch.manual_seed(0)
    res = create_model("resnet20").eval()
    plain = create_model("plain20").eval()
    plain.load_state_dict(res.state_dict())  # option A adds no parameters: the keys match
    x = torch.randn(2, 16, 8, 8)
    pairs = ((res.layer1[1], plain.layer1[1]), (res.layer2[0], plain.layer2[0]))
    for res_block, plain_block in pairs:
        f = _manual_block(res_block, x)
        shortcut = x[:, :, ::2, ::2] if res_block.conv1.stride == (2, 2) else x
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, f.shape[1] - x.shape[1]))
        assert torch.allclose(res_block(x), F.relu(f + shortcut), atol=1e-6)
        assert torch.allclose(plain_block(x), F.relu(f), atol=1e-6)
        x = res_block(x)
    assert all(b.downsample is None for b in plain.modules() if hasattr(b, "downsample"))
