"""GoogLeNet (Inception v1) — Szegedy et al., "Going Deeper with Convolutions", CVPR 2015.
https://arxiv.org/abs/1409.4842

Table 1 of the paper, as data in ``INCEPTION_CFG``: each inception module concatenates four
branches — 1x1; 1x1 reduce -> 3x3; 1x1 reduce -> 5x5; 3x3/1 max-pool -> 1x1 projection. The stem
is conv 7x7/2 (64), max-pool 3x3/2, LRN, conv 1x1 (64), conv 3x3 (192), LRN, max-pool 3x3/2. Two
auxiliary classifiers ("side branches", Sec. 5) sit on 4a and 4d: 5x5/3 average pool, 1x1 conv
with 128 filters + ReLU, FC 1024 + ReLU, dropout 0.7, FC to the classes. Their losses are added
with weight 0.3 during training (:func:`googlenet_loss`); at inference they are discarded.
The main head is a 7x7 average pool, dropout 0.4 and a linear layer.

Outputs: in training mode with ``aux_logits=True`` the forward returns
``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)`` (torchvision's order); in eval mode, or
without auxiliary heads, a plain tensor of logits.

Deviations from the paper (``googlenet``):
* Max-pools round up (``ceil_mode``, as the Caffe reference model), so 112 -> 56 as in Table 1.
* LRN as the Caffe reference model: size 5, alpha 1e-4 (Caffe and torch both divide by n), beta
  0.75, k 1 — Table 1 omits it; Fig. 3 shows it after the first pool and after conv3.
* The final average pool is adaptive (a 7x7 pool at 224).
* Auxiliary pool: the paper's AvgPool 5x5/3 when it gives a 4x4 map (tap maps of 14-16, i.e.
  224-ish inputs); otherwise adaptive average pooling to 4x4, as torchvision does.
* Small images (input_size < 64): conv1 uses stride 1 (the small-input stem), so 32x32 gives
  32 -> 16 -> 8 -> 4 -> 2 maps and the aux taps are 4x4.

``googlenet_tv`` reproduces torchvision's ``googlenet`` (so its state dicts load and agree):
BatchNorm (eps 1e-3) after every bias-free convolution, no LRN, **3x3 instead of 5x5** in the
"5x5" branch (torchvision issue #906), 2x2/2 max-pool before 5a, adaptive 4x4 aux pool, BN in the
aux 1x1 conv, main dropout 0.2, ``transform_input=False``.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.base import ConvNet, explain_shape_errors, image_size
from cnnlab.models.registry import ModelInfo, register_model

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])

# Table 1: name -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); inputs chain.
INCEPTION_CFG: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),  # 28x28x256
    "3b": (128, 128, 192, 32, 96, 64),  # 28x28x480
    "4a": (192, 96, 208, 16, 48, 64),  # 14x14x512
    "4b": (160, 112, 224, 24, 64, 64),  # 14x14x512
    "4c": (128, 128, 256, 24, 64, 64),  # 14x14x512
    "4d": (112, 144, 288, 32, 64, 64),  # 14x14x528
    "4e": (256, 160, 320, 32, 128, 128),  # 14x14x832
    "5a": (256, 160, 320, 32, 128, 128),  # 7x7x832
    "5b": (384, 192, 384, 48, 128, 128),  # 7x7x1024
}
SMALL_INPUT = 64


class BasicConv2d(nn.Module):
    """conv -> [BN] -> ReLU; torchvision's block (``conv``, ``bn``) so weights load by name."""

    def __init__(self, in_chs: int, out_chs: int, bn: bool, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, bias=not bn, **kwargs)
        self.bn = nn.BatchNorm2d(out_chs, eps=0.001) if bn else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four branches concatenated on channels: out = 1x1 + 3x3 + 5x5 + pool proj."""

    def __init__(self, in_chs: int, cfg: tuple[int, ...], bn: bool, kernel5: int = 5) -> None:
        super().__init__()
        c1, c3r, c3, c5r, c5, proj = cfg
        self.branch1 = BasicConv2d(in_chs, c1, bn, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_chs, c3r, bn, kernel_size=1),
                                     BasicConv2d(c3r, c3, bn, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_chs, c5r, bn, kernel_size=1),
                                     BasicConv2d(c5r, c5, bn, kernel_size=kernel5,
                                                 padding=kernel5 // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_chs, proj, bn, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([b(x) for b in branches], 1)  # (B, c1 + c3 + c5 + proj, H, W)


class InceptionAux(nn.Module):
    """Side branch: avg pool to 4x4, 1x1 conv 128 + ReLU, FC 1024 + ReLU, dropout 0.7, FC."""

    def __init__(self, in_chs: int, num_classes: int, bn: bool, paper_pool: bool,
                 dropout: float = 0.7) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3) if paper_pool else \
            nn.AdaptiveAvgPool2d(4)
        self.conv = BasicConv2d(in_chs, 128, bn, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pool(x))  # (B, 128, 4, 4)
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)  # (B, 1024)
        return self.fc2(self.dropout(x))  # (B, num_classes)


class GoogLeNet(ConvNet):
    """GoogLeNet with torchvision's module names (conv1..3, inception3a..5b, aux1, aux2, fc)."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3,
                 input_size: int | tuple[int, ...] = 224, aux_logits: bool = True,
                 tv: bool = False, dropout: float | None = None, dropout_aux: float = 0.7) -> None:
        super().__init__()
        size = min(image_size(input_size))
        bn, small = tv, size < SMALL_INPUT
        self.num_classes, self.aux_logits, self.tv = num_classes, aux_logits, tv
        self.conv1 = BasicConv2d(in_chans, 64, bn, kernel_size=7, stride=1 if small else 2,
                                 padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = nn.Identity() if tv else nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)
        self.conv2 = BasicConv2d(64, 64, bn, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, bn, kernel_size=3, padding=1)
        self.lrn2 = nn.Identity() if tv else nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        in_chs = 192
        for name, cfg in INCEPTION_CFG.items():
            setattr(self, f"inception{name}", Inception(in_chs, cfg, bn, 3 if tv else 5))
            in_chs = cfg[0] + cfg[2] + cfg[4] + cfg[5]
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, 2, ceil_mode=True) if tv else \
            nn.MaxPool2d(3, 2, ceil_mode=True)
        tap = _tap_size(size, small)  # map size at 4a/4d
        paper_pool = not tv and (tap - 5) // 3 + 1 == 4
        self.aux1 = InceptionAux(512, num_classes, bn, paper_pool, dropout_aux) if aux_logits \
            else None
        self.aux2 = InceptionAux(528, num_classes, bn, paper_pool, dropout_aux) if aux_logits \
            else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=(0.2 if tv else 0.4) if dropout is None else dropout)
        self.fc = nn.Linear(1024, num_classes)
        self.num_features = 1024
        r = 1 if small else 2
        self.feature_info = [dict(module="stem", num_chs=192, reduction=4 * r),
                             dict(module="stage1", num_chs=480, reduction=4 * r),
                             dict(module="stage2", num_chs=832, reduction=8 * r),
                             dict(module="stage3", num_chs=1024, reduction=16 * r)]
        if tv:
            for m in self.modules():  # torchvision's initialisation
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool1(self.conv1(x))  # (B, 64, 56, 56)
        x = self.lrn2(self.conv3(self.conv2(self.lrn1(x))))  # (B, 192, 56, 56)
        return self.maxpool2(x)  # (B, 192, 28, 28)

    @explain_shape_errors  # in training mode the side branches are checked too
    def _forward(self, x: torch.Tensor, with_aux: bool
                 ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        with_aux = with_aux and self.aux_logits and self.training
        x = self._stem(x)  # (B, 192, 28, 28)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))  # (B, 480, 14, 14)
        x = self.inception4a(x)  # (B, 512, 14, 14)
        aux1 = self.aux1(x) if with_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (B, 528, 14, 14)
        aux2 = self.aux2(x) if with_aux else None
        x = self.maxpool4(self.inception4e(x))  # (B, 832, 7, 7)
        x = self.inception5b(self.inception5a(x))  # (B, 1024, 7, 7)
        return x, aux2, aux1

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x, with_aux=False)[0]  # (B, 1024, 7, 7)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(torch.flatten(self.avgpool(x), 1))  # (B, 1024)
        return x if pre_logits else self.fc(x)  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        x, aux2, aux1 = self._forward(x, with_aux=True)
        logits = self.forward_head(x)
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(logits, aux2, aux1)
        return logits

    def loss(self, outputs: torch.Tensor | GoogLeNetOutputs, targets: torch.Tensor,
             label_smoothing: float = 0.0) -> torch.Tensor:
        """The training loss, side branches included (:func:`googlenet_loss`); the Trainer uses
        it for this model."""
        return googlenet_loss(outputs, targets, label_smoothing=label_smoothing)

    def reset_classifier(self, num_classes: int) -> None:
        """New main classifier and, when present, new last layers of both side branches."""
        super().reset_classifier(num_classes)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                aux.fc2 = nn.Linear(1024, num_classes).to(aux.fc1.weight.device,
                                                          aux.fc1.weight.dtype)

    def stages(self) -> OrderedDict[str, nn.Module]:
        """stem (conv1-3), stage1 (3a-3b), stage2 (4a-4e), stage3 (5a-5b), head (fc + aux)."""
        stem = [self.conv1, self.maxpool1, self.lrn1, self.conv2, self.conv3, self.lrn2,
                self.maxpool2]
        def mods(*names: str) -> nn.ModuleList:
            return nn.ModuleList([getattr(self, n) for n in names])

        head = [self.avgpool, self.dropout, self.fc]
        head += [a for a in (self.aux1, self.aux2) if a is not None]
        return OrderedDict(
            stem=nn.ModuleList(stem),
            stage1=mods("inception3a", "inception3b"),
            stage2=mods("maxpool3", "inception4a", "inception4b", "inception4c", "inception4d",
                        "inception4e"),
            stage3=mods("maxpool4", "inception5a", "inception5b"),
            head=nn.ModuleList(head))


