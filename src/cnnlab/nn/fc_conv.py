"""Fully connected, locally connected and convolutional layers, and how they relate (course notes).

A 1x1 convolution is a fully connected layer applied at every position ("network in network");
a locally connected layer keeps the convolution's local windows but gives every position its own
kernel; a convolution shares one kernel across positions. :func:`layer_param_counts` gives the
numbers behind the argument.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.nn.correlation import im2col, pair
from cnnlab.nn.shapes import output_size

__all__ = ["LocallyConnected2d", "conv1x1_to_linear", "layer_param_counts", "linear_to_conv1x1"]


def linear_to_conv1x1(linear: nn.Linear) -> nn.Conv2d:
    """The 1x1 convolution that applies ``linear`` at every position.

    conv(x)[b, o, r, c] = sum_i W[o, i] x[b, i, r, c] + b[o] = linear(x[b, :, r, c])[o]; the
    kernel is W reshaped to (out_features, in_features, 1, 1). Parameters are copied.
    """
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1, bias=linear.bias is not None,
                     device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.view(*linear.weight.shape, 1, 1))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv


def conv1x1_to_linear(conv: nn.Conv2d) -> nn.Linear:
    """The fully connected layer a 1x1 convolution applies at each position: W = kernel[:, :, 0, 0].

    Raises:
        ValueError: unless the convolution is 1x1, stride 1, no padding, no groups.
    """
    if (conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1
            or conv.padding not in ((0, 0), "valid")):
        raise ValueError(f"only a 1x1, stride-1, unpadded, ungrouped convolution is a per-position "
                         f"linear layer (got kernel {conv.kernel_size}, stride {conv.stride}, "
                         f"padding {conv.padding}, groups {conv.groups})")
    linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None,
                       device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(conv.weight[:, :, 0, 0])
        if conv.bias is not None:
            linear.bias.copy_(conv.bias)
    return linear


class LocallyConnected2d(nn.Module):
    """A convolution with unshared weights: every output position (r, c) has its own kernel.

    y[b, o, r, c] = bias[o, r, c] + sum_{i,u,v} w[r, c, o, i, u, v] x~[b, i, s r + u, s c + v].
    Parameters: Ho Wo (O C k^2 + O), Ho Wo times a convolution's O C k^2 + O.
    """

    def __init__(self, in_chs: int, out_chs: int, input_size: int | tuple[int, int],
                 kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        height, width = pair(input_size)
        self.in_chs, self.out_chs, self.kernel_size = in_chs, out_chs, kernel_size
        self.stride, self.padding = stride, padding
        self.out_size = (output_size(height, kernel_size, stride, padding, name="LocallyConnected2d"),
                         output_size(width, kernel_size, stride, padding, name="LocallyConnected2d"))
        positions = self.out_size[0] * self.out_size[1]
        fan_in = in_chs * kernel_size**2
        self.weight = nn.Parameter(torch.empty(positions, out_chs, fan_in))  # (L, O, C*k*k)
        self.bias = nn.Parameter(torch.empty(out_chs, *self.out_size)) if bias else None
        bound = fan_in**-0.5  # nn.Conv2d's default range, per position
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, O, Ho, Wo)
        k, s, p = (self.kernel_size,) * 2, (self.stride,) * 2, (self.padding,) * 2
        cols = im2col(x, k, s, p, (1, 1))  # (C*k*k, B*L)
        cols = cols.view(cols.shape[0], x.shape[0], -1).permute(2, 0, 1)  # (L, C*k*k, B)
        y = torch.bmm(self.weight, cols)  # (L, O, B): each position its own matrix
        y = y.permute(2, 1, 0).reshape(x.shape[0], self.out_chs, *self.out_size)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"{self.in_chs}, {self.out_chs}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, out_size={self.out_size}")


def layer_param_counts(in_shape: tuple[int, int, int], out_chs: int, kernel_size: int,
                       stride: int = 1, padding: int = 0, bias: bool = True) -> dict[str, int]:
    """Parameters of three layers mapping (C, H, W) to (O, Ho, Wo), Ho = output_size(H, k, s, p).

    fully_connected:     (C H W)(O Ho Wo) + O Ho Wo   every output unit sees every input
    locally_connected:   Ho Wo (O C k^2 + O)          local windows, one kernel per position
    convolutional:       O C k^2 + O                  one kernel shared by every position
    """
    chans, height, width = in_shape
    out_h = output_size(height, kernel_size, stride, padding)
    out_w = output_size(width, kernel_size, stride, padding)
    units = out_chs * out_h * out_w
    kernel = out_chs * chans * kernel_size**2
    return dict(
        fully_connected=chans * height * width * units + (units if bias else 0),
        locally_connected=out_h * out_w * kernel + (units if bias else 0),
        convolutional=kernel + (out_chs if bias else 0),
    )
