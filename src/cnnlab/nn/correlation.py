"""The primitives of the notes' convolution algebra, as plain tensor operations (no autograd).

Everything is 2D on (B, C, H, W); a 1D signal is the case H = 1. With x~ the zero-padded input,
stride s, dilation d and G groups of C/G input and O/G output channels:

    cross-correlation  y[b, o, r, c] = sum_{i,u,v} w[o, i, u, v] x~[b, gC/G+i, s r+d u, s c+d v]
    weight gradient    dL/dw[o, i, u, v] = sum_{b,r,c} g[b, o, r, c] x~[b, gC/G+i, s r+d u, s c+d v]

with g = dL/dy the upstream gradient.

The sliding windows x~[., ., s r + d u, s c + d v] are one strided view of x~ (``windows``), laid
out as columns by a copy (``im2col``), so both sums become matrix products, the form the notes
call "simple vectorized linear algebra". The columns are made a block of windows at a time
(``blocks``), each block multiplied as soon as it is copied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Pair = tuple[int, int]


def pair(value: int | tuple[int, ...]) -> Pair:
    """(v, v) for an int; a tuple as it is."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


# Values in one block of columns (16 MB of float32). A whole im2col is C k^2 times the input:
# tens of MB for a VGG layer, and a buffer over 32 MB is a fresh mmap from the C allocator whose
# pages fault in on first touch (as slow as the copy itself). Blocks this size stay in the
# allocator's heap, and are few enough that the per-block work (one copy, one matrix product,
# each a parallel region of the CPU's threads) does not add up.
BLOCK_VALUES = 1 << 22


def windows(x: torch.Tensor, kernel_size: Pair, stride: Pair, padding: Pair,
            dilation: Pair) -> torch.Tensor:
    """The sliding windows, no copy: windows[i, u, v, b, r, c] = x~[b, i, s r + d u, s c + d v].

    A view of the padded input x~ with strides (d, d) along the kernel offsets (u, v) and (s, s)
    along the output positions (r, c): (C, kh, kw, B, Ho, Wo).
    """
    if padding != (0, 0):
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))  # x~
    batch, chans, height, width = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    out_h = (height - dh * (kh - 1) - 1) // sh + 1
    out_w = (width - dw * (kw - 1) - 1) // sw + 1
    st_b, st_c, st_h, st_w = x.stride()
    return x.as_strided((chans, kh, kw, batch, out_h, out_w),
                        (st_c, dh * st_h, dw * st_w, st_b, sh * st_h, sw * st_w), x.storage_offset())


def im2col(x: torch.Tensor, kernel_size: Pair, stride: Pair, padding: Pair,
           dilation: Pair) -> torch.Tensor:
    """One column per window: cols[(i, u, v), (b, r, c)] = x~[b, i, s r + d u, s c + d v].

    (B, C, H, W) -> (C*kh*kw, B*Ho*Wo): ``F.unfold`` with the batch folded into the columns,
    written as the index formula: :func:`windows`, copied once.
    """
    win = windows(x, kernel_size, stride, padding, dilation)
    return win.reshape(-1, win.shape[3] * win.shape[4] * win.shape[5])


def blocks(batch: int, out_h: int, values_per_row: int,
           budget: int | None = None) -> list[tuple[slice, slice]]:
    """(samples, output rows) blocks that cover batch x out_h with at most ``budget`` column
    values each (one row at least): whole samples folded together while they fit (small maps,
    as LeNet's), bands of rows of one sample otherwise (large maps, as VGG's); ``budget``
    defaults to :data:`BLOCK_VALUES`."""
    rows = max(1, (BLOCK_VALUES if budget is None else budget) // max(values_per_row, 1))
    if rows >= out_h:
        step = min(batch, rows // out_h)
        return [(slice(b, min(b + step, batch)), slice(0, out_h)) for b in range(0, batch, step)]
    return [(slice(b, b + 1), slice(r, min(r + rows, out_h)))
            for b in range(batch) for r in range(0, out_h, rows)]


def correlate2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                stride: Pair = (1, 1), padding: Pair = (0, 0), dilation: Pair = (1, 1),
                groups: int = 1) -> torch.Tensor:
    """y[b, o, r, c] = bias[o] + sum_{i,u,v} w[o, i, u, v] x~[b, gC/G + i, s r + d u, s c + d v].

    The forward pass of a convolution layer (a cross-correlation: the kernel is not flipped),
    computed block by block (:func:`blocks`) as one matrix product per group:
    w (O/G, C/G*kh*kw) @ cols (C/G*kh*kw, positions of the block).
    """
    out_chs, in_per_group, kh, kw = weight.shape
    win = windows(x, (kh, kw), stride, padding, dilation)  # (C, kh, kw, B, Ho, Wo)
    batch, out_h, out_w = win.shape[3:]
    kernels = weight.reshape(groups, out_chs // groups, in_per_group * kh * kw)
    y = x.new_empty(batch, out_chs, out_h, out_w)
    for samples, rows in blocks(batch, out_h, win.shape[0] * kh * kw * out_w):
        cols = win[:, :, :, samples, rows].reshape(groups, in_per_group * kh * kw, -1)  # copy
        part = torch.bmm(kernels, cols)  # (G, O/G, nb*nr*Wo)
        y[samples, :, rows] = part.view(out_chs, -1, rows.stop - rows.start, out_w).transpose(0, 1)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return y.contiguous(memory_format=torch.channels_last) if channels_last else y


def weight_gradient(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: Pair, stride: Pair,
                    padding: Pair, dilation: Pair, groups: int) -> torch.Tensor:
    """dL/dw[o, i, u, v] = sum_{b,r,c} dL/dy[b, o, r, c] x~[b, gC/G + i, s r + d u, s c + d v].

    The correlation of the input with the upstream gradient (the notes' "what a kernel pixel
    affects at the output: everything"): the same windows as the forward pass, now weighted by
    dL/dy instead of w, summed over batch and positions (block by block, :func:`blocks`).
    Returns (O, C/G, kh, kw).
    """
    in_chs, out_chs = x.shape[1], grad_out.shape[1]
    win = windows(x, kernel_size, stride, padding, dilation)  # (C, kh, kw, B, Ho, Wo)
    batch, out_h, out_w = win.shape[3:]
    k_values = in_chs // groups * kernel_size[0] * kernel_size[1]
    grad_w = x.new_zeros(groups, out_chs // groups, k_values)
    for samples, rows in blocks(batch, out_h, groups * k_values * out_w):
        cols = win[:, :, :, samples, rows].reshape(groups, k_values, -1)  # (G, C/G*kh*kw, n)
        grads = grad_out[samples, :, rows].transpose(0, 1).reshape(groups, out_chs // groups, -1)
        grad_w.baddbmm_(grads, cols.transpose(1, 2))  # += g (O/G, n) @ cols^T (n, C/G*kh*kw)
    return grad_w.reshape(out_chs, in_chs // groups, *kernel_size)


def flip_transpose(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """w'[j, i, u, v] = w[i, j, k-1-u, k-1-v] within each group: rotate 180 degrees, swap in/out.

    (A, B/G, kh, kw) -> (B, A/G, kh, kw): a kernel that maps A channels to B, read backwards.
    """
    in_chs, out_per_group, kh, kw = weight.shape
    w = weight.reshape(groups, in_chs // groups, out_per_group, kh, kw).transpose(1, 2)
    return w.reshape(groups * out_per_group, in_chs // groups, kh, kw).flip(-2, -1)
