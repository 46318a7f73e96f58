"""ResNet — He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
arXiv:1512.03385.

A residual block computes y = relu(F(x) + shortcut(x)), F two 3x3 convolutions (basic block) or
1x1 -> 3x3 -> 1x1 (bottleneck, 4x expansion), batch norm after every convolution (Sec. 3.4).
The shortcut options of Sec. 3.3 / Table 3:

* ``"A"``: identity; where the shape changes, stride subsampling plus zero-padded extra channels
  (parameter-free);
* ``"B"``: identity, and a 1x1 projection + BN where the shape changes (default, as torchvision);
* ``"C"``: a 1x1 projection + BN on every shortcut.

Deviations from the paper, all torchvision's, so its ImageNet weights load with no renaming:
* ``variant="v1.5"`` (default) puts a bottleneck's stride on its 3x3 convolution; the paper's
  ``variant="v1"`` puts it on the first 1x1 (ResNet-50: 3.86 G instead of 4.09 G multiply-adds).
* Option B for every depth; the paper used option A for its plain-vs-residual ResNet-18/34 runs.
* Images smaller than 64x64: a 3x3 stride-1 ``conv1`` and no max-pool (output stride 8, not 32),
  as the paper's CIFAR networks (Sec. 4.2); pass ``stem="imagenet"`` to keep the 7x7 stem.

The same ``ResNet`` class builds the CIFAR networks and plain networks of ``resnet_cifar.py``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import ConvNet, explain_shape_errors, image_size
from cnnlab.models.registry import ModelInfo, register_model

# Table 1 of the paper: blocks per stage.
RESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
}
SHORTCUTS = ("A", "B", "C")
SMALL_INPUT_BELOW = 64  # images smaller than this get the 3x3 stride-1 stem without max-pool


def conv3x3(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, 3, stride, padding=1, bias=False)


def conv1x1(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, 1, stride, bias=False)


class ShortcutA(nn.Module):
    """Option A: x[:, :, ::s, ::s] with zero channels appended up to ``out_chs`` (no parameters)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.extra_chs, self.stride = out_chs - in_chs, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C_in, ceil(H/s), ceil(W/s))
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_chs))  # (B, C_out, H', W')


def make_shortcut(in_chs: int, out_chs: int, stride: int, shortcut: str) -> nn.Module | None:
    """The shortcut of one block by option A/B/C; ``None`` means the identity."""
    changes = stride != 1 or in_chs != out_chs
    if shortcut == "A":
        return ShortcutA(in_chs, out_chs, stride) if changes else None
    if shortcut == "C" or changes:  # B projects only where the shape changes
        return nn.Sequential(conv1x1(in_chs, out_chs, stride), nn.BatchNorm2d(out_chs))
    return None


