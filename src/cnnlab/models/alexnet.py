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

from cnnlab.errors import ShapeError
from cnnlab.models.base import ConvNet
from cnnlab.models.registry import ModelInfo, register_model

SMALL_INPUT = 64  # below this input size the small-input stem rule applies (torchvision: min 63)


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1,
              ceil_mode: bool = False) -> int:
    """floor((i + 2p - d(k-1) - 1)/s) + 1 (ceil for ceil_mode pools, with torch's rule that the
    last window must start inside the input or its left padding)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:
            out -= 1
        return out
    return span // stride + 1


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[-2]), int(v[-1]))


def _too_small_hook(name: str):
    def hook(module: nn.Module, args: tuple) -> None:
        h, w = args[0].shape[-2:]
        k, p = _pair(module.kernel_size), _pair(module.padding)
        s, d = _pair(module.stride or module.kernel_size), _pair(getattr(module, "dilation", 1))
        ceil = getattr(module, "ceil_mode", False)
        out = [_conv_out(i, k[a], s[a], p[a], d[a], ceil) for a, i in enumerate((h, w))]
        if min(out) < 1:
            raise ShapeError(f"layer {name!r} ({module}) gets a {h}x{w} map and would output "
                             f"{out[0]}x{out[1]}")
    return hook


def meta_output_shape(module: nn.Module, input_shape: tuple[int, ...], prefix: str = "",
                      owner: str = "") -> tuple[int, ...]:
    """The output shape of ``module`` for ``input_shape``, computed on the ``meta`` device (shapes
    only, no arithmetic). Raises :class:`ShapeError` naming the first convolution or pooling
    layer whose output, floor((i + 2p - d(k-1) - 1)/s) + 1, would be smaller than 1."""
    sized = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
    hooks = [m.register_forward_pre_hook(_too_small_hook(prefix + n))
             for n, m in module.named_modules() if isinstance(m, sized)]
    tensors = {n: torch.empty_like(t, device="meta") for n, t in
               [*module.named_parameters(), *module.named_buffers()]}
    try:
        x = torch.empty(input_shape, device="meta")
        out = torch.func.functional_call(module, tensors, (x,))
    except ShapeError as err:
        hw = "x".join(str(v) for v in input_shape[2:])
        raise ShapeError(f"input {hw} is too small for {owner or type(module).__name__}: {err}; "
                         "use a larger input (or build the model with input_size=...)") from None
    finally:
        for h in hooks:
            h.remove()
    return tuple(out.shape)


def guarded_features(model: nn.Module, features, x: torch.Tensor) -> torch.Tensor:
    """Run ``features(x)``; if torch fails on a too-small map, re-raise naming the layer."""
    try:
        return features(x)
    except RuntimeError:
        if x.dim() == 4 and x.device.type != "meta":
            from cnnlab.models.base import check_input_size

            meta_output_shape(model, tuple(x.shape))  # in the current mode: aux heads too
            check_input_size(model, tuple(x.shape))
        raise


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
        size = _pair(input_size or (227 if paper else 224))
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
        map_hw = meta_output_shape(self.features, (1, in_chans, *size), "features.",
                                   "alexnet" if paper else "alexnet_tv")[-2:]
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
        self.num_features = 4096
        self.feature_info = [
            dict(module="stem", num_chs=widths[0], reduction=(1 if small else 4) * 2),
            dict(module="stage1", num_chs=widths[1], reduction=(1 if small else 4) * 4),
            dict(module="stage2", num_chs=widths[2], reduction=(1 if small else 4) * 4),
            dict(module="stage3", num_chs=widths[4], reduction=(1 if small else 4) * 8),
        ]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return guarded_features(self, self.features, x)  # (B, 256, 6, 6)

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
    url=_URL, first_conv="features.0", classifier="classifier.6",
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
    url="https://arxiv.org/abs/1404.5997", first_conv="features.0", classifier="classifier.6",
    deviations=("torchvision's one-GPU variant from 'One weird trick' (2014): 64-192-384-256-256 "
                "convolutions, no LRN, no groups, conv1 padding 2, 224x224 input",),
    small_input=_SMALL,
))
def alexnet_tv(**kwargs) -> AlexNet:
    return AlexNet(paper=False, **kwargs)
