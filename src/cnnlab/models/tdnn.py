"""TDNN — Waibel, Hanazawa, Hinton, Shikano & Lang, "Phoneme Recognition Using Time-Delay Neural
Networks", IEEE Trans. ASSP 37(3), 1989. https://doi.org/10.1109/29.21701

A scanning MLP over time written as 1D convolutions (the course notes' "scanning MLP -> CNN";
``TDNN.scanning_mlp()`` gives the flat MLP back through ``cnnlab.nn.scanning``):
a unit with delays 0..D-1 sees D consecutive frames of every input row and the same weights slide
over time, i.e. ``Conv1d(kernel_size=D)``. The paper's /b, d, g/ network (Fig. 2):

    input     16 mel-scale coefficients x 15 frames (10 ms each)          (B, 16, 15)
    hidden 1   8 units, delays 0..2 (kernel 3), sigmoid                   (B, 8, 13)
    hidden 2   3 units, delays 0..4 (kernel 5), sigmoid                   (B, 3, 9)
    output     unit k integrates (sums) row k of hidden 2 over time      (B, 3)

Trainable parameters: 16*3*8 + 8 + 8*5*3 + 3 = 515.

Deviations from the paper: the output sums are used as logits for cross-entropy (the paper
trained the sigmoid outputs toward 0/1 targets with squared error); hidden layer 2 has
``num_classes`` rows, one per class. Any sequence of at least 7 frames runs (the 1D analogue of
a small image); the output integrates over however many frames remain.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.models.base import ConvNet, explain_shape_errors
from cnnlab.models.registry import ModelInfo, register_model
from cnnlab.nn.scanning import tdnn_to_scanning_mlp


class TDNN(ConvNet):
    """Two time-delay layers and an integrate-over-time output (Waibel et al. 1989, Fig. 2).

    Args:
        num_classes: phoneme classes = rows of hidden layer 2 (3 for /b, d, g/).
        in_chans: coefficients per frame (16 mel-scale bands).
        input_size: frames per token (15); any length >= 7 works.
        hidden: units of hidden layer 1 (8); delays: kernel sizes of the two layers (3, 5).
    """

    classifier_name = "conv2"

    def __init__(self, num_classes: int = 3, in_chans: int = 16, input_size: int | tuple = 15,
                 hidden: int = 8, delays: tuple[int, int] = (3, 5)) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv1d(in_chans, hidden, delays[0])  # (B, 8, L - 2)
        self.act1 = nn.Sigmoid()
        self.conv2 = nn.Conv1d(hidden, num_classes, delays[1])  # (B, 3, L - 6)
        self.act2 = nn.Sigmoid()
        self.num_features = hidden
        self.feature_info = [dict(module="stage1", num_chs=hidden, reduction=1)]

    @explain_shape_errors
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.conv1(x))  # (B, hidden, L - 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``pre_logits=True`` returns the hidden-1 sequence (B, hidden, L') entering ``conv2``."""
        if pre_logits:
            return x
        return self.act2(self.conv2(x)).sum(dim=2)  # integrate over time: (B, num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        old = self.conv2
        self.conv2 = nn.Conv1d(old.in_channels, num_classes, old.kernel_size).to(old.weight)
        self.num_classes = num_classes

    def scanning_mlp(self) -> tuple[nn.Sequential, int, int]:
        """The flat MLP over one window of W = 3 + 5 - 1 = 7 frames, moved by S = 1 frame, that the
        two time-delay layers compute (``cnnlab.nn.scanning``): (mlp, W, S), with
        ``scan_mlp(mlp, x, W, S) == act2(conv2(act1(conv1(x))))`` before integration."""
        return tdnn_to_scanning_mlp(nn.Sequential(self.conv1, self.act1, self.conv2, self.act2))

    def stages(self) -> OrderedDict[str, nn.Module]:
        return OrderedDict(stage1=nn.ModuleList([self.conv1, self.act1]),
                           head=nn.ModuleList([self.conv2, self.act2]))


@register_model(ModelInfo(
    name="tdnn", family="tdnn",
    paper=("Waibel, Hanazawa, Hinton, Shikano & Lang, Phoneme Recognition Using Time-Delay "
           "Neural Networks"),
    year=1989, input_size=(16, 15), num_classes=3, params=515, macs=13 * 8 * 48 + 9 * 3 * 40,
    url="https://doi.org/10.1109/29.21701", first_conv="conv1",
    deviations=("output sums over time are logits for cross-entropy (paper: sigmoid outputs "
                "trained with squared error toward 0/1 targets)",),
    small_input="1D model: any sequence of at least 7 frames (3 + 5 - 1 delays) runs",
    extra=dict(delays=(3, 5), frames=(15, 13, 9), units=(16, 8, 3)),
))
def tdnn(**kwargs) -> TDNN:
    return TDNN(**kwargs)
