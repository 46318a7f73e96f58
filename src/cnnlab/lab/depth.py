"""Depth: deeper plain networks train worse; residual networks of the same depth do not.

He et al. (2016, Fig. 1 and Fig. 6; arXiv:1512.03385): on CIFAR-10 the 56-layer plain network
has *higher training error* than the 20-layer one — not overfitting but an optimisation
difficulty ("degradation") — while ResNet-56 trains to lower error than ResNet-20. The pair is
the CIFAR nets of Sec. 4.2 (6n + 2 layers, option-A shortcuts, equal parameter counts), trained
here on Fashion-MNIST (28x28 maps) with one recipe for all; depths not in the zoo (e.g. 8 or 14
for ``--quick``) come from the zoo's own builder, :func:`cnnlab.models.resnet_cifar.cifar_net`.
``--full`` is the paper's own setting (Sec. 4.2): CIFAR-10, SGD with lr 0.1, momentum 0.9, weight
decay 1e-4, batch 128, the lr divided by 10 at 32k and 48k iterations, stopped at 64k (164 epochs
of 391 steps), 4-pixel padding + random 32x32 crop + horizontal flip, depths 20, 32, 44 and 56.
"""

from __future__ import annotations

from cnnlab.lab.common import COUNT, NON_NEGATIVE, Experiment, LabContext, Outcome, points, verdict
from cnnlab.models.resnet_cifar import cifar_net
from cnnlab.train.values import Range

__all__ = ["EXPERIMENT", "cifar_net", "run"]


def run(ctx: LabContext) -> Outcome:
    s = ctx.settings
    train = ctx.data(s["data"], "train", s["n_train"])
    test = ctx.data(s["data"], "test", s["n_test"])
    numbers = dict(models={}, n_train=len(train), num_classes=train.num_classes)
    for i, depth in enumerate(s["depths"]):
        for kind in ("plain", "resnet"):
            name = f"{kind}{depth}"
            ctx.seed_all(i)  # a plain net and its residual twin start from the same weights
            model = cifar_net(depth, kind == "resnet", s["widths"], num_classes=train.num_classes,
                              in_chans=train.image_shape[0], input_size=train.image_shape[-1])
            history = ctx.train(model, name, train, test, s["epochs"], s["lr"], s["batch_size"],
                                weight_decay=s["weight_decay"], seed_offset=i,
                                schedule=s["schedule"], step_epochs=s["step_epochs"],
                                augment=dict(crop_pad=s["crop_pad"], flip=s["flip"]))
            numbers["models"][name] = dict(
                depth=depth, residual=kind == "resnet",
                params=sum(p.numel() for p in model.parameters()),
                train_error=[points(1 - r["train_acc"]) for r in history],
                test_error=[points(1 - r["test_acc"]) for r in history],
                final_train_error=points(1 - history[-1]["train_acc"]),
                final_test_error=points(1 - history[-1]["test_acc"]))
    _plot(ctx, numbers["models"], s["depths"])
    return Outcome(numbers, *_sentence(numbers, s["depths"]))


