"""Inception v2 / BN-Inception — Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift", ICML 2015. https://arxiv.org/abs/1502.03167

The network of the paper's Figure 5 (appendix): GoogLeNet with every 5x5 convolution factorised
into two 3x3 convolutions ("double 3x3"), BatchNorm before every ReLU, average or max pooling in
the pool branch, and two stride-2 modules (3c, 4e) that replace the max-pools between stages:
their 3x3 and double-3x3 branches end in stride 2 and their pool branch is a 3x3/2 max-pool
passed through without projection. No fully connected layer except the classifier.

``BN_INCEPTION_CFG`` is Figure 5 as data: (#1x1, #3x3 reduce, #3x3, double #3x3 reduce,
double #3x3, pool type, pool proj, stride).

Deviations / notes:
* Figure 5 lists 576 output channels for 4c and 4d and 1024 for 4e, but its own branch widths
  add up to 160+160+160+128 = 608 (4c), 96+192+192+128 = 608 (4d) and 192+256+608 = 1056 (4e);
  the branch widths are followed here (as the released BN-Inception models do), so 5a sees 1056.
* Convolutions have no bias: BatchNorm's beta subsumes it (Sec. 3.2 of the paper).
* The paper's first convolution is depthwise separable (multiplier 8); here it is an ordinary
  7x7/2 convolution, as in the released BN-Inception models.
* No auxiliary classifiers (Figure 5 lists none); stem max-pools round up (``ceil_mode``);
  pools in 3c/4e use padding 1 so their output always matches the stride-2 convolutions.
* Small images (input_size < 64): conv1 uses stride 1 (the small-input stem).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.models.base import ConvNet, explain_shape_errors, image_size
from cnnlab.models.registry import ModelInfo, register_model

# Figure 5: name -> (#1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool, proj, stride)
BN_INCEPTION_CFG: dict[str, tuple] = {
    "3a": (64, 64, 64, 64, 96, "avg", 32, 1),  # 28x28x256
    "3b": (64, 64, 96, 64, 96, "avg", 64, 1),  # 28x28x320
    "3c": (0, 128, 160, 64, 96, "max", 0, 2),  # 14x14x576 (pool passed through)
    "4a": (224, 64, 96, 96, 128, "avg", 128, 1),  # 14x14x576
    "4b": (192, 96, 128, 96, 128, "avg", 128, 1),  # 14x14x576
    "4c": (160, 128, 160, 128, 160, "avg", 128, 1),  # 14x14x608 (Figure 5 says 576)
    "4d": (96, 128, 192, 160, 192, "avg", 128, 1),  # 14x14x608 (Figure 5 says 576)
    "4e": (0, 128, 192, 192, 256, "max", 0, 2),  # 7x7x1056 (Figure 5 says 1024)
    "5a": (352, 192, 320, 160, 224, "avg", 128, 1),  # 7x7x1024
    "5b": (352, 192, 320, 192, 224, "max", 128, 1),  # 7x7x1024
}
SMALL_INPUT = 64


def conv_bn(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1,
           padding: int = 0) -> nn.Sequential:
    """conv (no bias) -> BN -> ReLU: BN applied to the input of each nonlinearity."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=False),
        bn=nn.BatchNorm2d(out_chs), relu=nn.ReLU(inplace=True)))


