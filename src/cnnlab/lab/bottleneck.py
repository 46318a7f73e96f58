"""Bottleneck: 1x1 reductions cut the cost of inception modules (Szegedy et al. 2015).

The course's cost argument (deeplearning.ai's CNN course, case studies): a 5x5 "same" convolution
with 32 filters on a 28x28x192 volume costs 28*28*32 * 5*5*192 = 120,422,400 multiply-adds;
reducing to 16 channels with a 1x1 convolution first costs 28*28*16*192 + 28*28*32 * 5*5*16 =
2,408,448 + 10,035,200 = 12,443,648, about a tenth. GoogLeNet's inception (3a) module applies the
same reductions to its 3x3, 5x5 and pooling branches. Part one counts parameters and multiply-adds
(``cnnlab.summary``) of the 5x5 example and of module (3a) with and without the reductions (the
paper's "naive" module, whose pooling branch passes all 192 input channels through).

Part two trains two small inception networks on Fashion-MNIST at an *equal budget* of
multiply-adds per image: one with reductions, one naive whose branch widths are scaled down
until it costs no more than the first. The notes' argument predicts the bottleneck net buys more
accuracy for the same compute.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnlab.analysis import summary
from cnnlab.lab.common import Experiment, LabContext, Outcome, points, verdict
from cnnlab.models.googlenet import BasicConv2d, Inception

INCEPTION_3A = (64, 96, 128, 16, 32, 32)  # c1, c3 reduce, c3, c5 reduce, c5, pool proj (Table 1)
# Two modules of the small net (on 14x14 and 7x7 maps), same column meaning as INCEPTION_3A.
SMALL_CFG = ((16, 24, 32, 4, 8, 8), (32, 32, 48, 8, 16, 16))


class NaiveInception(nn.Module):
    """The naive module (Szegedy et al. 2015, Fig. 2a): 1x1, 3x3, 5x5 and 3x3 max pooling on the
    input directly, concatenated: out = c1 + c3 + c5 + in_chs channels."""

    def __init__(self, in_chs: int, cfg: tuple[int, ...], bn: bool = True) -> None:
        super().__init__()
        c1, _, c3, _, c5, _ = cfg
        self.out_chs = c1 + c3 + c5 + in_chs
        self.branch1 = BasicConv2d(in_chs, c1, bn, kernel_size=1)
        self.branch2 = BasicConv2d(in_chs, c3, bn, kernel_size=3, padding=1)
        self.branch3 = BasicConv2d(in_chs, c5, bn, kernel_size=5, padding=2)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([b(x) for b in branches], 1)  # (B, c1 + c3 + c5 + in_chs, H, W)


def _scaled(cfg: tuple[int, ...], width: float) -> tuple[int, ...]:
    return tuple(max(1, round(c * width)) for c in cfg)


class SmallInceptionNet(nn.Module):
    """stem 3x3 conv(32) - pool - inception - pool - inception - global avg pool - fc."""

    def __init__(self, reduce: bool, width: float = 1.0, in_chans: int = 1, num_classes: int = 10):
        super().__init__()
        self.stem = BasicConv2d(in_chans, 32, True, kernel_size=3, padding=1)  # (B, 32, 28, 28)
        self.pool = nn.MaxPool2d(2)
        chs, blocks = 32, []
        for cfg in SMALL_CFG:
            cfg = _scaled(cfg, width)
            block = Inception(chs, cfg, bn=True) if reduce else NaiveInception(chs, cfg)
            chs = cfg[0] + cfg[2] + cfg[4] + cfg[5] if reduce else block.out_chs
            blocks.append(block)
        self.block1, self.block2 = blocks
        self.fc = nn.Linear(chs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(self.pool(self.stem(x)))  # (B, C1, 14, 14)
        x = self.block2(self.pool(x))  # (B, C2, 7, 7)
        return self.fc(x.mean((2, 3)))


def cost(module: nn.Module, input_size: tuple[int, ...]) -> dict:
    """Parameters and multiply-adds of one forward pass on ``input_size`` (C, H, W)."""
    s = summary(module, input_size)
    return dict(params=s.total_params, macs=s.total_macs)


def equal_budget_width(budget_macs: int, in_chans: int, size: int) -> float:
    """The largest naive-net width multiplier (to 1%) whose multiply-adds stay within budget."""
    lo, hi = 0.05, 4.0
    for _ in range(20):
        mid = (lo + hi) / 2
        macs = cost(SmallInceptionNet(False, mid, in_chans), (in_chans, size, size))["macs"]
        lo, hi = (mid, hi) if macs <= budget_macs else (lo, mid)
    return math.floor(lo * 1000) / 1000  # rounded down: never above the budget


def module_costs() -> dict:
    """Part one: the course's 5x5 example and inception (3a), with and without reductions."""
    five = nn.Conv2d(192, 32, 5, padding=2)
    reduced = nn.Sequential(nn.Conv2d(192, 16, 1), nn.Conv2d(16, 32, 5, padding=2))
    shape = (192, 28, 28)
    return dict(five_by_five=cost(five, shape), five_by_five_reduced=cost(reduced, shape),
                inception_3a=cost(Inception(192, INCEPTION_3A, bn=False), shape),
                inception_3a_naive=cost(NaiveInception(192, INCEPTION_3A, bn=False), shape))