def _plot(ctx: LabContext, models: dict, depths: list[int]) -> None:
    fig, axes = ctx.figure(2)
    colors = dict(zip(depths, ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange")))
    for ax, kind in zip(axes, ("plain", "resnet")):
        for depth in depths:
            row = models[f"{kind}{depth}"]
            epochs = range(1, len(row["train_error"]) + 1)
            # markers: one epoch (--quick) is a single point, which a bare line does not draw
            ax.plot(epochs, row["train_error"], "--", marker="s", color=colors[depth],
                    label=f"{kind}-{depth} train")
            ax.plot(epochs, row["test_error"], "-", marker="o", color=colors[depth],
                    label=f"{kind}-{depth} test")
        ax.set_xlabel("epoch")
        ax.set_ylabel("error (%)")
        ax.set_title(f"{kind} networks" if kind == "plain" else "residual networks (ResNet)")
        ax.legend(fontsize=8)
    ctx.save(fig, "depth", "Training (dashed) and test (solid) error of plain and residual "
             "networks of each depth, as in He et al. Fig. 1 and Fig. 6.")


def _sentence(numbers: dict, depths: list[int]):
    """The sentence and its verdicts: training errors compared within each kind, on n_train
    images, each shallow net required to have learned (above chance)."""
    models, n, classes = numbers["models"], numbers["n_train"], numbers["num_classes"]
    shallow, deep = min(depths), max(depths)
    verdicts = {}
    for kind in ("plain", "resnet"):
        a, b = models[f"{kind}{deep}"], models[f"{kind}{shallow}"]
        verdicts[kind] = verdict(
            f"{kind}{deep} vs {kind}{shallow} training error", n, classes,
            trained={f"{kind}{shallow}'s training accuracy": 100 - b["final_train_error"]},
            compare=(a["final_train_error"], b["final_train_error"]))

    def gap(kind: str) -> float:
        return models[f"{kind}{deep}"]["final_train_error"] - models[f"{kind}{shallow}"]["final_train_error"]

    def phrase(kind: str, value: float) -> str:
        if abs(value) < 0.05:
            return f"{kind}{deep} ended with the same training error as {kind}{shallow}"
        direction = "higher" if value > 0 else "lower"
        return (f"{kind}{deep} ended with {abs(value):.1f} points {direction} training error "
                f"than {kind}{shallow}")

    plain, res = gap("plain"), gap("resnet")
    vp, vr = verdicts["plain"], verdicts["resnet"]
    plain_worse = vp.conclusive and plain > 0
    res_worse = vr.conclusive and res > 0
    if vp.difference is None or vr.difference is None:  # a shallow net near chance: no comparison
        text = (vp if vp.difference is None else vr).caveat
    elif plain_worse and not res_worse:
        text = ("the degradation appears without shortcuts and not with them, as the notes say "
                f"(plain {vp.detail}; residual {vr.detail})")
    elif plain_worse:
        text = (("depth hurt the plain net more than the residual one" if plain > res else
                 "at this scale the residual net suffered at least as much from depth, contrary "
                 "to the notes") + f" (plain {vp.detail}; residual {vr.detail})")
    elif not vp.conclusive:
        text = vp.caveat
    else:
        text = ("at this scale no degradation appeared: the deeper plain net trained better, "
                f"contrary to the notes' claim ({vp.detail}; try the default or --full settings)")
    return (f"{phrase('plain', plain)}, while {phrase('resnet', res)}: {text}.",
            list(verdicts.values()))


EXPERIMENT = Experiment(
    name="depth",
    claim="deeper plain networks train worse (degradation); residual networks do not",
    settings=dict(
        default=dict(data="fashion-mnist", depths=[20, 56], widths=[16, 32, 64], n_train=5000,
                     n_test=1000, epochs=5, lr=0.05, batch_size=128, weight_decay=1e-4,
                     schedule="cosine", step_epochs=[], crop_pad=0, flip=0.0),
        quick=dict(depths=[8, 14], widths=[4, 8, 16], n_train=200, n_test=80, epochs=1,
                   batch_size=50),
        # He et al. Sec. 4.2: 50k images / 128 = 391 steps an epoch; lr / 10 at 32k and 48k steps
        full=dict(data="cifar10", depths=[20, 32, 44, 56], n_train=50000, n_test=10000,
                  epochs=164, lr=0.1, schedule="step", step_epochs=[32000 / 391, 48000 / 391],
                  crop_pad=4, flip=0.5),
    ),
    run=run,
    runs=lambda s: 2 * len(s["depths"]),  # plain and resnet at each depth
    ranges=dict(depths=Range(8), widths=COUNT, crop_pad=NON_NEGATIVE, flip=Range(0, 1),
                step_epochs=NON_NEGATIVE),
    choices=dict(data=("fashion-mnist", "cifar10"), schedule=("cosine", "step")),
)
