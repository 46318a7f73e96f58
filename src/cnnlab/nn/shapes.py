"""Output sizes of convolution, pooling and transposed convolution, and their inverses.

One spatial axis at a time, with the notes' symbols: input size i, kernel size k, stride s,
zero padding p (each side), dilation d. The dilated kernel covers d(k-1)+1 input pixels.
"""

from __future__ import annotations

import math

from cnnlab.errors import ShapeError

__all__ = ["output_size", "padding_for", "same_padding", "transposed_output_size"]


def _check_positive(name: str, **values: int) -> None:
    for key, value in values.items():
        if value < 1:
            raise ShapeError(f"{name}: {key} must be >= 1 (got {value})")


def output_size(i: int, k: int, s: int = 1, p: int = 0, d: int = 1, *, ceil_mode: bool = False,
                name: str = "layer") -> int:
    """o = floor((i + 2p - d(k-1) - 1) / s) + 1, the size of a convolution or pooling output.

    The notes write o = floor((i - k + 2p) / s) + 1, the case d = 1. With ``ceil_mode`` (pooling)
    the floor becomes a ceiling, and, as in PyTorch, a last window that would start in the right
    padding is dropped: if (o - 1) s >= i + p then o = o - 1.

    Raises:
        ShapeError: if o < 1, naming ``name`` and the numbers that made the output empty.
    """
    _check_positive(name, kernel_size=k, stride=s, dilation=d)
    if i < 1 or p < 0:
        raise ShapeError(f"{name}: input size must be >= 1 and padding >= 0 (got i={i}, p={p})")
    extent = d * (k - 1) + 1  # input pixels one (dilated) kernel placement covers
    span = i + 2 * p - extent  # how far the kernel can slide
    o = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (o - 1) * s >= i + p:
        o -= 1  # the last window would start in the right padding (PyTorch's pooling rule)
    if o < 1:
        raise ShapeError(
            f"{name}: output size would be {o} < 1: the padded input i + 2p = {i} + 2*{p} = "
            f"{i + 2 * p} is smaller than the kernel extent d(k-1)+1 = {extent} (k={k}, d={d}"
            f"{', ceil_mode' if ceil_mode else ''}); use a larger input, more padding, or a "
            f"smaller kernel/dilation")
    return o


def transposed_output_size(i: int, k: int, s: int = 1, p: int = 0, output_padding: int = 0,
                           d: int = 1, *, name: str = "layer") -> int:
    """o = (i - 1) s - 2p + d(k-1) + output_padding + 1, the size of a transposed convolution.

    It inverts :func:`output_size`: a convolution (k, s, p, d) maps each of the ``s`` sizes
    o, ..., o + s - 1 to i, and ``output_padding`` (< max(s, d)) picks which one comes back.

    Raises:
        ShapeError: if output_padding >= max(s, d), or if o < 1.
    """
    _check_positive(name, input_size=i, kernel_size=k, stride=s, dilation=d)
    if not 0 <= output_padding < max(s, d):
        raise ShapeError(
            f"{name}: output_padding must be in [0, max(stride, dilation)) = [0, {max(s, d)}) "
            f"(got {output_padding})")
    o = (i - 1) * s - 2 * p + d * (k - 1) + output_padding + 1
    if o < 1:
        raise ShapeError(
            f"{name}: transposed output size would be {o} < 1: padding p={p} crops more than "
            f"(i-1)s + d(k-1) + output_padding + 1 = {o + 2 * p}; use less padding")
    return o


def same_padding(k: int, d: int = 1, *, name: str = "layer") -> int:
    """p = d(k-1)/2, the padding that keeps o = i at stride 1 (VGG's 3x3 with p = 1).

    Raises:
        ShapeError: if d(k-1) is odd: "same" then needs unequal padding on the two sides.
    """
    _check_positive(name, kernel_size=k, dilation=d)
    total = d * (k - 1)
    if total % 2:
        raise ShapeError(
            f"{name}: no symmetric 'same' padding for k={k}, d={d}: d(k-1) = {total} is odd; "
            f"pad ({total // 2}, {total - total // 2}) with F.pad, or use padding='same'")
    return total // 2


def padding_for(i: int, k: int, s: int = 1, target: int = 1, d: int = 1, *,
                name: str = "layer") -> int:
    """The smallest p >= 0 with output_size(i, k, s, p, d) == target.

    From floor((i + 2p - d(k-1) - 1)/s) = target - 1:  s(target-1) <= i + 2p - d(k-1) - 1 <=
    s(target-1) + s - 1, so 2p lies in [s(target-1) - i + d(k-1) + 1, s*target - i + d(k-1)].

    Raises:
        ShapeError: if no padding gives ``target`` (a target below the p = 0 size is out of
            reach, and at stride 1 the size moves in steps of 2, so every other target is too).
    """
    _check_positive(name, input_size=i, kernel_size=k, stride=s, dilation=d, target=target)
    low = s * (target - 1) - i + d * (k - 1) + 1
    high = s * target - i + d * (k - 1)
    p = max(0, math.ceil(low / 2))
    if 2 * p > high:
        reachable = ", ".join(
            f"p={q} -> {output_size(i, k, s, q, d)}" for q in range(3)
            if i + 2 * q >= d * (k - 1) + 1)
        raise ShapeError(
            f"{name}: no padding p >= 0 gives output size {target} for i={i}, k={k}, s={s}, d={d} "
            f"({reachable or 'input too small even with p=2'}); change the kernel or stride")
    return p
