"""Explicit (hand-derived backward) vs native convolution: forward + backward time ratio.

Baseline: ``torch.nn.Conv2d`` (oneDNN/cuDNN). Candidate: ``cnnlab.nn.ExplicitConv2d`` sharing the
same parameters. For each layer shape of LeNet-5, VGG-16's first two blocks and a ResNet-50
bottleneck, both run forward + backward (gradients for input, weight and bias) in alternation,
and the median times are compared in the same run.

    .venv/bin/python benchmarks/bench_explicit_conv.py [--device cpu] [--repeats 15] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from cnnlab.nn import explicit

# (group, name, in_chs, out_chs, kernel, stride, padding, input size, batch)
LAYERS = [
    ("LeNet-5", "C1 1->6 5x5 @32", 1, 6, 5, 1, 0, 32, 64),
    ("LeNet-5", "C3 6->16 5x5 @14", 6, 16, 5, 1, 0, 14, 64),
    ("LeNet-5", "C5 16->120 5x5 @5", 16, 120, 5, 1, 0, 5, 64),
    ("VGG-16", "conv1_1 3->64 3x3 @112", 3, 64, 3, 1, 1, 112, 2),
    ("VGG-16", "conv1_2 64->64 3x3 @112", 64, 64, 3, 1, 1, 112, 2),
    ("VGG-16", "conv2_1 64->128 3x3 @56", 64, 128, 3, 1, 1, 56, 2),
    ("VGG-16", "conv2_2 128->128 3x3 @56", 128, 128, 3, 1, 1, 56, 2),
    ("ResNet bottleneck", "1x1 256->64 @56", 256, 64, 1, 1, 0, 56, 2),
    ("ResNet bottleneck", "3x3 64->64 @56", 64, 64, 3, 1, 1, 56, 2),
    ("ResNet bottleneck", "1x1 64->256 @56", 64, 256, 1, 1, 0, 56, 2),
]


def _step(conv: nn.Module, x: torch.Tensor) -> None:
    conv.zero_grad(set_to_none=True)
    x.grad = None
    conv(x).sum().backward()


def _time(conv: nn.Module, x: torch.Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    _step(conv, x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_layer(spec: tuple, device: torch.device, repeats: int) -> tuple[float, float]:
    """Median seconds of (native, explicit) forward+backward, timed in alternation."""
    _, _, in_chs, out_chs, k, s, p, size, batch = spec
    native = nn.Conv2d(in_chs, out_chs, k, s, p).to(device)
    twin = explicit(native)  # a bare conv comes back as its explicit twin, same Parameters
    x = torch.randn(batch, in_chs, size, size, device=device, requires_grad=True)
    for _ in range(3):  # warm-up: allocator, oneDNN primitive cache
        _step(native, x)
        _step(twin, x)
    native_times, explicit_times = [], []
    for _ in range(repeats):
        native_times.append(_time(native, x, device))
        explicit_times.append(_time(twin, x, device))
    return statistics.median(native_times), statistics.median(explicit_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"repeats={args.repeats} (median forward+backward, fp32)")
    print("| group | layer (batch) | native ms | explicit ms | explicit/native |")
    print("|---|---|---:|---:|---:|")
    totals: dict[str, list[float]] = {}
    for spec in LAYERS:
        native_s, explicit_s = bench_layer(spec, device, args.repeats)
        group = totals.setdefault(spec[0], [0.0, 0.0])
        group[0] += native_s
        group[1] += explicit_s
        print(f"| {spec[0]} | {spec[1]} (B={spec[-1]}) | {native_s * 1e3:.2f} | "
              f"{explicit_s * 1e3:.2f} | {explicit_s / native_s:.2f}x |")
    for name, (native_s, explicit_s) in totals.items():
        print(f"| {name} | all layers above | {native_s * 1e3:.2f} | {explicit_s * 1e3:.2f} | "
              f"**{explicit_s / native_s:.2f}x** |")


if __name__ == "__main__":
    main()
