"""The one face every cnnlab model shows, whatever its family.

Transfer, analysis and the lab never special-case a family; they rely on:

* ``forward_features(x)`` — the last feature map, before global pooling / flattening;
* ``forward_head(x, pre_logits=False)`` — pooling, dropout and the classifier;
* ``get_classifier()`` / ``reset_classifier(num_classes)``;
* ``num_features`` — channels of the ``forward_features`` output (timm's convention);
* ``head_hidden_size`` — width of ``forward_head(x, pre_logits=True)``: ``num_features`` unless
  the head has hidden layers of its own (LeNet-5's F6: 84; AlexNet's and VGG's FC-4096: 4096);
* ``feature_info`` — one dict per stage: ``module`` (its name in ``stages()``), ``num_chs``
  and ``reduction`` (its output stride with respect to the input);
* ``stages()`` — an ordered mapping ``"stem", "stage1", ..., "head"`` -> module, used to freeze
  "up to stage N". The mapping covers every parameter of the model exactly once.

Shape checks on the meta device (``check_input_size``, ``meta_output_shape`` and the
``explain_shape_errors`` decorator for forwards) live in :mod:`cnnlab.models._shapes`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from cnnlab.models._shapes import check_input_size, explain_shape_errors, meta_output_shape

__all__ = ["ConvNet", "check_input_size", "explain_shape_errors", "image_size", "meta_output_shape"]


def image_size(input_size: int | tuple[int, ...]) -> tuple[int, int]:
    """(H, W) from ``input_size`` as ``create_model`` passes it: an int (square), (H, W) or
    (C, H, W)."""
    if isinstance(input_size, int):
        return input_size, input_size
    return int(input_size[-2]), int(input_size[-1])


class ConvNet(nn.Module):
    """Base class of the zoo. Subclasses set the attributes below and implement the forwards."""

    num_features: int = 0  # channels of the forward_features output
    feature_info: list[dict] = []  # [{"module": "stage1", "num_chs": 64, "reduction": 4}, ...]
    classifier_name: str = "fc"  # module path of the final classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    @property
    def head_hidden_size(self) -> int:
        """Width of ``forward_head(x, pre_logits=True)``: ``num_features`` unless a family with
        hidden layers in its head sets it (``self.head_hidden_size = 4096``)."""
        return self.__dict__.get("_head_hidden_size") or self.num_features

    @head_hidden_size.setter
    def head_hidden_size(self, width: int) -> None:
        self.__dict__["_head_hidden_size"] = width

    @explain_shape_errors
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final classifier by a freshly initialised one with ``num_classes`` outputs."""
        old = self.get_classifier()
        if isinstance(old, nn.Linear):
            new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        elif isinstance(old, nn.Conv2d):  # NiN-style classifier: a 1x1 convolution
            new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride,
                            old.padding, bias=old.bias is not None)
        else:
            raise TypeError(f"{type(self).__name__} must override reset_classifier for {type(old)}")
        new = new.to(device=next(old.parameters()).device, dtype=next(old.parameters()).dtype)
        parent_name, _, child = self.classifier_name.rpartition(".")
        parent = self.get_submodule(parent_name) if parent_name else self
        setattr(parent, child, new)
        self.num_classes = num_classes

    def stages(self) -> OrderedDict[str, nn.Module]:
        raise NotImplementedError
