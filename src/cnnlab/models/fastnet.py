"""FastNet — a small ResNet-less speed-run network for 28x28 and 32x32 images, after Keller
Jordan's airbench (2024, arXiv:2404.00498) and David Page's "How to train your ResNet" (2018).

Both show that for a fixed, small compute budget a shallow, wide VGG-like net beats a deep
ResNet: a 3x3 stem, then three groups of [conv 3x3 -> max-pool 2 -> BN -> GELU -> conv 3x3 ->
BN -> GELU], global max pooling and a bias-free linear classifier. The map sizes are 28, 14, 7, 3
for Fashion-MNIST. Trained with label smoothing, flip + translate augmentation, Nesterov SGD and
a one-cycle schedule it is the network of the ``fmnist-fast`` / ``fmnist-best`` recipes.

Deviations from airbench by default: a learned 3x3 stem, BatchNorm with a trained scale and
torch's momentum, default initialisation, no logit scaling; widths are smaller (the budget is a
2-core CPU, not an A100). airbench's own choices are options (``model.options``), each after its
``airbench94.py`` (Jordan 2024, arXiv:2404.00498, Sec. 3):

* ``whiten=True``: the stem is a frozen 2x2 patch-whitening convolution (:class:`WhiteningConv`,
  initialised from the training images by :meth:`FastNet.init_from_data`, which the Trainer calls
  once on a fresh run) followed by GELU; its bias trains for the first ``whiten_bias_epochs``
  epochs only (:meth:`FastNet.set_epoch`, called by the Trainer at the start of every epoch);
* ``dirac=True``: every 3x3 convolution after the first starts as the identity on its first
  ``in_chs`` filters (``torch.nn.init.dirac_``), the rest keep the default init;
* ``bn_weight=False``: BatchNorm's scale is frozen at 1, only its bias trains;
  ``bn_momentum``: torch's convention (airbench's 0.6 is ``1 - momentum``, i.e. 0.4 here);
* ``logit_scale``: the logits are multiplied by this fixed factor (airbench: 1/9).
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


def batch_norm(chs: int, momentum: float = 0.1, weight: bool = True) -> nn.BatchNorm2d:
    """BatchNorm2d with torch's ``momentum`` (running = (1 - m) running + m batch); with
    ``weight=False`` its scale stays 1 (no gradient) and only the bias trains (airbench)."""
    bn = nn.BatchNorm2d(chs, momentum=momentum)
    bn.weight.requires_grad_(weight)
    return bn


def dirac_init_(conv: nn.Conv2d) -> nn.Conv2d:
    """Identity-like init (airbench): the first ``in_channels`` filters pass their input through
    (``torch.nn.init.dirac_``: a 1 at the centre tap of the matching channel); filters beyond
    ``in_channels`` keep their init. With ``out == in`` the conv (padding 1) is the identity."""
    with torch.no_grad():
        torch.nn.init.dirac_(conv.weight[:conv.in_channels])
    return conv


def conv_bn(in_chs: int, out_chs: int, pool: bool = False, bn_momentum: float = 0.1,
            bn_weight: bool = True, dirac: bool = False) -> nn.Sequential:
    """conv 3x3 (no bias: BN follows) [-> max-pool 2] -> BN -> GELU."""
    conv = nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False)
    layers = [dirac_init_(conv) if dirac else conv]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [batch_norm(out_chs, bn_momentum, bn_weight), nn.GELU()]
    return nn.Sequential(*layers)


class ConvGroup(nn.Sequential):
    """airbench's group: conv + pool (halves the map) then a second conv at the new size."""

    def __init__(self, in_chs: int, out_chs: int, **bn_and_init) -> None:
        super().__init__(conv_bn(in_chs, out_chs, pool=True, **bn_and_init),
                         conv_bn(out_chs, out_chs, **bn_and_init))


class WhiteningConv(nn.Conv2d):
    """airbench's frozen patch-whitening first layer: a ``k x k`` convolution (no padding) whose
    ``2 C k^2`` filters are the eigenvectors v_i of the (uncentred) covariance
    ``S = 1/n sum_p p p^T`` of the training images' ``k x k`` patches p, each scaled by
    ``1 / sqrt(lambda_i + eps)``, and their negatives (so a ReLU/GELU after it loses nothing).
    The positive half maps patches to ``V^T p / sqrt(lambda + eps)``, whose covariance is
    ``diag(lambda / (lambda + eps))``: the identity up to eps. The weights never train; the bias
    does, until :meth:`FastNet.set_epoch` freezes it.
    """

    def __init__(self, in_chs: int, kernel_size: int = 2, eps: float = 5e-4) -> None:
        super().__init__(in_chs, 2 * in_chs * kernel_size ** 2, kernel_size, padding=0, bias=True)
        self.eps = eps
        self.weight.requires_grad_(False)
        with torch.no_grad():
            self.bias.zero_()

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Set the filters from normalised float images (N, C, H, W)."""
        c, k = self.in_channels, self.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H', W', k, k)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)  # (P, C k k)
        cov = patches.T @ patches / len(patches)
        eigval, eigvec = torch.linalg.eigh(cov.double())  # ascending; columns are vectors
        filters = (eigvec.T / torch.sqrt(eigval + self.eps)[:, None]).flip(0)  # largest first
        filters = filters.reshape(c * k * k, c, k, k).to(self.weight.dtype)
        self.weight.copy_(torch.cat([filters, -filters]))


class FastNet(ConvNet):
    classifier_name = "fc"

    def __init__(self, stem_width: int, widths: tuple[int, ...], num_classes: int = 10,
                 in_chans: int = 1, input_size: int = 28, drop_rate: float = 0.0,
                 whiten: bool = False, whiten_bias_epochs: int = 3, dirac: bool = False,
                 bn_weight: bool = True, bn_momentum: float = 0.1,
                 logit_scale: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.whiten_bias_epochs = whiten_bias_epochs
        self.logit_scale = logit_scale
        bn = dict(bn_momentum=bn_momentum, bn_weight=bn_weight)
        if whiten:  # (B, 8 C, H - 1, W - 1): frozen filters, airbench's stem (no BN after it)
            self.stem = nn.Sequential(WhiteningConv(in_chans), nn.GELU())
            in_chs = self.stem[0].out_channels
        else:
            self.stem = conv_bn(in_chans, stem_width, **bn)  # (B, w0, H, W)
            in_chs = stem_width
        groups = []
        for width in widths:
            groups.append(ConvGroup(in_chs, width, dirac=dirac, **bn))  # (B, width, H/2^i, W/2^i)
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
        return x if pre_logits else self.fc(x) * self.logit_scale

    def init_from_data(self, images: torch.Tensor) -> None:
        """Fit the whitening stem (when ``whiten``) to normalised training images (N, C, H, W);
        the Trainer calls it once on a fresh run (a resumed run has the weights)."""
        if isinstance(self.stem[0], WhiteningConv):
            self.stem[0].init_from_data(images)

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer before epoch ``epoch`` (1-based): the whitening bias trains in
        epochs 1..``whiten_bias_epochs`` and is frozen after (airbench's ``whiten_bias_epochs``)."""
        if isinstance(self.stem[0], WhiteningConv):
            self.stem[0].bias.requires_grad_(epoch <= self.whiten_bias_epochs)

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
        deviations=("by default a 3x3 learned stem instead of the frozen whitening conv "
                    "(option whiten)", "by default no logit scaling (option logit_scale); "
                    "widths sized for a 2-core CPU"),
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
