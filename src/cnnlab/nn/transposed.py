"""Transposed convolution the notes' way: insert zeros, pad, convolve with the flipped kernel.

"[Upsampling] adds zeros between the feature map, and then blurs it using a learned convolution
kernel" (the course notes on CNNs). The same operation is the input gradient of a convolution
(the course lesson on CNN architectures: "backwards is convolution"), which is why
:mod:`cnnlab.nn.conv` calls :func:`conv_transpose2d` in its hand-written backward pass.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.nn.correlation import Pair, blocks, flip_transpose, pair

__all__ = ["ExplicitConvTranspose2d", "conv_transpose2d"]


def _landing(offset: int, step: int, n_in: int, n_out: int) -> tuple[int, int, int]:
    """Input indices r whose output index offset + step r lies in [0, n_out): (first r, how many,
    first output index)."""
    first = max(0, -(offset // step))  # ceil(-offset / step)
    last = min(n_in - 1, (n_out - 1 - offset) // step)
    return first, max(0, last - first + 1), offset + step * first


def _every(first: int, step: int, count: int) -> slice:
    """first, first + step, ... (count of them)."""
    return slice(first, first + step * (count - 1) + 1, step) if count else slice(0, 0)


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
    kernel placement touches. Step 3's sum y[j, r', c'] = sum_{i,u,v} w'[j, i, u, v] z[i, r' + d u,
    c' + d v] is taken one tap (u, v) of the rotated kernel w' at a time: the tap's product with
    the input, t = w'[:, :, u, v] x (one matrix product for all taps), is read at z's pixel
    r' + d u, and the input pixel r sits at z's row top + s r after steps 1-2, so t lands at
    r' = top + s r - d u. Only pixels of x are multiplied: the inserted and the padding zeros
    never are, and nothing the size of z is made. Differentiable by autograd (plain tensor
    operations).
    """
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    output_padding = pair(output_padding)
    batch, in_chs, height, width = x.shape
    kh, kw = weight.shape[-2:]
    top = dilation[0] * (kh - 1) - padding[0]
    left = dilation[1] * (kw - 1) - padding[1]
    out_h = (height - 1) * stride[0] + 1 + 2 * top + output_padding[0] - dilation[0] * (kh - 1)
    out_w = (width - 1) * stride[1] + 1 + 2 * left + output_padding[1] - dilation[1] * (kw - 1)
    kernel = flip_transpose(weight, groups)  # (C_out, C_in/G, kh, kw), rotated 180 degrees
    out_chs = kernel.shape[0]
    taps = kernel.view(groups, out_chs // groups, in_chs // groups, kh, kw).permute(0, 3, 4, 1, 2)
    taps = taps.reshape(groups, kh * kw * out_chs // groups, in_chs // groups)
    y = x.new_zeros(batch, out_chs, out_h, out_w)
    per_group = y.view(batch, groups, out_chs // groups, out_h, out_w)
    for samples, rows in blocks(batch, height, kh * kw * out_chs * width):
        part = x[samples, :, rows].transpose(0, 1)  # (C_in, nb, nr, W): the batch folded in
        nb, nr = part.shape[1], part.shape[2]
        t = torch.bmm(taps, part.reshape(groups, in_chs // groups, nb * nr * width))
        t = t.view(groups, kh, kw, out_chs // groups, nb, nr, width)  # every tap's product
        for u in range(kh):
            r0, n_r, o_r = _landing(top + stride[0] * rows.start - dilation[0] * u, stride[0],
                                    nr, out_h)
            for v in range(kw):
                c0, n_c, o_c = _landing(left - dilation[1] * v, stride[1], width, out_w)
                # this tap's product lands at rows o_r, o_r + s, ... (none: an empty slice, kept
                # so that autograd still links y to x when no pixel lands at all)
                per_group[samples, :, :, _every(o_r, stride[0], n_r), _every(o_c, stride[1], n_c)
                          ].add_(t[:, u, v, :, :, r0:r0 + n_r, c0:c0 + n_c].permute(2, 0, 1, 3, 4))
    return y if bias is None else y + bias.view(1, -1, 1, 1)


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
