"""AlexNet — Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NIPS 2012. https://papers.nips.cc/paper/4824

The paper's network (Sec. 3, Fig. 2): five convolutions 96-256-384-384-256, the two-GPU split
expressed as ``groups=2`` on conv2, conv4 and conv5 (each half sees only its own GPU's maps;
conv3 and the fully connected layers talk across GPUs), ReLU everywhere, local response
normalisation after the ReLUs of conv1 and conv2, overlapping 3x3/2 max-pooling after both LRNs
and after conv5, then 4096-4096 fully connected layers with dropout 0.5 and the classifier.

Local response normalisation (Sec. 3.3), summed over n = 5 adjacent channels::

    b[i] = a[i] / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a[j]^2) ** beta,
    k = 2, n = 5, alpha = 1e-4, beta = 0.75.

``nn.LocalResponseNorm`` divides alpha by n, so the paper's alpha is passed as 5 * 1e-4 = 5e-4.

Deviations from the paper:
* Input 227x227, not the "224x224" of the text: (224 - 11) / 4 + 1 is not an integer, while 227
  gives the 55x55 maps of Fig. 2.
* The pool before the classifier is adaptive to the map size the model was built for (6x6 at
  227), as torchvision does; at the default size it is the identity.
* Small images (input_size < 64): conv1 runs with stride 1 and padding 5 ("same"), so 32x32 gives
  32 -> 15 -> 7 -> 3 maps; the first classifier layer is sized from the real last map.

``alexnet_tv`` is torchvision's one-GPU variant ("One weird trick", Krizhevsky 2014):
64-192-384-256-256 convolutions, no LRN, no groups, padding 2 on conv1, 224x224 input.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.models.base import ConvNet, explain_shape_errors, image_size, meta_output_shape
from cnnlab.models.registry import ModelInfo, register_model

SMALL_INPUT = 64  # below this input size the small-input stem rule applies (torchvision: min 63)


def _lrn() -> nn.LocalResponseNorm:
    """The paper's LRN (k=2, n=5, alpha=1e-4, beta=0.75); torch divides alpha by n."""
    return nn.LocalResponseNorm(size=5, alpha=5 * 1e-4, beta=0.75, k=2.0)


class AlexNet(ConvNet):
    """AlexNet: ``features`` (convolutions), ``avgpool``, ``classifier`` — torchvision's names.

    ``paper=True`` builds the 2012 network (groups, LRN); ``paper=False`` torchvision's variant.
    """

    classifier_name = "classifier.6"

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, input_size: int | None = None,
                 paper: bool = True, dropout: float = 0.5) -> None:
        super().__init__()
        size = image_size(input_size or (227 if paper else 224))
        small = min(size) < SMALL_INPUT
        self.num_classes = num_classes
        if paper:  # (name, conv out, kernel, stride, padding, groups, LRN, max-pool after)
            widths, groups, lrn, pad1 = (96, 256, 384, 384, 256), (1, 2, 1, 2, 2), True, 0
        else:
            widths, groups, lrn, pad1 = (64, 192, 384, 256, 256), (1,) * 5, False, 2
        kernels, pads = (11, 5, 3, 3, 3), (5 if small else pad1, 2, 1, 1, 1)
        strides, pools = (1 if small else 4, 1, 1, 1, 1), (True, True, False, False, True)
        layers: list[nn.Module] = []
        self._stage_of: list[int] = []  # stage index of each features entry
        in_chs = in_chans
        for i, out_chs in enumerate(widths):
            block = [nn.Conv2d(in_chs, out_chs, kernels[i], strides[i], pads[i], groups=groups[i]),
                     nn.ReLU(inplace=True)]
            if lrn and i < 2:
                block.append(_lrn())
            if pools[i]:
                block.append(nn.MaxPool2d(kernel_size=3, stride=2))  # overlapping pool
            layers += block
            self._stage_of += [min(i, 3)] * len(block)
            in_chs = out_chs
        self.features = nn.Sequential(*layers)  # (B, 256, 6, 6) at the default size
        map_hw = meta_output_shape(self.features, (1, in_chans, *size), prefix="features.",
                                   name="alexnet" if paper else "alexnet_tv")[-2:]
        self.avgpool = nn.AdaptiveAvgPool2d(map_hw)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(in_chs * map_hw[0] * map_hw[1], 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )
        self.num_features, self.head_hidden_size = in_chs, 4096  # conv5 maps; fc7 units
        self.feature_info = [
            dict(module="stem", num_chs=widths[0], reduction=(1 if small else 4) * 2),
            dict(module="stage1", num_chs=widths[1], reduction=(1 if small else 4) * 4),
            dict(module="stage2", num_chs=widths[2], reduction=(1 if small else 4) * 4),
            dict(module="stage3", num_chs=widths[4], reduction=(1 if small else 4) * 8),
        ]

    @explain_shape_errors
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 256, 6, 6)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (B, 9216)
        x = self.classifier[:6](x)  # fc6, fc7 with dropout: (B, 4096)
        return x if pre_logits else self.classifier[6](x)  # (B, num_classes)

    def stages(self) -> OrderedDict[str, nn.Module]:
        parts = [nn.ModuleList() for _ in range(4)]
        for stage, module in zip(self._stage_of, self.features, strict=True):
            parts[stage].append(module)
        return OrderedDict(stem=parts[0], stage1=parts[1], stage2=parts[2], stage3=parts[3],
                           head=nn.ModuleList([self.avgpool, self.classifier]))


_PAPER = ("Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep Convolutional "
          "Neural Networks")
_URL = "https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks"
_SMALL = (f"input_size < {SMALL_INPUT}: conv1 uses stride 1 and padding 5 (a 'same' 11x11) and "
          "the first fully connected layer is sized from the real last map (3x3 at 32, 2x2 at 28)")


@register_model(ModelInfo(
    name="alexnet", family="alexnet", paper=_PAPER, year=2012, input_size=(3, 227, 227),
    num_classes=1000, params=60_965_224,
    macs=724_406_816,  # exact conv/linear multiply-adds at 227x227 (no bias), counted by us
    url=_URL, first_conv="features.0",
    deviations=("227x227 input instead of the text's 224x224 (224 does not give 55x55 maps)",
                "one device: the two-GPU split is groups=2 on conv2, conv4 and conv5",
                "adaptive average pool (identity at 227) before the classifier, as torchvision"),
    small_input=_SMALL,
    extra=dict(lrn=dict(k=2, n=5, alpha=1e-4, beta=0.75, torch_alpha=5e-4)),
))
def alexnet(**kwargs) -> AlexNet:
    return AlexNet(paper=True, **kwargs)


@register_model(ModelInfo(
    name="alexnet_tv", family="alexnet", paper=_PAPER, year=2014, input_size=(3, 224, 224),
    num_classes=1000, params=61_100_840,
    macs=714_000_000,  # torchvision AlexNet_Weights _ops = 0.714 GFLOPS (its GFLOPS are MACs)
    url="https://arxiv.org/abs/1404.5997", first_conv="features.0",
    deviations=("torchvision's one-GPU variant from 'One weird trick' (2014): 64-192-384-256-256 "
                "convolutions, no LRN, no groups, conv1 padding 2, 224x224 input",),
    small_input=_SMALL,
))
def alexnet_tv(**kwargs) -> AlexNet:
    return AlexNet(paper=False, **kwargs)
