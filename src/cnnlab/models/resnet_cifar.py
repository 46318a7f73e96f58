"""CIFAR ResNets and plain nets — He, Zhang, Ren & Sun, "Deep Residual Learning for Image
Recognition", CVPR 2016, Sec. 4.2. arXiv:1512.03385.

The network for 32x32 images: a 3x3 convolution with 16 filters, then three stages of n basic
blocks (2n layers each) on maps of 32, 16 and 8 pixels with 16, 32 and 64 filters, the first
block of stages 2 and 3 subsampling with stride 2; global average pooling and a 10-way fully
connected layer: 6n + 2 weighted layers. Shortcuts are option A (identity, zero-padded channels),
so ResNet-20/32/44/56/110 (n = 3/5/7/9/18) have exactly as many parameters as the "plain" nets
of the same depth — the pair of Fig. 6 for the depth experiment.

Deviations from the paper: none in the architecture. Inputs other than 32x32 (e.g. 28x28 MNIST)
run unchanged: the maps are 28, 14 and 7 pixels wide.
"""

from __future__ import annotations

from cnnlab.errors import ConfigError
from cnnlab.models.registry import ModelInfo, register_model
from cnnlab.models.resnet import BasicBlock, ResNet

CIFAR_DEPTH_N: dict[int, int] = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}  # depth = 6n + 2
# Parameters with 10 classes (conv + BN + fc); the paper reports 0.27M/0.46M/0.66M/0.85M/1.7M.
CIFAR_PARAMS: dict[int, int] = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


_PAPER = "He, Zhang, Ren & Sun, Deep Residual Learning for Image Recognition (Sec. 4.2, CIFAR-10)"
_URL = "https://arxiv.org/abs/1512.03385"


def cifar_net(depth: int, residual: bool = True, widths: tuple[int, ...] = (16, 32, 64),
              **kwargs) -> ResNet:
    """The 6n+2-layer net of Sec. 4.2 for any depth 6n + 2 (n >= 1), plain when ``residual`` is
    False: three stages of n basic blocks of ``widths`` filters, option-A shortcuts."""
    if (depth - 2) % 6 or depth < 8:
        raise ConfigError(f"CIFAR-style depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 56, ...), "
                          f"got {depth}")
    n = (depth - 2) // 6
    kwargs.setdefault("num_classes", 10)
    kwargs.setdefault("input_size", 32)
    return ResNet(BasicBlock, (n, n, n), widths=tuple(widths), stem="small",
                  shortcut=kwargs.pop("shortcut", "A"), residual=residual, **kwargs)


def _macs(n: int, size: int = 32, num_classes: int = 10) -> int:
    """Conv + linear multiply-adds of the 6n+2 net at ``size``: k*k*C_in*C_out per output pixel."""
    macs = 9 * 3 * 16 * size * size  # first conv
    in_chs = 16
    for i, width in enumerate((16, 32, 64)):
        size = size if i == 0 else (size + 1) // 2
        macs += 9 * in_chs * width * size * size + (2 * n - 1) * 9 * width * width * size * size
        in_chs = width
    return macs + 64 * num_classes


def _info(depth: int, residual: bool) -> ModelInfo:
    kind = "resnet" if residual else "plain"
    return ModelInfo(
        name=f"{kind}{depth}", family="resnet_cifar",
        paper=_PAPER, year=2016, input_size=(3, 32, 32), num_classes=10,
        params=CIFAR_PARAMS[depth], macs=_macs(CIFAR_DEPTH_N[depth]), url=_URL,
        first_conv="conv1",
        deviations=() if residual else ("no shortcuts: the paper's plain baseline of Fig. 6",),
        small_input="takes 32x32 natively; other sizes run unchanged (28x28 gives 7x7 last maps)",
        extra=dict(n=CIFAR_DEPTH_N[depth], layers=6 * CIFAR_DEPTH_N[depth] + 2,
                   shortcut="A" if residual else None),
    )


@register_model(_info(20, True))
def resnet20(**kwargs) -> ResNet:
    return cifar_net(20, True, **kwargs)


@register_model(_info(32, True))
def resnet32(**kwargs) -> ResNet:
    return cifar_net(32, True, **kwargs)


@register_model(_info(44, True))
def resnet44(**kwargs) -> ResNet:
    return cifar_net(44, True, **kwargs)


@register_model(_info(56, True))
def resnet56(**kwargs) -> ResNet:
    return cifar_net(56, True, **kwargs)


@register_model(_info(110, True))
def resnet110(**kwargs) -> ResNet:
    return cifar_net(110, True, **kwargs)


@register_model(_info(20, False))
def plain20(**kwargs) -> ResNet:
    return cifar_net(20, False, **kwargs)


@register_model(_info(32, False))
def plain32(**kwargs) -> ResNet:
    return cifar_net(32, False, **kwargs)


@register_model(_info(44, False))
def plain44(**kwargs) -> ResNet:
    return cifar_net(44, False, **kwargs)


@register_model(_info(56, False))
def plain56(**kwargs) -> ResNet:
    return cifar_net(56, False, **kwargs)


@register_model(_info(110, False))
def plain110(**kwargs) -> ResNet:
    return cifar_net(110, False, **kwargs)