def run(ctx: LabContext) -> Outcome:
    s = ctx.settings
    numbers = dict(modules=module_costs())
    train = ctx.data("fashion-mnist", "train", s["n_train"])
    test = ctx.data("fashion-mnist", "test", s["n_test"])
    numbers.update(n_test=len(test), num_classes=train.num_classes)
    chans, size = train.image_shape[0], train.image_shape[-1]
    budget = cost(SmallInceptionNet(True, 1.0, chans), (chans, size, size))
    width = equal_budget_width(budget["macs"], chans, size)
    nets = dict(bottleneck=(True, 1.0), naive=(False, width))
    numbers["nets"] = {}
    for i, (name, (reduce, w)) in enumerate(nets.items()):
        ctx.seed_all(i)
        model = SmallInceptionNet(reduce, w, chans, train.num_classes)
        c = cost(model, (chans, size, size))
        history = ctx.train(model, name, train, test, s["epochs"], s["lr"], s["batch_size"])
        numbers["nets"][name] = dict(width=w, **c, test_acc=points(history[-1]["test_acc"]),
                                     train_acc=points(history[-1]["train_acc"]), history=history)
    _plot(ctx, numbers)
    return Outcome(numbers, *_sentence(numbers))


def _plot(ctx: LabContext, numbers: dict) -> None:
    fig, (ax1, ax2) = ctx.figure(2)
    m = numbers["modules"]
    labels = ["5x5 conv", "1x1 -> 5x5", "3a naive", "3a with 1x1"]
    keys = ["five_by_five", "five_by_five_reduced", "inception_3a_naive", "inception_3a"]
    ax1.bar(labels, [m[k]["macs"] / 1e6 for k in keys],
            color=["tab:red", "tab:green", "tab:red", "tab:green"])
    for i, k in enumerate(keys):
        ax1.text(i, m[k]["macs"] / 1e6, f"{m[k]['macs'] / 1e6:.1f}M\n{m[k]['params'] / 1e3:.0f}k p",
                 ha="center", va="bottom", fontsize=8)
    ax1.set_ylim(top=1.2 * max(m[k]["macs"] / 1e6 for k in keys))  # room for the labels
    ax1.set_ylabel("multiply-adds (millions) on 28x28x192")
    ax1.set_title("cost with and without 1x1 reductions")
    for name, row in numbers["nets"].items():
        epochs = [h["epoch"] for h in row["history"]]
        ax2.plot(epochs, [100 * h["test_acc"] for h in row["history"]], marker="o",
                 label=f"{name} ({row['macs'] / 1e6:.2f}M MACs, {row['params'] / 1e3:.0f}k params)")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("test accuracy (%)")
    ax2.set_title("accuracy at an equal multiply-add budget")
    ax2.legend(fontsize=8)
    ctx.save(fig, "bottleneck", "Left: multiply-adds (bars) and parameters (labels) of the course's "
             "5x5 example and of inception (3a). Right: test accuracy of two small inception nets "
             "with the same multiply-add budget.")


def _sentence(numbers: dict):
    m = numbers["modules"]
    naive, full = m["inception_3a_naive"], m["inception_3a"]
    five, five_r = m["five_by_five"], m["five_by_five_reduced"]
    b, n = numbers["nets"]["bottleneck"], numbers["nets"]["naive"]
    evidence = verdict("bottleneck vs naive test accuracy at an equal budget", numbers["n_test"],
                       numbers["num_classes"],
                       trained={"the net with reductions": b["test_acc"], "the naive net": n["test_acc"]},
                       compare=(b["test_acc"], n["test_acc"]))
    text = evidence.says(
        f"the reductions bought accuracy for the same compute, as the notes argue ({evidence.detail})",
        f"at this scale the reductions cost accuracy for the same compute, contrary to the notes' "
        f"expectation ({evidence.detail})")
    return (f"The 1x1 reductions cut inception (3a) on 28x28x192 from {naive['macs'] / 1e6:.0f}M to "
            f"{full['macs'] / 1e6:.0f}M multiply-adds ({naive['macs'] / full['macs']:.1f}x fewer) and "
            f"from {naive['params'] / 1e3:.0f}k to {full['params'] / 1e3:.0f}k parameters (the course's "
            f"5x5 example: {five['macs'] / 1e6:.1f}M -> {five_r['macs'] / 1e6:.1f}M); at an equal "
            f"budget of {b['macs'] / 1e6:.2f}M multiply-adds per image the net with reductions reached "
            f"{b['test_acc']:.1f}% test accuracy and the naive one (widths x{n['width']:.2f}) "
            f"{n['test_acc']:.1f}%: {text}.", [evidence])


EXPERIMENT = Experiment(
    name="bottleneck",
    claim="1x1 bottlenecks cut the cost of inception modules, and buy accuracy at equal cost",
    settings=dict(
        default=dict(n_train=10000, n_test=2000, epochs=3, lr=0.05, batch_size=128),
        quick=dict(n_train=200, n_test=80, epochs=1, batch_size=50),
        full=dict(n_train=60000, n_test=10000, epochs=15),
    ),
    run=run,
    runs=lambda s: 2,  # with and without the reductions
)
