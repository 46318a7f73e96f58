"""Explicit (hand-derived backward) vs native convolution: forward + backward time ratio.

Baseline: ``torch.nn.Conv2d`` (oneDNN/cuDNN). Candidate: ``cnnlab.nn.ExplicitConv2d`` sharing the
same parameters. For each layer shape of LeNet-5, VGG-16's first two blocks and a ResNet-50
bottleneck, both run forward + backward (gradients for input, weight and bias) in alternation
(benchmarks/_harness.py), and the medians of each layer and of each group's sum are compared in
the same run; a group's ratio is the median of its per-round ratios.

    .venv/bin/python benchmarks/bench_explicit_conv.py [--device cpu] [--repeats 15] [--threads N]
"""

from __future__ import annotations

import argparse

import torch
from _harness import Bench, Sample, add_arguments, ms, ratio, times
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


def bench_layer(bench: Bench, spec: tuple, device: torch.device, repeats: int
                ) -> dict[str, Sample]:
    """Seconds of native and explicit forward+backward, timed in alternation."""
    _, _, in_chs, out_chs, k, s, p, size, batch = spec
    native = nn.Conv2d(in_chs, out_chs, k, s, p).to(device)
    twin = explicit(native)  # a bare conv comes back as its explicit twin, same Parameters
    x = torch.randn(batch, in_chs, size, size, device=device, requires_grad=True)
    return bench.alternate({"native": lambda: _step(native, x), "explicit": lambda: _step(twin, x)},
                           rounds=repeats, warmup=3)  # warm-up: allocator, oneDNN primitive cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    add_arguments(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bench = Bench.from_args(args, sync=torch.cuda.synchronize if device.type == "cuda" else None)
    torch.manual_seed(0)
    table = bench.table("group", "layer (batch)", "native ms", "explicit ms", "explicit/native",
                        title=f"device={device} torch={torch.__version__} threads="
                              f"{torch.get_num_threads()} repeats={args.repeats} (median and IQR "
                              "of forward+backward, fp32)")
    groups: dict[str, list[dict[str, Sample]]] = {}
    for spec in LAYERS:
        samples = bench_layer(bench, spec, device, args.repeats)
        groups.setdefault(spec[0], []).append(samples)
        table.row(spec[0], f"{spec[1]} (B={spec[-1]})", ms(samples["native"]),
                  ms(samples["explicit"]), times(ratio(samples["explicit"], samples["native"])))
    for name, layers in groups.items():  # a group's round: the sum of its layers in that round
        total = {k: Sample(tuple(map(sum, zip(*(s[k].values for s in layers), strict=True))))
                 for k in ("native", "explicit")}
        table.row(name, "all layers above", ms(total["native"]), ms(total["explicit"]),
                  times(ratio(total["explicit"], total["native"])))
    bench.finish()


if __name__ == "__main__":
    main()
