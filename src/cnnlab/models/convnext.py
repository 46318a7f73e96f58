"""ConvNeXt — Liu, Mao, Wu, Feichtenhofer, Darrell & Xie, "A ConvNet for the 2020s", CVPR 2022.
arXiv:2201.03545.

A ResNet modernised step by step toward a Swin Transformer (Sec. 2): a 4x4 stride-4 "patchify"
stem with LayerNorm; four stages of (3, 3, 9, 3) or (3, 3, 27, 3) blocks; between stages a
LayerNorm and a 2x2 stride-2 convolution. One block (Fig. 4):

    y = x + drop_path(gamma * Linear(GELU(Linear(LN(dwconv7x7(x))))))   (inverted bottleneck, 4x)

with layer scale gamma initialised to 1e-6 and stochastic depth rising linearly with block index
from 0 to ``drop_path_rate`` (0.1/0.4/0.5/0.5 for T/S/B/L, the paper's ImageNet-1K settings).
Weights: truncated normal, std 0.02; biases zero.

Module names and layout are torchvision's (``features``, ``classifier``; ``features.1.0.block``),
so its weights load directly. Deviation from the paper: images smaller than 64x64 get a 2x2
stride-2 patchify stem instead of 4x4 stride 4 (output stride 16 instead of 32), so 28x28 inputs
keep a map of at least 1x1 after the last downsampling (pass ``stem="imagenet"`` to keep 4x4).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import ConvNet, explain_shape_errors, image_size
from cnnlab.models.registry import ModelInfo, register_model

# Sec. 3 of the paper: (depths, channels) per variant.
CONVNEXT_CFGS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
}
DROP_PATH_RATES = {"tiny": 0.1, "small": 0.4, "base": 0.5, "large": 0.5}
SMALL_INPUT_BELOW = 64


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


class CNBlock(nn.Module):
    """dwconv 7x7 -> LN -> Linear(4C) -> GELU -> Linear(C), times layer scale, plus the input."""

    def __init__(self, dim: int, layer_scale: float, drop_path: float) -> None:
        # Imported here, not at module level: torchvision costs ~1.5 s to import, which every
        # `cnnlab` command would otherwise pay whether or not it builds a ConvNeXt.
        from torchvision.ops import Permute, StochasticDepth

        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim),  # depthwise, (B, C, H, W)
            Permute([0, 2, 3, 1]),  # (B, H, W, C)
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),  # inverted bottleneck: a 1x1 conv as a Linear
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),  # (B, C, H, W)
        )
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), layer_scale))
        self.stochastic_depth = StochasticDepth(drop_path, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.stochastic_depth(self.layer_scale * self.block(x))


class ConvNeXt(ConvNet):
    """``features`` = [stem, stage1, down, stage2, down, stage3, down, stage4]; ``avgpool``;
    ``classifier`` = [LayerNorm2d, Flatten, Linear] (torchvision's layout)."""

    classifier_name = "classifier.2"

    def __init__(self, depths: tuple[int, ...], dims: tuple[int, ...], num_classes: int = 1000,
                 in_chans: int = 3, input_size: int | tuple = 224, drop_path_rate: float = 0.0,
                 layer_scale: float = 1e-6, stem: str | None = None) -> None:
        super().__init__()
        size = min(image_size(input_size))
        stem = stem or ("small" if size < SMALL_INPUT_BELOW else "imagenet")
        if stem not in ("imagenet", "small"):
            raise ConfigError(f"stem must be 'imagenet' or 'small', got {stem!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        patch = 4 if stem == "imagenet" else 2
        self.num_classes = num_classes
        norm = partial(LayerNorm2d, eps=1e-6)
        layers: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(in_chans, dims[0], patch, stride=patch), norm(dims[0]))]  # (B, C0, H/4, W/4)
        total, block_id = sum(depths), 0
        reduction = patch
        self.feature_info = []
        for i, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            blocks = []
            for _ in range(depth):
                # stochastic depth rises linearly from 0 to drop_path_rate (torchvision's rule)
                blocks.append(CNBlock(dim, layer_scale, drop_path_rate * block_id / (total - 1.0)))
                block_id += 1
            layers.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(module=f"stage{i + 1}", num_chs=dim, reduction=reduction))
            if i + 1 < len(depths):  # downsampling layer: LN, then 2x2 stride-2 conv
                layers.append(nn.Sequential(norm(dim), nn.Conv2d(dim, dims[i + 1], 2, stride=2)))
                reduction *= 2
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(norm(dims[-1]), nn.Flatten(1),
                                        nn.Linear(dims[-1], num_classes))
        self.num_features = dims[-1]
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    @explain_shape_errors
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C3, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.classifier[1](self.classifier[0](self.avgpool(x)))  # (B, C3)
        return x if pre_logits else self.classifier[2](x)  # (B, num_classes)

    def stages(self) -> OrderedDict[str, nn.Module]:
        f = self.features
        out = OrderedDict(stem=f[0], stage1=f[1])
        for i in range(1, (len(f) - 1) // 2 + 1):  # each later stage owns its downsampling layer
            out[f"stage{i + 1}"] = nn.ModuleList([f[2 * i], f[2 * i + 1]])
        out["head"] = nn.ModuleList([self.avgpool, self.classifier])
        return out


def _create_convnext(variant: str, **kwargs) -> ConvNeXt:
    depths, dims = CONVNEXT_CFGS[variant]
    kwargs.setdefault("drop_path_rate", DROP_PATH_RATES[variant])
    return ConvNeXt(depths, dims, **kwargs)


_PAPER = "Liu, Mao, Wu, Feichtenhofer, Darrell & Xie, A ConvNet for the 2020s"
_URL = "https://arxiv.org/abs/2201.03545"


def _info(variant: str, params: int, macs: int, paper_gflops: float) -> ModelInfo:
    return ModelInfo(
        name=f"convnext_{variant}", family="convnext", paper=_PAPER, year=2022,
        input_size=(3, 224, 224), num_classes=1000, params=params, macs=macs, url=_URL,
        first_conv="features.0.0",
        deviations=("none in the architecture; only images below 64x64 change the stem "
                    "(see small_input)",),
        small_input=(f"images below {SMALL_INPUT_BELOW}x{SMALL_INPUT_BELOW}: 2x2 stride-2 patchify "
                     "stem (output stride 16) instead of 4x4 stride 4; stem='imagenet' keeps it"),
        extra=dict(depths=CONVNEXT_CFGS[variant][0], dims=CONVNEXT_CFGS[variant][1],
                   drop_path_rate=DROP_PATH_RATES[variant], paper_gmacs=paper_gflops),
    )


# params and macs (224x224, conv + linear) are torchvision's; paper_gmacs: Table 1 "FLOPs".
@register_model(_info("tiny", 28_589_128, 4_455_531_264, 4.5))
def convnext_tiny(**kwargs) -> ConvNeXt:
    return _create_convnext("tiny", **kwargs)


@register_model(_info("small", 50_223_688, 8_683_712_256, 8.7))
def convnext_small(**kwargs) -> ConvNeXt:
    return _create_convnext("small", **kwargs)


@register_model(_info("base", 88_591_464, 15_354_729_472, 15.4))
def convnext_base(**kwargs) -> ConvNeXt:
    return _create_convnext("base", **kwargs)


@register_model(_info("large", 197_767_336, 34_361_433_600, 34.4))
def convnext_large(**kwargs) -> ConvNeXt:
    return _create_convnext("large", **kwargs)
