"""LeNet-5's trainable subsampling (layers S2 and S4 of LeCun et al. 1998)."""

import torch
import torch.nn.functional as F
from torch import nn


class TrainableSubsampling(nn.Module):
    """y_c = w_c * sum_{2x2 window}(x_c) + b_c: one trainable coefficient and bias per map.

    "The four inputs to a unit in S2 are added, then multiplied by a trainable coefficient, and
    added to a trainable bias" (LeNet-5, Sec. II-B). Non-overlapping windows (stride = kernel).
    Parameters: 2 per channel (S2: 6 maps -> 12, S4: 16 maps -> 32).
    """

    def __init__(self, channels: int, kernel_size: int = 2) -> None:
        super().__init__()
        self.channels = channels
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The paper's rule: uniform in +-2.4 / fan_in, with fan_in = k*k inputs per unit.
        bound = 2.4 / self.kernel_size**2
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H/k, W/k)
        window_sum = F.avg_pool2d(x, self.kernel_size) * self.kernel_size**2
        return window_sum * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}"
