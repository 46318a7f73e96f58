"""The primitives of the notes' convolution algebra, as plain tensor operations (no autograd).

Everything is 2D on (B, C, H, W); a 1D signal is the case H = 1. With x~ the zero-padded input,
stride s, dilation d and G groups of C/G input and O/G output channels:

    cross-correlation  y[b, o, r, c] = sum_{i,u,v} w[o, i, u, v] x~[b, gC/G+i, s r+d u, s c+d v]
    weight gradient    dL/dw[o, i, u, v] = sum_{b,r,c} g[b, o, r, c] x~[b, gC/G+i, s r+d u, s c+d v]

with g = dL/dy the upstream gradient.

The sliding windows x~[., ., s r + d u, s c + d v] are laid out by ``im2col`` (one strided view of
x~, then one copy), so both sums become matrix products, the form the notes call "simple
vectorized linear algebra".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Pair = tuple[int, int]


def pair(value: int | tuple[int, ...]) -> Pair:
    """(v, v) for an int; a tuple as it is."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def im2col(x: torch.Tensor, kernel_size: Pair, stride: Pair, padding: Pair,
           dilation: Pair) -> torch.Tensor:
    """One column per window: cols[(i, u, v), (b, r, c)] = x~[b, i, s r + d u, s c + d v].

    (B, C, H, W) -> (C*kh*kw, B*Ho*Wo): ``F.unfold`` with the batch folded into the columns,
    written as the index formula, a view of the padded input x~ with strides (d, d) along (u, v)
    and (s, s) along (r, c), copied once. One axis for batch and positions makes each sum below
    a single matrix product.
    """
    if padding != (0, 0):
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))  # x~
    batch, chans, height, width = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    out_h = (height - dh * (kh - 1) - 1) // sh + 1
    out_w = (width - dw * (kw - 1) - 1) // sw + 1
    st_b, st_c, st_h, st_w = x.stride()
    windows = x.as_strided(  # windows[i, u, v, b, r, c] = x~[b, i, s r + d u, s c + d v]
        (chans, kh, kw, batch, out_h, out_w),
        (st_c, dh * st_h, dw * st_w, st_b, sh * st_h, sw * st_w), x.storage_offset())
    return windows.reshape(chans * kh * kw, batch * out_h * out_w)


def correlate2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                stride: Pair = (1, 1), padding: Pair = (0, 0), dilation: Pair = (1, 1),
                groups: int = 1) -> torch.Tensor:
    """y[b, o, r, c] = bias[o] + sum_{i,u,v} w[o, i, u, v] x~[b, gC/G + i, s r + d u, s c + d v].

    The forward pass of a convolution layer (a cross-correlation: the kernel is not flipped),
    computed as one matrix product per group: w (O/G, C/G*kh*kw) @ cols (C/G*kh*kw, B*Ho*Wo).
    """
    batch = x.shape[0]
    out_chs, in_per_group, kh, kw = weight.shape
    out_h = (x.shape[2] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (x.shape[3] + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = im2col(x, (kh, kw), stride, padding, dilation)  # (C*kh*kw, B*Ho*Wo)
    kernels = weight.reshape(groups, out_chs // groups, in_per_group * kh * kw)
    y = torch.bmm(kernels, cols.view(groups, -1, cols.shape[1]))  # (G, O/G, B*Ho*Wo)
    y = y.view(out_chs, batch, out_h, out_w).transpose(0, 1)  # (B, O, Ho, Wo)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return y.contiguous(memory_format=torch.channels_last if channels_last else
                        torch.contiguous_format)


def weight_gradient(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: Pair, stride: Pair,
                    padding: Pair, dilation: Pair, groups: int) -> torch.Tensor:
    """dL/dw[o, i, u, v] = sum_{b,r,c} dL/dy[b, o, r, c] x~[b, gC/G + i, s r + d u, s c + d v].

    The correlation of the input with the upstream gradient (the notes' "what a kernel pixel
    affects at the output: everything"): the same windows as the forward pass, now weighted by
    dL/dy instead of w, summed over batch and positions. Returns (O, C/G, kh, kw).
    """
    in_chs, out_chs = x.shape[1], grad_out.shape[1]
    cols = im2col(x, kernel_size, stride, padding, dilation)  # (C*kh*kw, B*Ho*Wo)
    grads = grad_out.transpose(0, 1).reshape(groups, out_chs // groups, -1)  # (G, O/G, B*Ho*Wo)
    grad_w = torch.bmm(grads, cols.view(groups, -1, cols.shape[1]).transpose(1, 2))
    return grad_w.reshape(out_chs, in_chs // groups, *kernel_size)  # (G, O/G, C/G*kh*kw) before


def insert_zeros(x: torch.Tensor, stride: Pair,
                 border: tuple[int, int, int, int] = (0, 0, 0, 0)) -> torch.Tensor:
    """Put s - 1 zeros between neighbouring pixels, then ``border`` = (left, right, top, bottom)
    zeros around (negative: crop): z[., ., top + s r, left + s c] = x[., ., r, c], else 0.

    (B, C, H, W) -> (B, C, top + (H-1)s+1 + bottom, left + (W-1)s+1 + right).
    """
    if stride == (1, 1) and border == (0, 0, 0, 0):
        return x
    batch, chans, height, width = x.shape
    left, right, top, bottom = (max(b, 0) for b in border)  # grow first, crop at the end
    z = x.new_zeros(batch, chans, top + (height - 1) * stride[0] + 1 + bottom,
                    left + (width - 1) * stride[1] + 1 + right)
    z[:, :, top:z.shape[2] - bottom:stride[0], left:z.shape[3] - right:stride[1]] = x
    if min(border) < 0:
        z = F.pad(z, tuple(min(b, 0) for b in border))
    return z


def flip_transpose(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """w'[j, i, u, v] = w[i, j, k-1-u, k-1-v] within each group: rotate 180 degrees, swap in/out.

    (A, B/G, kh, kw) -> (B, A/G, kh, kw): a kernel that maps A channels to B, read backwards.
    """
    in_chs, out_per_group, kh, kw = weight.shape
    w = weight.reshape(groups, in_chs // groups, out_per_group, kh, kw).transpose(1, 2)
    return w.reshape(groups * out_per_group, in_chs // groups, kh, kw).flip(-2, -1)
