"""Transposed convolution the notes' way: insert zeros, pad, convolve with the flipped kernel.

"[Upsampling] adds zeros between the feature map, and then blurs it using a learned convolution
kernel" (the course notes on CNNs). The same operation is the input gradient of a convolution
(the course lesson on CNN architectures: "backwards is convolution"), which is why
:mod:`cnnlab.nn.conv` calls :func:`conv_transpose2d` in its hand-written backward pass.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.nn.correlation import Pair, correlate2d, flip_transpose, insert_zeros, pair

__all__ = ["ExplicitConvTranspose2d", "conv_transpose2d"]


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     stride: int | Pair = 1, padding: int | Pair = 0,
                     output_padding: int | Pair = 0, groups: int = 1,
                     dilation: int | Pair = 1) -> torch.Tensor:
    """Transposed convolution, weight (C_in, C_out/G, kh, kw) as in ``nn.ConvTranspose2d``.

    1. insert s - 1 zeros between input pixels:    (H - 1) s + 1 rows
    2. pad d(k-1) - p zeros on the top/left and d(k-1) - p + output_padding on the bottom/right
       (a negative pad crops)
    3. cross-correlate with the kernel rotated by 180 degrees, in/out channels swapped, dilation d:
       o = (H - 1) s + 1 + 2(d(k-1) - p) + output_padding - d(k-1)
         = (H - 1) s - 2p + d(k-1) + output_padding + 1.

    With p = 0 and s = 1 this is the *full* convolution of x with w: every output pixel that any
    kernel placement touches. Differentiable by autograd (plain tensor operations).
    """
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    output_padding = pair(output_padding)
    kh, kw = weight.shape[-2:]
    top = dilation[0] * (kh - 1) - padding[0]
    left = dilation[1] * (kw - 1) - padding[1]
    border = (left, left + output_padding[1], top, top + output_padding[0])
    z = insert_zeros(x, stride, border)  # (B, C_in, (H-1)s+1 + 2 top + op, ...)
    kernel = flip_transpose(weight, groups)  # (C_out, C_in/G, kh, kw), rotated 180 degrees
    return correlate2d(z, kernel, bias, (1, 1), (0, 0), dilation, groups)


class ExplicitConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same parameters and state dict) run by :func:`conv_transpose2d`.

    Output size o = (i - 1) s - 2p + d(k-1) + output_padding + 1; ``output_size=`` in
    ``forward`` chooses output_padding as ``nn.ConvTranspose2d`` does.
    """

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError(f"only zero padding is defined for a transposed convolution "
                             f"(got padding_mode={self.padding_mode!r})")
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation)
        return conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                tuple(output_padding), self.groups, self.dilation)