class BasicBlock(nn.Module):
    """Two 3x3 convolutions: y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""

    expansion = 1

    def __init__(self, in_chs: int, planes: int, stride: int = 1, shortcut: str = "B",
                 residual: bool = True) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_chs, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.residual = residual  # False: a "plain" block, the paper's baseline
        self.downsample = make_shortcut(in_chs, planes, stride, shortcut) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 -> 1x1 (expand 4x); stride on the 3x3 (v1.5) or the first 1x1 (v1)."""

    expansion = 4

    def __init__(self, in_chs: int, planes: int, stride: int = 1, shortcut: str = "B",
                 residual: bool = True, variant: str = "v1.5") -> None:
        super().__init__()
        out_chs = planes * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if variant == "v1" else (1, stride)
        self.conv1 = conv1x1(in_chs, planes, stride_1x1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride_3x3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_chs)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual
        self.downsample = make_shortcut(in_chs, out_chs, stride, shortcut) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class ResNet(ConvNet):
    """Stem, then one stage per entry of ``layers`` (the first at stride 1, the rest at stride 2),
    global average pooling and ``fc``. Module names are torchvision's.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage (Table 1; ``(n, n, n)`` for the CIFAR nets of Sec. 4.2).
        widths: ``planes`` of each stage (64/128/256/512 ImageNet; 16/32/64 CIFAR).
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool), ``"small"`` (3x3/1 conv, no pool),
            or ``None``: ``"small"`` when ``input_size < 64``.
        shortcut: option ``"A"``, ``"B"`` or ``"C"``; ``residual=False`` drops them (plain net).
        variant: ``"v1.5"`` (torchvision) or ``"v1"`` (the paper) for bottleneck strides.
        zero_init_residual: start each block's last BN at gamma = 0 (Goyal et al. 2017).
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, ...],
                 num_classes: int = 1000, in_chans: int = 3, input_size: int | tuple = 224,
                 widths: tuple[int, ...] = (64, 128, 256, 512), stem: str | None = None,
                 shortcut: str = "B", residual: bool = True, variant: str = "v1.5",
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        size = min(image_size(input_size))
        stem = stem or ("small" if size < SMALL_INPUT_BELOW else "imagenet")
        if shortcut not in SHORTCUTS:
            raise ConfigError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        if variant not in ("v1", "v1.5"):
            raise ConfigError(f"variant must be 'v1' (paper) or 'v1.5' (torchvision), "
                              f"got {variant!r}")
        if stem not in ("imagenet", "small"):
            raise ConfigError(f"stem must be 'imagenet' or 'small', got {stem!r}")
        self.num_classes = num_classes
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, widths[0], 7, 2, 3, bias=False)  # (B, 64, H/2, W/2)
            self.maxpool = nn.MaxPool2d(3, 2, padding=1)  # (B, 64, H/4, W/4)
        else:
            self.conv1 = conv3x3(in_chans, widths[0])  # (B, w0, H, W)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        in_chs, reduction = widths[0], 4 if stem == "imagenet" else 1
        strides = dict(variant=variant) if block is Bottleneck else {}  # where a bottleneck strides
        self.feature_info = [dict(module="stem", num_chs=in_chs, reduction=reduction)]
        for i, (planes, depth) in enumerate(zip(widths, layers, strict=True)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            blocks = []
            for j in range(depth):
                blocks.append(block(in_chs, planes, stride if j == 0 else 1, shortcut, residual,
                                    **strides))
                in_chs = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.feature_info.append(
                dict(module=f"stage{i + 1}", num_chs=in_chs, reduction=reduction))
        self.num_stages = len(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_chs, num_classes)
        self.num_features = in_chs
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """He et al. 2015 ("Delving deep") normal init, fan-out mode, as torchvision."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_((m.bn3 if isinstance(m, Bottleneck) else m.bn2).weight)

    @explain_shape_errors
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, w0, H/4, W/4) or (B, w0, H, W)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)  # each later stage halves H and W
        return x  # (B, num_features, H/32, W/32) ImageNet; (B, 64, H/4, W/4) CIFAR

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (B, num_features)
        return x if pre_logits else self.fc(x)  # (B, num_classes)

    def stages(self) -> OrderedDict[str, nn.Module]:
        out = OrderedDict(stem=nn.ModuleList([self.conv1, self.bn1, self.relu, self.maxpool]))
        for i in range(self.num_stages):
            out[f"stage{i + 1}"] = getattr(self, f"layer{i + 1}")
        out["head"] = nn.ModuleList([self.avgpool, self.fc])
        return out


def _create_resnet(depth: int, **kwargs) -> ResNet:
    block = BasicBlock if depth < 50 else Bottleneck
    return ResNet(block, RESNET_LAYERS[depth], **kwargs)


_PAPER = "He, Zhang, Ren & Sun, Deep Residual Learning for Image Recognition"
_URL = "https://arxiv.org/abs/1512.03385"
_SMALL = (f"images below {SMALL_INPUT_BELOW}x{SMALL_INPUT_BELOW}: conv1 becomes 3x3 stride 1 and "
          "the max-pool is dropped (output stride 8), as the paper's CIFAR nets; "
          "stem='imagenet' keeps the 7x7/2 stem")
_DEVIATIONS = ("option B shortcuts at every depth (the paper used option A for ResNet-18/34 in "
               "Table 2); shortcut='A'|'C' give the paper's other options",)
_V15 = ("v1.5 (torchvision): stride 2 on the bottleneck's 3x3 convolution instead of its first "
        "1x1; variant='v1' is the paper's",)


def _info(depth: int, params: int, macs: int, paper_flops: float) -> ModelInfo:
    return ModelInfo(
        name=f"resnet{depth}", family="resnet", paper=_PAPER, year=2016, input_size=(3, 224, 224),
        num_classes=1000, params=params, macs=macs, url=_URL, first_conv="conv1",
        deviations=_DEVIATIONS + (_V15 if depth >= 50 else ()), small_input=_SMALL,
        extra=dict(paper_gmacs=paper_flops, layers=RESNET_LAYERS[depth],
                   macs_v1=macs - (231_211_008 if depth >= 50 else 0)),
    )


# params and macs (224x224, conv + linear) are torchvision's; paper_gmacs: Table 1's "FLOPs".
@register_model(_info(18, 11_689_512, 1_814_073_344, 1.8))
def resnet18(**kwargs) -> ResNet:
    return _create_resnet(18, **kwargs)


@register_model(_info(34, 21_797_672, 3_663_761_408, 3.6))
def resnet34(**kwargs) -> ResNet:
    return _create_resnet(34, **kwargs)


@register_model(_info(50, 25_557_032, 4_089_184_256, 3.8))
def resnet50(**kwargs) -> ResNet:
    return _create_resnet(50, **kwargs)


@register_model(_info(101, 44_549_160, 7_801_405_440, 7.6))
def resnet101(**kwargs) -> ResNet:
    return _create_resnet(101, **kwargs)


@register_model(_info(152, 60_192_808, 11_513_626_624, 11.3))
def resnet152(**kwargs) -> ResNet:
    return _create_resnet(152, **kwargs)
