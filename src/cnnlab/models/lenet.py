"""LeNet-5 — LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE 86(11), 1998. http://yann.lecun.com/exdb/publis/pdf/lecun-98.pdf

The faithful network (Sec. II-B): 32x32 input; C1 6@5x5; S2 trainable subsampling; C3 16@5x5
with the sparse connections of Table I; S4 trainable subsampling; C5 120@5x5; F6 84 units;
every layer squashed by f(a) = 1.7159 tanh(2a/3); weights uniform in +-2.4/fan_in.

Deviations from the paper:
* The output layer is a linear layer (850 parameters) trained with cross-entropy. The paper's
  output is 10 Euclidean RBF units whose 84-dim centres are fixed +-1 bitmaps of stylised
  characters (not trained), with y_i = sum_j (x_j - w_ij)^2 and a loss with a competitive term.
* Images smaller than 32x32 (e.g. 28x28 MNIST) are zero-padded to 32x32 inside the model, as the
  paper centred 28x28 digits in a 32x32 field.

``lenet5_modern`` is the textbook modernisation: ReLU, 2x2 max-pooling, full C3, no padding trick.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import ConvNet, explain_shape_errors, image_size
from cnnlab.models.registry import ModelInfo, register_model
from cnnlab.nn import ScaledTanh, SparseConv2d, TrainableSubsampling

# Table I of the paper: which S2 maps (columns 0-5) feed each C3 map (rows 0-15).
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),  # 3 contiguous maps
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),  # 4 contiguous
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),  # 4 discontinuous
    (0, 1, 2, 3, 4, 5),  # all six
)


def _paper_init(module: nn.Module) -> None:
    """Uniform in +-2.4/F_i, F_i the fan-in of the unit (LeNet-5, Appendix A)."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        fan_in = module.weight[0].numel()
        nn.init.uniform_(module.weight, -2.4 / fan_in, 2.4 / fan_in)
        nn.init.uniform_(module.bias, -2.4 / fan_in, 2.4 / fan_in)


class LeNet5(ConvNet):
    """LeNet-5; ``modern=True`` gives ReLU, max-pooling and a full C3."""

    classifier_name = "output"

    def __init__(self, num_classes: int = 10, in_chans: int = 1, input_size: int = 32,
                 modern: bool = False) -> None:
        super().__init__()
        size = image_size(input_size)[1]
        if size > 32:
            raise ConfigError(f"LeNet-5 takes images of at most 32x32 (got {size}x{size}); resize "
                              f"them first (an image folder: --set data.image_size=32)")
        pad = (32 - size) // 2
        act = nn.ReLU if modern else ScaledTanh
        self.num_classes = num_classes
        self.modern = modern
        self.pad = nn.ZeroPad2d(pad) if pad and not modern else nn.Identity()
        first_pad = (32 - size) // 2 if modern else 0  # modern: "same"-style pad in C1 instead
        self.c1 = nn.Conv2d(in_chans, 6, 5, padding=first_pad)  # (B, 6, 28, 28)
        self.act1 = act()
        self.s2 = nn.MaxPool2d(2) if modern else TrainableSubsampling(6)  # (B, 6, 14, 14)
        self.act2 = nn.Identity() if modern else act()
        self.c3 = nn.Conv2d(6, 16, 5) if modern else SparseConv2d(6, C3_TABLE, 5)  # (B, 16, 10, 10)
        self.act3 = act()
        self.s4 = nn.MaxPool2d(2) if modern else TrainableSubsampling(16)  # (B, 16, 5, 5)
        self.act4 = nn.Identity() if modern else act()
        self.c5 = nn.Conv2d(16, 120, 5)  # (B, 120, 1, 1)
        self.act5 = act()
        self.f6 = nn.Linear(120, 84)  # (B, 84)
        self.act6 = act()
        self.output = nn.Linear(84, num_classes)  # (B, num_classes)
        self.num_features, self.head_hidden_size = 120, 84  # C5 maps; F6 units
        self.feature_info = [
            dict(module="stem", num_chs=6, reduction=1),
            dict(module="stage1", num_chs=16, reduction=2),
            dict(module="stage2", num_chs=120, reduction=4),
        ]
        if not modern:
            self.apply(_paper_init)

    @explain_shape_errors
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.c1(self.pad(x)))  # C1: (B, 6, 28, 28)
        x = self.act3(self.c3(self.act2(self.s2(x))))  # S2 -> C3: (B, 16, 10, 10)
        return self.act5(self.c5(self.act4(self.s4(x))))  # S4 -> C5: (B, 120, 1, 1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.act6(self.f6(torch.flatten(x, 1)))  # F6: (B, 84)
        return x if pre_logits else self.output(x)

    def stages(self) -> OrderedDict[str, nn.Module]:
        return OrderedDict(
            stem=nn.ModuleList([self.pad, self.c1, self.act1]),
            stage1=nn.ModuleList([self.s2, self.act2, self.c3, self.act3]),
            stage2=nn.ModuleList([self.s4, self.act4, self.c5, self.act5]),
            head=nn.ModuleList([self.f6, self.act6, self.output]),
        )


_PAPER = "LeCun, Bottou, Bengio & Haffner, Gradient-Based Learning Applied to Document Recognition"
_URL = "http://yann.lecun.com/exdb/publis/pdf/lecun-98.pdf"


@register_model(ModelInfo(
    name="lenet5", family="lenet", paper=_PAPER, year=1998, input_size=(1, 32, 32), num_classes=10,
    params=60_850, macs=416_520, url=_URL, first_conv="c1",
    deviations=("linear output layer with cross-entropy instead of the paper's fixed Euclidean RBF "
                "units (60,000 trainable parameters as the paper counts, 60,850 with the linear output)",
                "C3 runs as a dense convolution whose unconnected kernels are zero, so it executes "
                "240,000 multiply-adds where the sparse table needs 150,000 (paper total: 326,520)"),
    small_input="images below 32x32 are zero-padded to 32x32 (the paper centred 28x28 digits in 32x32)",
    extra=dict(layer_params=dict(c1=156, s2=12, c3=1_516, s4=32, c5=48_120, f6=10_164)),
))
def lenet5(**kwargs) -> LeNet5:
    return LeNet5(**kwargs)


@register_model(ModelInfo(
    name="lenet5_modern", family="lenet", paper=_PAPER, year=1998, input_size=(1, 32, 32),
    num_classes=10, params=61_706, macs=416_520, url=_URL, first_conv="c1",
    deviations=("ReLU instead of scaled tanh", "2x2 max-pooling instead of trainable subsampling",
                "C3 fully connected to all six S2 maps", "linear output layer",
                "default initialisation of torch instead of +-2.4/fan_in"),
    small_input="images below 32x32 get zero padding in C1 so the maps keep LeNet's sizes",
))
def lenet5_modern(**kwargs) -> LeNet5:
    return LeNet5(modern=True, **kwargs)
