"""ConvNeXt against torchvision (counts, multiply-adds, weights, outputs) and the paper's block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.models import create_model, load_torchvision_weights, model_info
from cnnlab.models.convnext import CNBlock

VARIANTS = ("tiny", "small", "base", "large")


def _meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


@pytest.mark.parametrize("variant", VARIANTS)
def test_params_and_stochastic_depth_match_torchvision(variant):
    name = f"convnext_{variant}"
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    ours = _meta(name)
    count = sum(p.numel() for p in ours.parameters())
    assert count == meta["num_params"] == model_info(name).params
    with torch.device("meta"):
        theirs = getattr(torchvision.models, name)()
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    ours_p = [m.p for m in ours.modules() if isinstance(m, torchvision.ops.StochasticDepth)]
    theirs_p = [m.p for m in theirs.modules() if isinstance(m, torchvision.ops.StochasticDepth)]
    assert ours_p == pytest.approx(theirs_p)
    last = {"tiny": 0.1, "small": 0.4}.get(variant, 0.5)  # the paper's ImageNet-1K rates
    assert ours_p[0] == 0.0 and ours_p[-1] == pytest.approx(last)


def test_macs_match_torchvision_metadata():
    counter = FlopCounterMode(display=False)
    with counter:
        _meta("convnext_tiny").eval()(torch.empty(1, 3, 224, 224, device="meta"))
    macs = counter.get_total_flops() // 2
    assert macs == model_info("convnext_tiny").macs
    assert round(macs / 1e9, 3) == torchvision.models.ConvNeXt_Tiny_Weights.DEFAULT.meta["_ops"]


@torch.no_grad()
def test_torchvision_weights_load_and_give_the_same_outputs():
    torch.manual_seed(0)
    theirs = torchvision.models.convnext_tiny(weights=None).eval()
    for block in theirs.modules():  # layer scale 1e-6 would hide the blocks: make them count
        if hasattr(block, "layer_scale"):
            block.layer_scale.fill_(0.5)
    ours = load_torchvision_weights(create_model("convnext_tiny").eval(), theirs.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(ours(x), theirs(x), atol=1e-4, rtol=1e-4)


def test_layer_scale_starts_at_1e_minus_6():
    model = _meta("convnext_tiny")
    scales = [m.layer_scale for m in model.modules() if isinstance(m, CNBlock)]
    assert len(scales) == 3 + 3 + 9 + 3
    fresh = CNBlock(8, 1e-6, 0.0)
    assert torch.equal(fresh.layer_scale, torch.full((8, 1, 1), 1e-6))


@torch.no_grad()
def test_block_follows_the_paper_formula():
    """y = x + gamma * Linear2(GELU(Linear1(LN(dwconv7x7(x))))), channels-last for LN/Linear."""
    torch.manual_seed(0)
    block = CNBlock(8, 0.5, 0.0).eval()
    x = torch.randn(2, 8, 5, 5)
    dw, ln, fc1, fc2 = block.block[0], block.block[2], block.block[3], block.block[5]
    h = F.conv2d(x, dw.weight, dw.bias, padding=3, groups=8).permute(0, 2, 3, 1)
    h = F.layer_norm(h, (8,), ln.weight, ln.bias, 1e-6)
    h = F.linear(F.gelu(F.linear(h, fc1.weight, fc1.bias)), fc2.weight, fc2.bias)
    assert torch.allclose(block(x), x + 0.5 * h.permute(0, 3, 1, 2), atol=1e-6)


def test_stochastic_depth_drops_whole_residuals_in_training_only():
    torch.manual_seed(0)
    block = CNBlock(4, 1.0, 0.5)
    x = torch.randn(64, 4, 3, 3)
    with torch.no_grad():
        same = (block(x) == x).flatten(1).all(dim=1)  # per sample: residual branch dropped
        assert 0 < int(same.sum()) < 64  # some samples keep the residual branch, some skip it
        assert not (block.eval()(x) == x).flatten(1).all(dim=1).any()


def test_small_input_rule_is_a_2x2_stride_2_stem():
    small = _meta("convnext_tiny", input_size=28)
    assert small.features[0][0].kernel_size == (2, 2) and small.features[0][0].stride == (2, 2)
    out = small.forward_features(torch.empty(1, 3, 28, 28, device="meta"))
    assert out.shape == (1, 768, 1, 1)  # 28 -> 14 -> 7 -> 3 -> 1
    assert _meta("convnext_tiny", input_size=64).features[0][0].kernel_size == (4, 4)
    assert "2x2 stride-2" in model_info("convnext_tiny").small_input
