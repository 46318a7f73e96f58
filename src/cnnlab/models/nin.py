"""Network in Network — Lin, Chen & Yan, "Network In Network", ICLR 2014. arXiv:1312.4400

An *mlpconv* layer (Sec. 3.1) is a convolution followed by a small multilayer perceptron applied
at every position, i.e. two 1x1 convolutions ("cascaded cross channel parametric pooling",
cccp), each with ReLU. The network stacks mlpconv layers separated by pooling, with dropout on
the outputs of all but the last mlpconv layer, and replaces the fully connected classifier by
*global average pooling* (Sec. 3.2): the last mlpconv emits one map per class and each map is
averaged into that class's score.

``nin`` is the paper's CIFAR-10 network (Sec. 4.2; widths from the authors' released
configuration): 192@5x5 - 160 - 96, max-pool 3/2, dropout; 192@5x5 - 192 - 192, avg-pool 3/2,
dropout; 192@3x3 - 192 - classes, global average pool. 966,986 parameters with 10 classes.
``nin_imagenet`` is the authors' ImageNet network from the Caffe model zoo (the paper reports
its result without the table): 96@11x11/4 - 96 - 96, 256@5x5 - 256 - 256, 384@3x3 - 384 - 384
(max-pools 3/2 between), dropout, 1024@3x3 - 1024 - classes, global average pool.

Deviations from the released configurations:
* Caffe's pools round up; here the CIFAR pools use padding 1 (same 16 -> 8 sizes at 32x32) and
  the ImageNet pools ``ceil_mode=True``.
* Global average pooling is ``AdaptiveAvgPool2d(1)``, so any input size is accepted.
* ``nin_imagenet`` on small images (input_size < 64): conv1 uses stride 1 and padding 5.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.models.base import ConvNet, explain_shape_errors, image_size
from cnnlab.models.registry import ModelInfo, register_model

# (conv width, kernel, stride, padding, cccp widths, pool after: "max"/"avg"/None, dropout after)
CIFAR_CFG = (
    (192, 5, 1, 2, (160, 96), "max", True),
    (192, 5, 1, 2, (192, 192), "avg", True),
    (192, 3, 1, 1, (192, None), None, False),  # None: the class maps (num_classes)
)
IMAGENET_CFG = (
    (96, 11, 4, 0, (96, 96), "max", False),
    (256, 5, 1, 2, (256, 256), "max", False),
    (384, 3, 1, 1, (384, 384), "max", True),
    (1024, 3, 1, 1, (1024, None), None, False),
)


def mlpconv(in_chs: int, out_chs: int, kernel: int, stride: int, padding: int,
            mlp: tuple[int, int]) -> nn.Sequential:
    """conv(k x k) -> ReLU -> 1x1 conv -> ReLU -> 1x1 conv -> ReLU (Lin et al., Eq. 2)."""
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, kernel, stride, padding), nn.ReLU(inplace=True),
        nn.Conv2d(out_chs, mlp[0], 1), nn.ReLU(inplace=True),
        nn.Conv2d(mlp[0], mlp[1], 1), nn.ReLU(inplace=True),
    )


class NiN(ConvNet):
    """Network in Network: ``blocks`` of mlpconv (+ pool, dropout), class maps, GAP.

    The last 1x1 convolution (``blocks.<last>.4``) is the classifier; ``num_features`` counts
    the channels entering it. ``forward_features`` stops before it, ``forward_head`` applies it,
    its ReLU (as released) and the global average; ``pre_logits=True`` returns the globally
    averaged features (B, num_features) instead.
    """

    def __init__(self, cfg: tuple = CIFAR_CFG, num_classes: int = 10, in_chans: int = 3,
                 input_size: int | tuple[int, ...] = 32, dropout: float = 0.5,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        size = min(image_size(input_size))
        self.num_classes = num_classes
        blocks: list[nn.Module] = []
        in_chs, reduction, self.feature_info = in_chans, 1, []
        for i, (width, kernel, stride, pad, mlp, pool, drop) in enumerate(cfg):
            if i == 0 and kernel == 11 and size < 64:  # small-input stem: a "same" conv1
                stride, pad = 1, kernel // 2
            layers = [mlpconv(in_chs, width, kernel, stride, pad, (mlp[0], mlp[1] or num_classes))]
            reduction *= stride
            if pool == "max":
                pad = 0 if ceil_mode else 1
                layers.append(nn.MaxPool2d(3, 2, padding=pad, ceil_mode=ceil_mode))
            elif pool == "avg":
                layers.append(nn.AvgPool2d(3, 2, padding=1))
            reduction *= 2 if pool else 1
            if drop:
                layers.append(nn.Dropout(dropout))
            blocks.append(nn.Sequential(*layers))
            in_chs = mlp[1] or mlp[0]
            self.feature_info.append(dict(module="stem" if i == 0 else f"stage{i}",
                                          num_chs=mlp[1] or mlp[0], reduction=reduction))
        self.blocks = nn.Sequential(*blocks)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_chs
        self.classifier_name = f"blocks.{len(blocks) - 1}.0.4"

    @explain_shape_errors
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        last = self.blocks[-1][0]
        x = self.blocks[:-1](x)  # (B, 192, 8, 8) for CIFAR at 32
        return last[:4](x)  # conv + first cccp of the last mlpconv: (B, num_features, H, W)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return torch.flatten(self.global_pool(x), 1)  # (B, num_features)
        x = self.blocks[-1][0][5](self.blocks[-1][0][4](x))  # class maps + ReLU: (B, K, H, W)
        return torch.flatten(self.global_pool(x), 1)  # global average pooling: (B, K)

    def stages(self) -> OrderedDict[str, nn.Module]:
        names = ["stem"] + [f"stage{i}" for i in range(1, len(self.blocks))]
        out = OrderedDict(zip(names, self.blocks[:-1], strict=False))
        last = self.blocks[-1][0]
        out[names[len(self.blocks) - 1]] = last[:4]
        out["head"] = nn.ModuleList([last[4], last[5], self.global_pool])
        return out


_PAPER = "Lin, Chen & Yan, Network In Network"
_URL = "https://arxiv.org/abs/1312.4400"


@register_model(ModelInfo(
    name="nin", family="nin", paper=_PAPER, year=2014, input_size=(3, 32, 32), num_classes=10,
    params=966_986,
    macs=222_486_528,  # exact conv multiply-adds at 32x32 (no bias), counted by us
    url=_URL, first_conv="blocks.0.0.0",
    deviations=("pools use padding 1 where Caffe rounds up (same map sizes at 32x32)",
                "global average pooling is adaptive (any input size)"),
    small_input="none needed: 28x28 gives 14 -> 7 maps, 32x32 gives 16 -> 8",
    extra=dict(dataset="CIFAR-10", config="authors' released cifar10 NiN (gist mavenlin)"),
))
def nin(**kwargs) -> NiN:
    return NiN(CIFAR_CFG, **kwargs)


@register_model(ModelInfo(
    name="nin_imagenet", family="nin", paper=_PAPER, year=2014, input_size=(3, 224, 224),
    num_classes=1000, params=7_595_176,
    macs=1_100_188_800,  # exact conv multiply-adds at 224x224 (no bias), counted by us
    url=_URL, first_conv="blocks.0.0.0",
    deviations=("ImageNet configuration from the authors' Caffe model zoo entry, not a paper "
                "table", "global average pooling is adaptive (any input size)"),
    small_input="input_size < 64: conv1 uses stride 1 and padding 5 (a 'same' 11x11)",
    extra=dict(dataset="ImageNet", config="Caffe model zoo nin_imagenet"),
))
def nin_imagenet(**kwargs) -> NiN:
    kwargs.setdefault("num_classes", 1000)
    kwargs.setdefault("input_size", 224)
    return NiN(IMAGENET_CFG, ceil_mode=True, **kwargs)
