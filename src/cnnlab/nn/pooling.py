"""Pooling: max and average (torch's), LeNet's trainable subsampling, learned pooling, global average.

"There are multiple types of pooling, such as max pooling or mean pooling. You can also learn a
pooling type via back propagation" (the course notes on CNNs). Two learned types are here: a
per-channel mix of max and average, and LP pooling whose exponent p is a parameter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import AdaptiveAvgPool2d, AvgPool2d, LPPool2d, MaxPool2d

from cnnlab.nn.subsampling import TrainableSubsampling

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "GlobalAvgPool2d", "LPPool2d", "LearnedLPPool2d",
           "MaxPool2d", "MixedPool2d", "TrainableSubsampling"]


class MixedPool2d(nn.Module):
    """y_c = a_c max_R(x_c) + (1 - a_c) mean_R(x_c), a_c = sigmoid(alpha_c) learned per channel.

    a_c = 1 is max pooling, a_c = 0 average pooling; ``alpha`` starts at 0 (an even mix) unless
    ``init_mix`` says otherwise. Window R: kernel k, stride s (default k), padding p.
    """

    def __init__(self, channels: int, kernel_size: int = 2, stride: int | None = None,
                 padding: int = 0, init_mix: float = 0.5) -> None:
        super().__init__()
        if not 0.0 < init_mix < 1.0:
            raise ValueError(f"init_mix must be strictly between 0 and 1 (got {init_mix})")
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        logit = torch.logit(torch.tensor(float(init_mix)))
        self.alpha = nn.Parameter(torch.full((channels,), float(logit)))

    def mix(self) -> torch.Tensor:
        """The per-channel weight a_c of max pooling, in (0, 1)."""
        return torch.sigmoid(self.alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, Ho, Wo)
        args = (self.kernel_size, self.stride, self.padding)
        mixed = self.mix().view(1, -1, 1, 1)
        return mixed * F.max_pool2d(x, *args) + (1 - mixed) * F.avg_pool2d(x, *args)

    def extra_repr(self) -> str:
        return f"{self.alpha.numel()}, kernel_size={self.kernel_size}, stride={self.stride}"


class LearnedLPPool2d(nn.Module):
    """y_c = (mean_R |x_c|^p_c)^(1/p_c), p_c = 1 + softplus(rho_c) > 1 learned per channel.

    The power mean: p = 1 is average pooling of |x|, p -> infinity tends to max pooling of |x|
    (Sermanet et al. 2012, "Convolutional neural networks applied to house numbers digit
    classification"). torch's ``nn.LPPool2d`` (fixed p, a sum not a mean) equals this times
    |R|^(1/p) for non-negative inputs.
    """

    def __init__(self, channels: int, kernel_size: int = 2, stride: int | None = None,
                 init_p: float = 2.0, eps: float = 1e-6) -> None:
        super().__init__()
        if init_p <= 1.0:
            raise ValueError(f"init_p must be > 1 (got {init_p}); p = 1 is average pooling")
        self.kernel_size, self.stride, self.eps = kernel_size, stride or kernel_size, eps
        excess = torch.tensor(init_p - 1.0, dtype=torch.float64)
        rho = excess + torch.log(-torch.expm1(-excess))  # softplus^-1(p - 1), overflow-free
        self.rho = nn.Parameter(torch.full((channels,), float(rho)))

    def p(self) -> torch.Tensor:
        """The per-channel exponent p_c > 1."""
        return 1.0 + F.softplus(self.rho)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, Ho, Wo)
        p = self.p().view(1, -1, 1, 1)
        powered = x.abs().clamp_min(self.eps).pow(p)  # eps keeps d/dp of 0^p finite
        return F.avg_pool2d(powered, self.kernel_size, self.stride).pow(1.0 / p)

    def extra_repr(self) -> str:
        return f"{self.rho.numel()}, kernel_size={self.kernel_size}, stride={self.stride}"


class GlobalAvgPool2d(nn.Module):
    """y[b, c] = (1 / HW) sum_{r,c} x[b, c, r, c]: one number per map (NIN, GoogLeNet, ResNet).

    ``flatten=False`` keeps the (B, C, 1, 1) shape of ``nn.AdaptiveAvgPool2d(1)``.
    """

    def __init__(self, flatten: bool = True) -> None:
        super().__init__()
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C)
        pooled = F.adaptive_avg_pool2d(x, 1)  # (B, C, 1, 1)
        return torch.flatten(pooled, 1) if self.flatten else pooled

    def extra_repr(self) -> str:
        return f"flatten={self.flatten}"
