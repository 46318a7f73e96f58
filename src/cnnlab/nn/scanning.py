"""The scanning MLP and the CNN it becomes: a time-delay neural network (CMU 11-785).

An MLP that reads a window of W steps of a (C, T) signal and is slid along it with stride S
computes, at window t, MLP(x[:, tS : tS + W]). Its first layer is a Conv1d of kernel W and
stride S (the window flattened channel-major, (C, W) -> C*W), and every later Linear layer a
Conv1d of kernel 1: a TDNN with exactly the MLP's parameters, shared across positions.

In the *distributed* form the first layer's neurons see only part of the window and deeper
layers combine them; the notes' example is 4 filters of width 2 stride 2, then 3 filters of width
2 stride 2, then 2 filters of width 2 stride 2 (a window of 8, stride 8). Expanded back into a
flat MLP over the window, the shared neurons are repeated and most weights are zero.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
from torch import nn

__all__ = ["distributed_tdnn", "scan_mlp", "scanning_mlp_to_tdnn", "tdnn_to_scanning_mlp"]

NOTES_DISTRIBUTED_LAYERS = ((4, 2, 2), (3, 2, 2), (2, 2, 2))  # (filters, width, stride) per layer


def scan_mlp(mlp: nn.Module, x: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """out[b, :, t] = mlp(x[b, :, tS : tS + W] flattened channel-major), t = 0 .. (T-W)//S.

    The scanning MLP run literally, window by window. (B, C, T) -> (B, out_features, n).
    """
    windows = x.unfold(2, window, stride)  # (B, C, n, W)
    flat = windows.permute(0, 2, 1, 3).reshape(x.shape[0], windows.shape[2], -1)  # (B, n, C*W)
    return mlp(flat).transpose(1, 2)  # (B, out, n)


def scanning_mlp_to_tdnn(mlp_layers: Iterable[nn.Module], window: int, stride: int) -> nn.Sequential:
    """The Conv1d network (TDNN) equal to the MLP ``mlp_layers`` scanned with (window, stride).

    Linear(C*W, h1) -> Conv1d(C, h1, kernel W, stride S), kernel[o, c, u] = weight[o, c W + u];
    Linear(h_i, h_j) -> Conv1d(h_i, h_j, kernel 1); other modules (activations) are copied.
    Parameters are copied; the counts are equal, since the TDNN shares them across positions.
    """
    layers = list(mlp_layers.children()) if isinstance(mlp_layers, nn.Sequential) else list(mlp_layers)
    if not layers or not isinstance(layers[0], nn.Linear):
        raise ValueError("the MLP must start with an nn.Linear layer (got "
                         f"{type(layers[0]).__name__ if layers else 'no layers'})")
    if layers[0].in_features % window:
        raise ValueError(f"the first layer's {layers[0].in_features} inputs are not channels x "
                         f"window {window}; use in_features = in_chs * window")
    convs = []
    for index, layer in enumerate(layers):
        if not isinstance(layer, nn.Linear):
            convs.append(copy.deepcopy(layer))
            continue
        first = index == 0
        in_chs = layer.in_features // window if first else layer.in_features
        kernel = window if first else 1
        conv = nn.Conv1d(in_chs, layer.out_features, kernel, stride if first else 1,
                         bias=layer.bias is not None, device=layer.weight.device,
                         dtype=layer.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(layer.weight.view(layer.out_features, in_chs, kernel))
            if layer.bias is not None:
                conv.bias.copy_(layer.bias)
        convs.append(conv)
    return nn.Sequential(*convs)


def distributed_tdnn(in_chs: int, layers: Sequence[tuple[int, int, int]] = NOTES_DISTRIBUTED_LAYERS,
                     activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Conv1d layers (filters, width, stride) with ``activation`` between them (not after the last).

    The default is the notes' distributed scanning MLP: 4 filters of width 2 stride 2, 3 filters of
    width 2 stride 2, 2 filters of width 2 stride 2; it sees a window of
    W = k1 + (k2-1) s1 + (k3-1) s1 s2 = 8 steps and moves by S = s1 s2 s3 = 8.
    """
    modules: list[nn.Module] = []
    chans = in_chs
    for index, (filters, width, stride) in enumerate(layers):
        modules.append(nn.Conv1d(chans, filters, width, stride))
        if index < len(layers) - 1:
            modules.append(activation())
        chans = filters
    return nn.Sequential(*modules)


def _conv_layers(tdnn: nn.Sequential) -> list[nn.Conv1d]:
    convs = [m for m in tdnn.children() if isinstance(m, nn.Conv1d)]
    for conv in convs:
        if conv.padding != (0,) or conv.dilation != (1,) or conv.groups != 1:
            raise ValueError("only unpadded, undilated, ungrouped Conv1d layers scan like an MLP")
    return convs


def tdnn_to_scanning_mlp(tdnn: nn.Sequential) -> tuple[nn.Sequential, int, int]:
    """The flat MLP (and its window W and stride S) that a TDNN of Conv1d layers computes.

    W = sum_l (k_l - 1) prod_{m<l} s_m + 1 and S = prod_l s_l. Layer l has n_l positions inside
    the window (n_0 = W, n_l = (n_{l-1} - k_l)//s_l + 1, n_last = 1); its Linear layer holds the
    shared kernel once per position: weight[o n_l + j, c n_{l-1} + j s_l + u] = kernel[o, c, u],
    zero elsewhere. ``scan_mlp(mlp, x, W, S)`` then equals ``tdnn(x)``.
    """
    convs = _conv_layers(tdnn)
    window, jump = 1, 1
    for conv in convs:
        window += (conv.kernel_size[0] - 1) * jump
        jump *= conv.stride[0]
    positions = window
    modules: list[nn.Module] = []
    for layer in tdnn.children():
        if not isinstance(layer, nn.Conv1d):
            modules.append(copy.deepcopy(layer))
            continue
        (kernel,), (stride,) = layer.kernel_size, layer.stride
        out_positions = (positions - kernel) // stride + 1
        in_chs, out_chs = layer.in_channels, layer.out_channels
        dense = layer.weight.new_zeros(out_chs, out_positions, in_chs, positions)
        for j in range(out_positions):  # the same kernel, repeated at each position
            dense[:, j, :, j * stride: j * stride + kernel] = layer.weight.detach()
        linear = nn.Linear(in_chs * positions, out_chs * out_positions, bias=layer.bias is not None,
                           device=dense.device, dtype=dense.dtype)
        with torch.no_grad():
            linear.weight.copy_(dense.reshape(out_chs * out_positions, in_chs * positions))
            if layer.bias is not None:
                linear.bias.copy_(layer.bias.detach().repeat_interleave(out_positions))
        modules.append(linear)
        positions = out_positions
    if positions != 1:
        raise ValueError(f"the last layer still has {positions} positions inside one window; "
                         "its kernel must cover the whole remaining width")
    return nn.Sequential(*modules), window, jump