class InceptionV2(nn.Module):
    """Branches: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3; pool (-> 1x1 proj). Concatenated."""

    def __init__(self, in_chs: int, cfg: tuple) -> None:
        super().__init__()
        c1, c3r, c3, d3r, d3, pool, proj, stride = cfg
        self.branch1 = conv_bn(in_chs, c1, 1) if c1 else None
        self.branch2 = nn.Sequential(conv_bn(in_chs, c3r, 1), conv_bn(c3r, c3, 3, stride, 1))
        self.branch3 = nn.Sequential(conv_bn(in_chs, d3r, 1), conv_bn(d3r, d3, 3, 1, 1),
                                     conv_bn(d3, d3, 3, stride, 1))
        # padding 1: the pool's output size always equals the (stride-2) convolutions'
        pool_layer = nn.AvgPool2d(3, 1, 1) if pool == "avg" else nn.MaxPool2d(3, stride, 1)
        self.branch4 = nn.Sequential(pool_layer, *([conv_bn(in_chs, proj, 1)] if proj else []))
        self.out_chs = c1 + c3 + d3 + (proj or in_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.branch1(x)] if self.branch1 is not None else []
        outs += [self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(outs, 1)  # (B, out_chs, H / stride, W / stride)


class BNInception(ConvNet):
    """Inception v2 (BN-Inception), Figure 5 of Ioffe & Szegedy (2015)."""

    classifier_name = "fc"

    def __init__(self, num_classes: int = 1000, in_chans: int = 3,
                 input_size: int | tuple[int, ...] = 224, dropout: float = 0.0) -> None:
        super().__init__()
        size = min(image_size(input_size))
        small = size < SMALL_INPUT
        self.num_classes = num_classes
        self.stem = nn.Sequential(OrderedDict(
            conv1=conv_bn(in_chans, 64, 7, 1 if small else 2, 3),  # (B, 64, 112, 112)
            pool1=nn.MaxPool2d(3, 2, ceil_mode=True),  # (B, 64, 56, 56)
            conv2_reduce=conv_bn(64, 64, 1),
            conv2=conv_bn(64, 192, 3, 1, 1),  # (B, 192, 56, 56)
            pool2=nn.MaxPool2d(3, 2, ceil_mode=True),  # (B, 192, 28, 28)
        ))
        stages: list[nn.Sequential] = [nn.Sequential(), nn.Sequential(), nn.Sequential()]
        in_chs = 192
        for name, cfg in BN_INCEPTION_CFG.items():
            block = InceptionV2(in_chs, cfg)
            stages[int(name[0]) - 3].add_module(f"inception{name}", block)
            in_chs = block.out_chs
        self.stage1, self.stage2, self.stage3 = stages  # 28x28x576 -> 14x14x1056 -> 7x7x1024
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # the paper's 7x7 average pool at 224
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        self.num_features = 1024
        r = 1 if small else 2
        self.feature_info = [dict(module="stem", num_chs=192, reduction=4 * r),
                             dict(module="stage1", num_chs=576, reduction=8 * r),
                             dict(module="stage2", num_chs=1056, reduction=16 * r),
                             dict(module="stage3", num_chs=1024, reduction=16 * r)]

    @explain_shape_errors
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 192, 28, 28)
        return self.stage3(self.stage2(self.stage1(x)))  # (B, 1024, 7, 7)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(torch.flatten(self.avgpool(x), 1))  # (B, 1024)
        return x if pre_logits else self.fc(x)  # (B, num_classes)

    def stages(self) -> OrderedDict[str, nn.Module]:
        return OrderedDict(stem=self.stem, stage1=self.stage1, stage2=self.stage2,
                           stage3=self.stage3,
                           head=nn.ModuleList([self.avgpool, self.dropout, self.fc]))


@register_model(ModelInfo(
    name="inception_v2", family="googlenet",
    paper="Ioffe & Szegedy, Batch Normalization: Accelerating Deep Network Training by Reducing "
          "Internal Covariate Shift", year=2015, input_size=(3, 224, 224), num_classes=1000,
    params=11_285_224,
    macs=2_032_600_064,  # exact multiply-adds at 224 (no bias), counted by us
    url="https://arxiv.org/abs/1502.03167", first_conv="stem.conv1.conv",
    deviations=("branch widths of Figure 5 followed where its listed outputs disagree: 4c and "
                "4d give 608 channels (listed 576) and 4e 1056 (listed 1024)",
                "ordinary 7x7/2 first convolution instead of a depthwise separable one",
                "convolutions without bias (BatchNorm's beta subsumes it)",
                "no auxiliary classifiers; adaptive final average pool (7x7 at 224)"),
    small_input=f"input_size < {SMALL_INPUT}: conv1 uses stride 1 (small-input stem)",
    extra=dict(aliases=("bn_inception",)),
))
def inception_v2(**kwargs) -> BNInception:
    return BNInception(**kwargs)

