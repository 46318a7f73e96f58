"""Convolution with the backward pass written by hand, as the course derives it (lesson 6).

Forward:  y = x ⋆ w + b, a cross-correlation (:func:`cnnlab.nn.correlation.correlate2d`).
Backward, given the upstream gradient g = dL/dy:

* dL/db[o] = sum_{b,r,c} g[b, o, r, c]
* dL/dw = x ⋆ g: the input correlated with the upstream gradient (every output pixel a kernel
  pixel touched contributes, weighted by the input under it)
* dL/dx = g * w: the *full convolution* of g (stride zeros inserted) with the flipped kernel,
  i.e. a transposed convolution. Input pixels that no window reached (the last
  r = (i + 2p - d(k-1) - 1) mod s rows/columns) get zero gradient: output_padding = r.

No autograd runs inside ``backward``: it is three explicit tensor computations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from cnnlab.nn.correlation import Pair, correlate2d, pair, weight_gradient
from cnnlab.nn.shapes import output_size
from cnnlab.nn.sparse import SparseConv2d
from cnnlab.nn.transposed import conv_transpose2d

__all__ = ["Conv1dFunction", "Conv2dFunction", "ExplicitConv1d", "ExplicitConv2d",
           "ExplicitSparseConv2d", "conv1d", "conv2d", "explicit"]


def _conv2d_backward(x: torch.Tensor, weight: torch.Tensor, grad_out: torch.Tensor,
                     has_bias: bool, needs: tuple[bool, ...], stride: Pair, padding: Pair,
                     dilation: Pair, groups: int):
    """(dL/dx, dL/dw, dL/db) from g = dL/dy by the three formulas of the module docstring."""
    grad_x = grad_w = grad_b = None
    kernel_size = tuple(weight.shape[-2:])
    if needs[0]:
        # rows/columns beyond the last window: r = (i + 2p - d(k-1) - 1) mod s, zero gradient
        unreached = tuple((x.shape[2 + a] + 2 * padding[a] - dilation[a] * (kernel_size[a] - 1) - 1)
                          % stride[a] for a in range(2))
        grad_x = conv_transpose2d(grad_out, weight, None, stride, padding, unreached, groups,
                                  dilation)  # full convolution with the flipped kernel
    if needs[1]:
        grad_w = weight_gradient(x, grad_out, kernel_size, stride, padding, dilation, groups)
    if has_bias and needs[2]:
        grad_b = grad_out.sum((0, 2, 3))
    return grad_x, grad_w, grad_b


class Conv2dFunction(Function):
    """y = x ⋆ w + b on (B, C, H, W) with a hand-derived backward (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conf = (bias is not None, stride, padding, dilation, groups)
        return correlate2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        has_bias, stride, padding, dilation, groups = ctx.conf
        grads = _conv2d_backward(x, weight, grad_out.contiguous(), has_bias,
                                 ctx.needs_input_grad, stride, padding, dilation, groups)
        return (*grads, None, None, None, None)


class Conv1dFunction(Function):
    """The 1D case on (B, C, L): the 2D formulas with a height of one (kernel 1 x k)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conf = (bias is not None, (1, stride), (0, padding), (1, dilation), groups)
        y = correlate2d(x.unsqueeze(2), weight.unsqueeze(2), bias, *ctx.conf[1:])
        return y.squeeze(2)  # (B, O, Lo)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        has_bias, stride, padding, dilation, groups = ctx.conf
        grad_x, grad_w, grad_b = _conv2d_backward(
            x.unsqueeze(2), weight.unsqueeze(2), grad_out.contiguous().unsqueeze(2), has_bias,
            ctx.needs_input_grad, stride, padding, dilation, groups)
        grad_x = None if grad_x is None else grad_x.squeeze(2)
        grad_w = None if grad_w is None else grad_w.squeeze(2)
        return grad_x, grad_w, grad_b, None, None, None, None


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int | Pair = 1, padding: int | Pair = 0, dilation: int | Pair = 1,
           groups: int = 1) -> torch.Tensor:
    """Like ``F.conv2d`` (numeric padding), with the explicit forward and backward of the notes.

    y[b, o, r, c] = b[o] + sum_{i,u,v} w[o, i, u, v] x~[b, gC/G + i, s r + d u, s c + d v],
    with o_j = floor((i_j + 2p_j - d_j(k_j-1) - 1)/s_j) + 1 along each axis.
    """
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    for axis in range(2):  # a clear error instead of an empty tensor
        output_size(x.shape[2 + axis], weight.shape[2 + axis], stride[axis], padding[axis],
                    dilation[axis], name="conv2d")
    return Conv2dFunction.apply(x, weight, bias, stride, padding, dilation, groups)


def conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int = 1, padding: int = 0, dilation: int = 1, groups: int = 1) -> torch.Tensor:
    """Like ``F.conv1d``: y[b, o, t] = b[o] + sum_{i,u} w[o, i, u] x~[b, gC/G + i, s t + d u]."""
    stride, padding, dilation = int(_first(stride)), int(_first(padding)), int(_first(dilation))
    output_size(x.shape[2], weight.shape[2], stride, padding, dilation, name="conv1d")
    return Conv1dFunction.apply(x, weight, bias, stride, padding, dilation, groups)


def _first(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def _explicit_padding(x: torch.Tensor, conv: nn.Module, dims: int):
    """Pad x as ``conv`` would (modes, 'same'); return (x, the numeric padding left to apply)."""
    if conv.padding_mode != "zeros":
        return F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode), 0
    if conv.padding == "valid":
        return x, 0
    if conv.padding == "same":  # total d(k-1), the extra pixel on the right as torch does
        pads = []
        for d, k in zip(reversed(conv.dilation), reversed(conv.kernel_size), strict=True):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads), 0
    return x, conv.padding if dims == 2 else conv.padding[0]


class ExplicitConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same state dict) running :class:`Conv2dFunction`."""

    layer_name = "ExplicitConv2d"

    def _conv_forward(self, input, weight, bias):
        x, padding = _explicit_padding(input, self, 2)
        padding = pair(padding)
        for axis in range(2):
            output_size(x.shape[2 + axis], self.kernel_size[axis], self.stride[axis],
                        padding[axis], self.dilation[axis], name=self.layer_name)
        return Conv2dFunction.apply(x, weight, bias, self.stride, padding, self.dilation,
                                    self.groups)


class ExplicitConv1d(nn.Conv1d):
    """``nn.Conv1d`` (same parameters, same state dict) running :class:`Conv1dFunction`."""

    layer_name = "ExplicitConv1d"

    def _conv_forward(self, input, weight, bias):
        x, padding = _explicit_padding(input, self, 1)
        output_size(x.shape[2], self.kernel_size[0], self.stride[0], padding, self.dilation[0],
                    name=self.layer_name)
        return Conv1dFunction.apply(x, weight, bias, self.stride[0], padding, self.dilation[0],
                                    self.groups)


class ExplicitSparseConv2d(SparseConv2d):
    """LeNet-5's C3 (:class:`SparseConv2d`) running :class:`Conv2dFunction` on its dense kernel.

    The gradient of the dense kernel comes from the hand-written backward; autograd only routes
    it back through the scatter to the connected kernels.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Conv2dFunction.apply(x, self.dense_weight(), self.bias, (1, 1), (0, 0), (1, 1), 1)


def _twin(conv: nn.Module, name: str) -> nn.Module:
    """An explicit layer with the same configuration that holds the *same* Parameter objects."""
    if isinstance(conv, SparseConv2d):
        twin = ExplicitSparseConv2d(conv.in_chs, conv.table, conv.kernel_size).to(conv.bias.device)
        twin.weight, twin.bias = conv.weight, conv.bias
        twin.train(conv.training)
        return twin
    cls = ExplicitConv2d if isinstance(conv, nn.Conv2d) else ExplicitConv1d
    twin = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
               conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
               device="meta")  # no storage: the parameters are replaced next
    twin.weight = conv.weight
    twin.bias = conv.bias
    twin.train(conv.training)
    twin.layer_name = name
    twin._forward_hooks.update(conv._forward_hooks)
    twin._forward_pre_hooks.update(conv._forward_pre_hooks)
    return twin


def explicit(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Conv1d``/``nn.Conv2d`` (and LeNet's ``SparseConv2d``) in ``model``, in
    place, by an explicit twin.

    The twins share the original Parameter objects (an optimizer built before or after sees the
    same tensors), so the model trains on the hand-derived backward. Returns ``model``; a bare
    convolution passed in is returned as its twin.
    """
    def is_native(module: nn.Module) -> bool:
        return (isinstance(module, (nn.Conv1d, nn.Conv2d, SparseConv2d))
                and not isinstance(module, (ExplicitConv1d, ExplicitConv2d, ExplicitSparseConv2d)))

    if is_native(model):
        return _twin(model, type(model).__name__)
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if is_native(child):
                setattr(module, child_name, _twin(child, f"{name}.{child_name}".lstrip(".")))
    return model
