"""Convolution with a fixed connection table between input and output maps (LeNet-5's C3)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SparseConv2d(nn.Module):
    """A convolution where output map j sees only the input maps ``table[j]``.

    Only the connected kernels are parameters: sum_j |table[j]| * k * k weights plus one bias per
    output map (LeNet-5's C3: 60 connections * 25 + 16 = 1,516). The forward pass scatters them
    into a dense (out, in, k, k) kernel with zeros elsewhere and runs an ordinary convolution.
    """

    def __init__(self, in_chs: int, table: Sequence[Sequence[int]], kernel_size: int) -> None:
        super().__init__()
        self.in_chs = in_chs
        self.out_chs = len(table)
        self.kernel_size = kernel_size
        self.table = tuple(tuple(int(i) for i in row) for row in table)
        pairs = [(j, i) for j, row in enumerate(self.table) for i in row]
        if any(not 0 <= i < in_chs for _, i in pairs):
            raise ValueError(f"connection table refers to input maps outside 0..{in_chs - 1}")
        self.register_buffer("out_index", torch.tensor([j for j, _ in pairs]), persistent=False)
        self.register_buffer("in_index", torch.tensor([i for _, i in pairs]), persistent=False)
        self.weight = nn.Parameter(torch.empty(len(pairs), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(self.out_chs))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The paper's rule, per output map: uniform in +-2.4 / fan_in (fan_in = |table[j]| k^2).
        fan_in = torch.tensor([len(row) * self.kernel_size**2 for row in self.table])
        bound = (2.4 / fan_in.float())[self.out_index].view(-1, 1, 1)
        with torch.no_grad():
            self.weight.uniform_(-1, 1).mul_(bound)
            self.bias.uniform_(-1, 1).mul_(2.4 / fan_in.float())

    def dense_weight(self) -> torch.Tensor:
        """The equivalent dense kernel (out_chs, in_chs, k, k), zero where nothing connects."""
        k = self.kernel_size
        dense = self.weight.new_zeros(self.out_chs, self.in_chs, k, k)
        return dense.index_put((self.out_index, self.in_index), self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.dense_weight(), self.bias)

    def extra_repr(self) -> str:
        return (f"{self.in_chs}, {self.out_chs}, kernel_size={self.kernel_size}, "
                f"connections={len(self.weight)}")