def _tap_size(size: int, small: bool) -> int:
    """Map size at 4a/4d: conv1 (stride 2 unless small) then three ceil-mode 3x3/2 pools."""
    size = size if small else (size + 2 * 3 - 7) // 2 + 1
    for _ in range(3):
        size = -(-(size - 3) // 2) + 1
    return size


# "the losses of the auxiliary classifiers were weighted by 0.3" (Szegedy et al. 2015, Sec. 5)
AUX_LOSS_WEIGHT = 0.3


def googlenet_loss(outputs: torch.Tensor | GoogLeNetOutputs, target: torch.Tensor,
                   aux_weight: float = AUX_LOSS_WEIGHT, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of the main logits plus ``aux_weight`` times that of each side branch.

    L = CE(logits) + 0.3 * (CE(aux_logits2) + CE(aux_logits1)) (Szegedy et al., Sec. 5), in
    float32; a plain tensor (eval mode, or no aux heads) gives CE(logits). ``target``: labels or
    mixed one-hot rows (mixup, cutmix).
    """
    logits, *aux = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
    loss = F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)
    for side in (a for a in aux if a is not None):
        loss = loss + aux_weight * F.cross_entropy(side.float(), target,
                                                   label_smoothing=label_smoothing)
    return loss


_PAPER = "Szegedy et al., Going Deeper with Convolutions"
_URL = "https://arxiv.org/abs/1409.4842"
_SMALL = (f"input_size < {SMALL_INPUT}: conv1 uses stride 1 (small-input stem); the aux heads pool "
          "adaptively to 4x4 when the paper's 5x5/3 pool would not give 4x4")


@register_model(ModelInfo(
    name="googlenet", family="googlenet", paper=_PAPER, year=2015, input_size=(3, 224, 224),
    num_classes=1000, params=13_378_280,  # with the two aux heads (the default); see extra
    macs=1_582_671_872,  # exact multiply-adds at 224 without aux heads (no bias), counted by us
    url=_URL, first_conv="conv1.conv",
    deviations=("max-pools round up (ceil_mode) as in the Caffe reference model",
                "LRN placed and parametrised as in the Caffe reference model (Table 1 omits it)",
                "adaptive final average pool (7x7 at 224)",
                "aux pool adaptive to 4x4 when 5x5/3 does not give 4x4"),
    small_input=_SMALL,
    extra=dict(params_with_aux=13_378_280, params_without_aux=6_998_552,
               paper_table_params=6_800_000, aux_weight=0.3),
))
def googlenet(**kwargs) -> GoogLeNet:
    return GoogLeNet(tv=False, **kwargs)


@register_model(ModelInfo(
    name="googlenet_tv", family="googlenet", paper=_PAPER, year=2015, input_size=(3, 224, 224),
    num_classes=1000, params=13_004_888,  # with aux heads, as torchvision's googlenet()
    macs=1_498_000_000,  # torchvision GoogLeNet_Weights _ops = 1.498 GFLOPS (MACs, no aux)
    url=_URL, first_conv="conv1.conv",
    deviations=("torchvision's variant: BatchNorm after every convolution",
                "3x3 instead of 5x5 in the '5x5' branch (torchvision issue #906)",
                "no LRN; 2x2/2 max-pool before 5a; adaptive 4x4 aux pool; main dropout 0.2"),
    small_input=_SMALL,
    extra=dict(params_with_aux=13_004_888, params_without_aux=6_624_904, aux_weight=0.3),
))
def googlenet_tv(**kwargs) -> GoogLeNet:
    return GoogLeNet(tv=True, **kwargs)
