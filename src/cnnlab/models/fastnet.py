"""FastNet — a small ResNet-less speed-run network for 28x28 and 32x32 images, after Keller
Jordan's airbench (2024, arXiv:2404.00498) and David Page's "How to train your ResNet" (2018).

Both show that for a fixed, small compute budget a shallow, wide VGG-like net beats a deep
ResNet: a 3x3 stem, then three groups of [conv 3x3 -> max-pool 2 -> BN -> GELU -> conv 3x3 ->
BN -> GELU], global max pooling and a bias-free linear classifier. The map sizes are 28, 14, 7, 3
for Fashion-MNIST. Trained with label smoothing, flip + translate augmentation, Nesterov SGD and
a one-cycle schedule it is the network of the ``fmnist-fast`` / ``fmnist-best`` recipes.

Deviations from airbench: no whitening stem (a learned 3x3 conv instead), no residual inside the
groups, no logit scaling; widths are smaller (the budget is a 2-core CPU, not an A100).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.models.base import ConvNet
from cnnlab.models.registry import ModelInfo, register_model

# name -> (stem width, group widths)
FASTNET_CFGS: dict[str, tuple[int, tuple[int, int, int]]] = {
    "fastnet_s": (24, (32, 64, 128)),
    "fastnet_m": (32, (64, 128, 256)),
}


def conv_bn(in_chs: int, out_chs: int, pool: bool = False) -> nn.Sequential:
    """conv 3x3 (no bias: BN follows) [-> max-pool 2] -> BN -> GELU."""
    layers = [nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(out_chs), nn.GELU()]
    return nn.Sequential(*layers)


class ConvGroup(nn.Sequential):
    """airbench's group: conv + pool (halves the map) then a second conv at the new size."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__(conv_bn(in_chs, out_chs, pool=True), conv_bn(out_chs, out_chs))


class FastNet(ConvNet):
    classifier_name = "fc"

    def __init__(self, stem_width: int, widths: tuple[int, ...], num_classes: int = 10,
                 in_chans: int = 1, input_size: int = 28, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = conv_bn(in_chans, stem_width)  # (B, w0, H, W)
        groups, in_chs = [], stem_width
        for width in widths:
            groups.append(ConvGroup(in_chs, width))  # (B, width, H/2^i, W/2^i)
            in_chs = width
        self.layer1, self.layer2, self.layer3 = groups
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_chs, num_classes, bias=False)
        self.num_features = in_chs
        self.feature_info = [dict(module=f"stage{i + 1}", num_chs=w, reduction=2 ** (i + 1))
                             for i, w in enumerate(widths)]
        self.input_size = input_size

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, w0, 28, 28)
        x = self.layer1(x)  # (B, w1, 14, 14)
        x = self.layer2(x)  # (B, w2, 7, 7)
        return self.layer3(x)  # (B, w3, 3, 3)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x).flatten(1))  # (B, w3)
        return x if pre_logits else self.fc(x)

    def stages(self) -> OrderedDict[str, nn.Module]:
        return OrderedDict(stem=self.stem, stage1=self.layer1, stage2=self.layer2,
                           stage3=self.layer3, head=self.fc)


def _param_count(stem: int, widths: tuple[int, ...], in_chans: int = 1, num_classes: int = 10) -> int:
    """9 C_in C_out per conv + 2 C per BN (scale and shift) + C_last K for the classifier."""
    count = 9 * in_chans * stem + 2 * stem
    in_chs = stem
    for w in widths:
        count += 9 * in_chs * w + 9 * w * w + 4 * w
        in_chs = w
    return count + in_chs * num_classes


def _info(name: str) -> ModelInfo:
    stem, widths = FASTNET_CFGS[name]
    return ModelInfo(
        name=name, family="fastnet",
        paper="Jordan, 94% on CIFAR-10 in 3.29 Seconds on a Single GPU (airbench); after Page, "
              "How to train your ResNet (2018)",
        year=2024, input_size=(1, 28, 28), num_classes=10, params=_param_count(stem, widths),
        url="https://arxiv.org/abs/2404.00498", first_conv="stem.0",
        deviations=("3x3 learned stem instead of the frozen whitening conv",
                    "no logit scaling; widths sized for a 2-core CPU"),
        small_input="designed for 28x28/32x32; three 2x2 pools (28 -> 3, 32 -> 4), needs >= 8x8",
        extra=dict(stem_width=stem, widths=widths))


def _create(name: str, **kwargs) -> FastNet:
    stem, widths = FASTNET_CFGS[name]
    return FastNet(stem, widths, **kwargs)


@register_model(_info("fastnet_s"))
def fastnet_s(**kwargs) -> FastNet:
    return _create("fastnet_s", **kwargs)


@register_model(_info("fastnet_m"))
def fastnet_m(**kwargs) -> FastNet:
    return _create("fastnet_m", **kwargs)
