"""The one face every cnnlab model shows, whatever its family.

Transfer, analysis and the lab never special-case a family; they rely on:

* ``forward_features(x)`` — the last feature map, before global pooling / flattening;
* ``forward_head(x, pre_logits=False)`` — pooling, dropout and the classifier;
* ``get_classifier()`` / ``reset_classifier(num_classes)``;
* ``num_features`` — channels entering the classifier;
* ``feature_info`` — one dict per stage: ``module`` (its name in ``stages()``), ``num_chs``
  and ``reduction`` (its output stride with respect to the input);
* ``stages()`` — an ordered mapping ``"stem", "stage1", ..., "head"`` -> module, used to freeze
  "up to stage N". The mapping covers every parameter of the model exactly once.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class ConvNet(nn.Module):
    """Base class of the zoo. Subclasses set the attributes below and implement the forwards."""

    num_features: int = 0  # channels (or units) that enter the classifier
    feature_info: list[dict] = []  # [{"module": "stage1", "num_chs": 64, "reduction": 4}, ...]
    classifier_name: str = "fc"  # module path of the final classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

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


# Messages torch raises when a layer's output would be empty, or a shape does not fit a layer.
_TOO_SMALL = ("too small", "can't be greater than actual input size", "non-empty", "size below 1")
_MISMATCH = ("shapes cannot be multiplied", "expected input", "size mismatch")


class _EmptyOutput(RuntimeError):
    pass


def _meta_forward(model: nn.Module, shape: tuple[int, ...]) -> tuple[str, str] | None:
    """Run ``model`` on a meta tensor of ``shape``; return (failure kind, message) or ``None``.

    The message names the innermost module running when the size dropped below 1: forward
    pre-hooks push ``name (Type) got (input shape)`` on a stack, forward hooks pop it.
    """
    state = {k: torch.empty_like(v, device="meta") for k, v in model.named_parameters()}
    state.update({k: torch.empty_like(v, device="meta") for k, v in model.named_buffers()})
    dtype = next(iter(state.values())).dtype if state else torch.float32
    stack: list[str] = []

    def pre_hook(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
            stack.append(f"layer {name!r} ({type(module).__name__}) got input "
                         f"{shapes[0] if len(shapes) == 1 else shapes}")
        return hook

    def post_hook(module: nn.Module, args: tuple, output) -> None:
        if isinstance(output, torch.Tensor) and output.numel() == 0:
            raise _EmptyOutput(f"{stack[-1]} and gives output {tuple(output.shape)} (size below 1)")
        stack.pop()

    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(pre_hook(name)))
            handles.append(module.register_forward_hook(post_hook))
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        torch.func.functional_call(model, state, (torch.empty(shape, device="meta", dtype=dtype),))
    except _EmptyOutput as err:
        return "small", str(err)
    except RuntimeError as err:
        where = stack[-1] if stack else "the model's first layer"
        text = str(err).split("\n")[0]
        if any(s in text.lower() for s in _TOO_SMALL):
            return "small", f"{where}: {text}"
        if any(s in text.lower() for s in _MISMATCH):
            return "mismatch", f"{where}: {text}"
        return None  # not a shape problem the meta device can judge; the real forward will tell
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.train(mode)
    return None


def check_input_size(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Raise :class:`ShapeError` if ``model`` cannot take an input of ``input_shape`` (B, C, ...).

    Runs one forward pass on the meta device (shapes only: no memory, no arithmetic) with the
    output size of every layer, o = floor((i + 2p - d(k-1) - 1)/s) + 1, checked against 1. The
    error names the layer where the size drops below 1 and the smallest square (or 1D) input
    that this model, as built, accepts.
    """
    from cnnlab.errors import ShapeError

    shape = tuple(int(s) for s in input_shape)
    failure = _meta_forward(model, shape)
    if failure is None:
        return
    kind, message = failure
    name = type(model).__name__
    if kind == "mismatch":
        raise ShapeError(f"input {shape} does not fit {name}: {message}. Build the model with "
                         f"create_model(..., input_size=<your size>) so it sizes its layers to it")
    low, high = max(shape[2:]), max(shape[2:]) * 2
    while high <= 4096 and _meta_forward(model, shape[:2] + (high,) * len(shape[2:])):
        low, high = high, high * 2
    while high - low > 1 and high <= 4096:  # binary search for the smallest size that runs
        mid = (low + high) // 2
        if _meta_forward(model, shape[:2] + (mid,) * len(shape[2:])):
            low = mid
        else:
            high = mid
    need = "x".join([str(high)] * len(shape[2:])) if high <= 4096 else "a larger input"
    raise ShapeError(f"input {shape} is too small for {name}: {message}. Use inputs of at least "
                     f"{need}, or pass input_size= to create_model so the family adapts "
                     f"(see model_info(name).small_input)")
