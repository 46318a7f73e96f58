"""The primitives of the notes' convolution algebra, as plain tensor operations (no autograd).

Everything is 2D on (B, C, H, W); a 1D signal is the case H = 1. With x~ the zero-padded input,
stride s, dilation d and G groups of C/G input and O/G output channels:

    cross-correlation  y[b, o, r, c] = sum_{i,u,v} w[o, i, u, v] x~[b, gC/G+i, s r+d u, s c+d v]
    weight gradient    dL/dw[o, i, u, v] = sum_{b,r,c} g[b, o, r, c] x~[b, gC/G+i, s r+d u, s c+d v]

with g = dL/dy the upstream gradient.

The sliding windows x~[., ., s r + d u, s c + d v] are laid out once by ``im2col`` (F.unfold), so
both sums become matrix products, the form the notes call "simple vectorized linear algebra".
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
    """Columns of every window: cols[b, (i, u, v), (r, c)] = x~[b, i, s r + d u, s c + d v].

    (B, C, H, W) -> (B, C*kh*kw, Ho*Wo). A 1x1 kernel with no padding needs no copy at stride 1.
    """
    batch, chans = x.shape[:2]
    if kernel_size == (1, 1) and padding == (0, 0):
        if stride != (1, 1):
            x = x[:, :, ::stride[0], ::stride[1]]
        return x.reshape(batch, chans, -1)
    return F.unfold(x, kernel_size, dilation=dilation, padding=padding, stride=stride)


def correlate2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                stride: Pair = (1, 1), padding: Pair = (0, 0), dilation: Pair = (1, 1),
                groups: int = 1) -> torch.Tensor:
    """y[b, o, r, c] = bias[o] + sum_{i,u,v} w[o, i, u, v] x~[b, gC/G + i, s r + d u, s c + d v].

    The forward pass of a convolution layer (a cross-correlation: the kernel is not flipped),
    computed as one matrix product per group: (O/G, C/G*kh*kw) @ (C/G*kh*kw, Ho*Wo).
    """
    batch, _, height, width = x.shape
    out_chs, in_per_group, kh, kw = weight.shape
    out_h = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = im2col(x, (kh, kw), stride, padding, dilation)  # (B, C*kh*kw, Ho*Wo)
    cols = cols.view(batch, groups, in_per_group * kh * kw, out_h * out_w)
    kernels = weight.reshape(groups, out_chs // groups, in_per_group * kh * kw)
    y = torch.matmul(kernels, cols)  # (B, G, O/G, Ho*Wo)
    y = y.view(batch, out_chs, out_h, out_w)
    if bias is not None:
        y += bias.view(1, -1, 1, 1)
    return y


def weight_gradient(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: Pair, stride: Pair,
                    padding: Pair, dilation: Pair, groups: int) -> torch.Tensor:
    """dL/dw[o, i, u, v] = sum_{b,r,c} dL/dy[b, o, r, c] x~[b, gC/G + i, s r + d u, s c + d v].

    The correlation of the input with the upstream gradient (the notes' "what a kernel pixel
    affects at the output: everything"): the same windows as the forward pass, now weighted by
    dL/dy instead of w. Returns (O, C/G, kh, kw).
    """
    batch, in_chs = x.shape[:2]
    out_chs = grad_out.shape[1]
    cols = im2col(x, kernel_size, stride, padding, dilation)  # (B, C*kh*kw, Ho*Wo)
    cols = cols.view(batch, groups, -1, cols.shape[-1])  # (B, G, C/G*kh*kw, L)
    grads = grad_out.reshape(batch, groups, out_chs // groups, -1)  # (B, G, O/G, L)
    grad_w = torch.einsum("bgol,bgkl->gok", grads, cols)  # sum over batch and positions
    return grad_w.reshape(out_chs, in_chs // groups, *kernel_size)


def insert_zeros(x: torch.Tensor, stride: Pair) -> torch.Tensor:
    """Put s - 1 zeros between neighbouring pixels: z[., ., s r, s c] = x[., ., r, c], else 0.

    (B, C, H, W) -> (B, C, (H-1)s+1, (W-1)s+1); the identity at stride 1.
    """
    if stride == (1, 1):
        return x
    batch, chans, height, width = x.shape
    z = x.new_zeros(batch, chans, (height - 1) * stride[0] + 1, (width - 1) * stride[1] + 1)
    z[:, :, ::stride[0], ::stride[1]] = x
    return z


def flip_transpose(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """w'[j, i, u, v] = w[i, j, k-1-u, k-1-v] within each group: rotate 180 degrees, swap in/out.

    (A, B/G, kh, kw) -> (B, A/G, kh, kw): a kernel that maps A channels to B, read backwards.
    """
    in_chs, out_per_group, kh, kw = weight.shape
    w = weight.reshape(groups, in_chs // groups, out_per_group, kh, kw).transpose(1, 2)
    return w.reshape(groups * out_per_group, in_chs // groups, kh, kw).flip(-2, -1)
