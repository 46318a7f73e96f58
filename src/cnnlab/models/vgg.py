"""VGG — Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015. https://arxiv.org/abs/1409.1556

Table 1 of the paper: stacks of 3x3 convolutions (stride 1, padding 1, ReLU) separated by 2x2/2
max-pooling, then FC-4096, FC-4096 (dropout 0.5 after each) and FC-1000. Configurations are keyed
by the paper's letters (A = VGG-11, B = VGG-13, D = VGG-16, E = VGG-19); numbers are conv widths,
"M" a max-pool. Module names are torchvision's (``features``, ``avgpool``, ``classifier``) so its
state dicts load directly; ``_bn`` variants put BatchNorm after every convolution (torchvision).

Deviations from the paper:
* An adaptive average pool sized to the map the model is built for sits before the classifier
  (identity at 224: a 7x7 map), as torchvision does; the first FC layer is sized from that map.
* Small images (input_size < 32): the max-pools round up (``ceil_mode``, Caffe's rounding, in which
  VGG was trained), so 28x28 ends in a 1x1 map instead of vanishing at the fifth pool.
* The LRN configuration A-LRN and configuration C (with 1x1 convolutions) are not registered.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.models.base import ConvNet, explain_shape_errors, image_size, meta_output_shape
from cnnlab.models.registry import ModelInfo, register_model

# Table 1 of the paper: conv widths per configuration; "M" = 2x2/2 max-pool.
CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}
SMALL_INPUT = 32  # 2**5: below this size the five halvings need rounding up


def make_layers(cfg: list[int | str], in_chans: int, batch_norm: bool, ceil_mode: bool
                ) -> tuple[nn.Sequential, list[int]]:
    """``features`` for one configuration, and the index of each block's max-pool."""
    layers: list[nn.Module] = []
    pool_at: list[int] = []
    in_chs = in_chans
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil_mode))
            pool_at.append(len(layers) - 1)
            continue
        layers.append(nn.Conv2d(in_chs, int(v), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU(inplace=True))
        in_chs = int(v)
    return nn.Sequential(*layers), pool_at


class VGG(ConvNet):
    """VGG-11/13/16/19 (configurations A/B/D/E), optionally with BatchNorm."""

    classifier_name = "classifier.6"

    def __init__(self, cfg: str = "D", batch_norm: bool = False, num_classes: int = 1000,
                 in_chans: int = 3, input_size: int | tuple[int, ...] = 224,
                 dropout: float = 0.5, name: str = "vgg") -> None:
        super().__init__()
        size = image_size(input_size)
        self.num_classes = num_classes
        self.features, self._pool_at = make_layers(CFGS[cfg], in_chans, batch_norm,
                                                   ceil_mode=min(size) < SMALL_INPUT)
        map_hw = meta_output_shape(self.features, (1, in_chans, *size), prefix="features.",
                                   name=name)[-2:]
        self.avgpool = nn.AdaptiveAvgPool2d(map_hw)  # (B, 512, 7, 7) at 224
        self.classifier = nn.Sequential(
            nn.Linear(512 * map_hw[0] * map_hw[1], 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        self.num_features, self.head_hidden_size = 512, 4096  # last conv maps; FC-4096 units
        widths = [v for v in CFGS[cfg] if v != "M"]
        block_widths = [widths[i] for i, v in enumerate(_block_ends(CFGS[cfg])) if v]
        self.feature_info = [dict(module="stem" if i == 0 else f"stage{i}", num_chs=c,
                                  reduction=2 ** (i + 1)) for i, c in enumerate(block_widths)]
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation: Kaiming-normal (fan_out) convs, N(0, 0.01) linears."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    @explain_shape_errors
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 512, 7, 7) at 224

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (B, 25088) at 224
        x = self.classifier[:6](x)  # FC-4096, FC-4096: (B, 4096)
        return x if pre_logits else self.classifier[6](x)  # (B, num_classes)

    def stages(self) -> OrderedDict[str, nn.Module]:
        """The five conv blocks, each ending at its max-pool: stem, stage1..stage4, head."""
        out: OrderedDict[str, nn.Module] = OrderedDict()
        start = 0
        for i, end in enumerate(self._pool_at):
            out["stem" if i == 0 else f"stage{i}"] = self.features[start:end + 1]
            start = end + 1
        out["head"] = nn.ModuleList([self.avgpool, self.classifier])
        return out


def _block_ends(cfg: list[int | str]) -> list[bool]:
    """For each conv of ``cfg``, whether it is the last one before a max-pool."""
    convs = [i for i, v in enumerate(cfg) if v != "M"]
    return [i + 1 < len(cfg) and cfg[i + 1] == "M" for i in convs]


_PAPER = "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition"
_URL = "https://arxiv.org/abs/1409.1556"
_SMALL = (f"input_size < {SMALL_INPUT}: max-pools round up (ceil_mode) so 28x28 gives 1x1; at "
          "every size the first FC layer is sized from the real last map "
          "(7x7 at 224, 1x1 at 32 and 28)")
_BN_DEV = ("BatchNorm after every convolution (torchvision's _bn variant; not in the 2014 paper)",)


def _info(name: str, cfg: str, params: int, gmacs: float, bn: bool) -> ModelInfo:
    return ModelInfo(
        name=name, family="vgg", paper=_PAPER, year=2015,
        input_size=(3, 224, 224), num_classes=1000, params=params,
        macs=round(gmacs * 1e9),  # torchvision VGG*_Weights _ops in GFLOPS (which are MACs)
        url=_URL, first_conv="features.0",
        deviations=("adaptive average pool before the classifier (identity at 224), as torchvision",
                    *(_BN_DEV if bn else ())),
        small_input=_SMALL,
        extra=dict(config=cfg, weight_layers=sum(v != "M" for v in CFGS[cfg]) + 3),
    )


def _vgg(cfg: str, bn: bool, name: str, **kwargs) -> VGG:
    return VGG(cfg=cfg, batch_norm=bn, name=name, **kwargs)


@register_model(_info("vgg11", "A", 132_863_336, 7.609, False))
def vgg11(**kwargs) -> VGG:
    return _vgg("A", False, "vgg11", **kwargs)


@register_model(_info("vgg11_bn", "A", 132_868_840, 7.609, True))
def vgg11_bn(**kwargs) -> VGG:
    return _vgg("A", True, "vgg11_bn", **kwargs)


@register_model(_info("vgg13", "B", 133_047_848, 11.308, False))
def vgg13(**kwargs) -> VGG:
    return _vgg("B", False, "vgg13", **kwargs)


@register_model(_info("vgg13_bn", "B", 133_053_736, 11.308, True))
def vgg13_bn(**kwargs) -> VGG:
    return _vgg("B", True, "vgg13_bn", **kwargs)


@register_model(_info("vgg16", "D", 138_357_544, 15.47, False))
def vgg16(**kwargs) -> VGG:
    return _vgg("D", False, "vgg16", **kwargs)


@register_model(_info("vgg16_bn", "D", 138_365_992, 15.47, True))
def vgg16_bn(**kwargs) -> VGG:
    return _vgg("D", True, "vgg16_bn", **kwargs)


@register_model(_info("vgg19", "E", 143_667_240, 19.632, False))
def vgg19(**kwargs) -> VGG:
    return _vgg("E", False, "vgg19", **kwargs)


@register_model(_info("vgg19_bn", "E", 143_678_248, 19.632, True))
def vgg19_bn(**kwargs) -> VGG:
    return _vgg("E", True, "vgg19_bn", **kwargs)
