"""Convergence: with enough target data, ImageNet pre-training mostly speeds up convergence.

The Georgia Tech lesson on transfer: "if you have enough data for the target domain, it just
results in faster convergence" (He, Girshick and Dollár, "Rethinking ImageNet Pre-training", ICCV
2019, arXiv:1811.08883: on COCO, networks trained from scratch catch up with fine-tuned ones given
a long enough schedule). Here one network, ``model`` (EfficientNet-Lite0 at the default), is
trained twice on the same target training set (a class-balanced subset of ``n_train`` images; all
60,000 at ``--full``) with the same recipe (AdamW, cosine schedule, the same batches): fine-tuned
from its ImageNet weights (:mod:`cnnlab.models.weights`) and from random initialisation. Both see
the same inputs — Fashion-MNIST resized to ``image_size``, grey repeated to three channels, the
weights' normalisation — so only the initial weights differ. Measured: test accuracy after every
epoch (and, in the plot, against the wall time each run's ``metrics.csv`` recorded), the first
epoch at which each run comes within ``within`` points of its own final accuracy, and the gap
between the finals.

Deviation: BatchNorm's running statistics follow ``bn_momentum`` (0.1, torch's default) in both
runs instead of EfficientNet's TF-style 0.01, so that each epoch's evaluation reflects that
epoch's weights — at 0.01 a 4,000-image epoch of 63 steps would still evaluate with half of the
initial statistics (0.99^63 = 0.53), ImageNet's for one run and (0, 1) for the other.
"""

from __future__ import annotations

from torch import nn

from cnnlab.lab.common import POSITIVE, Experiment, LabContext, Outcome, points, verdict
from cnnlab.models import create_model, weights_info
from cnnlab.train import read_metrics
from cnnlab.train.values import Range
from cnnlab.transfer import TargetSpec

INITS = ("imagenet", "scratch")


def epochs_to_within(accuracies: list[float], within: float) -> int:
    """The first epoch (1-based) whose accuracy is within ``within`` points of the last one."""
    final = accuracies[-1]
    return next(i + 1 for i, acc in enumerate(accuracies) if acc >= final - within)


def run(ctx: LabContext) -> Outcome:
    s = ctx.settings
    pre = weights_info(s["model"], "imagenet").preprocessing  # any model with ImageNet weights
    spec = TargetSpec("", size=s["image_size"], in_chans=3, mean=pre.mean, std=pre.std)
    train = spec.transform(ctx.data("fashion-mnist", "train", s["n_train"]))
    test = spec.transform(ctx.data("fashion-mnist", "test", s["n_test"]))
    numbers = dict(model=s["model"], image_size=s["image_size"], within=s["within"],
                   n_train=len(train), n_test=len(test), num_classes=train.num_classes, runs={})
    for init in INITS:
        ctx.seed_all(1)  # the new head (and, from scratch, every layer) from the same seed
        model = create_model(s["model"], weights="imagenet" if init == "imagenet" else None,
                             num_classes=train.num_classes)
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = s["bn_momentum"]
        history = ctx.train(model, init, train, test, s["epochs"], s["lr"], s["batch_size"],
                            optimizer="adamw", weight_decay=s["weight_decay"], model_name=s["model"])
        acc = [points(h["test_acc"]) for h in history]
        numbers["runs"][init] = dict(test_acc=acc, train_acc=[points(h["train_acc"]) for h in history],
                                     final=acc[-1], epochs_to_within=epochs_to_within(acc, s["within"]))
    _plot(ctx, numbers)
    return Outcome(numbers, *_sentence(numbers))


def _plot(ctx: LabContext, numbers: dict) -> None:
    fig, (ax1, ax2) = ctx.figure(2)
    for init, style in zip(INITS, ("-", "--")):
        acc = numbers["runs"][init]["test_acc"]
        epochs = list(range(1, len(acc) + 1))
        label = "fine-tuned from ImageNet" if init == "imagenet" else "from scratch"
        ax1.plot(epochs, acc, style, marker="o", label=label)
        # wall time: what the run itself recorded (timings stay out of results.json's numbers)
        seconds = [row["elapsed_s"] for row in read_metrics(ctx.out / "runs" / init / "metrics.csv")]
        ax2.plot(seconds, acc, style, marker="o", label=label)
    ax1.set_xlabel("epoch")
    ax1.set_xticks(range(1, len(numbers["runs"]["scratch"]["test_acc"]) + 1))
    ax2.set_xlabel("wall time (s, this machine, this run)")
    for ax in (ax1, ax2):
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    ax1.set_title(f"{numbers['model']} at {numbers['image_size']} px, {numbers['n_train']:,} images")
    ax2.set_title("the same runs against wall time")
    ctx.save(fig, "convergence", "Test accuracy of the same network and recipe, fine-tuned from "
             "its ImageNet weights and trained from scratch, after each epoch (left) and against "
             "the wall time of each run (right).")


def _sentence(numbers: dict):
    runs, within = numbers["runs"], numbers["within"]
    pre, scratch = runs["imagenet"], runs["scratch"]
    args = (numbers["n_test"], numbers["num_classes"])
    trained = {"the fine-tuned net": pre["final"], "the net from scratch": scratch["final"]}
    first = verdict("after the first epoch, fine-tuned vs scratch", *args, trained=trained,
                    compare=(pre["test_acc"][0], scratch["test_acc"][0]))
    final = verdict("final test accuracy, fine-tuned vs scratch", *args, trained=trained,
                    compare=(pre["final"], scratch["final"]))

    def epochs(n: int) -> str:
        return f"{n} epoch{'s' if n > 1 else ''}"

    text = (f"On {numbers['n_train']:,} target images at {numbers['image_size']} px, "
            f"{numbers['model']} fine-tuned from ImageNet came within {within:g} point of its final "
            f"{pre['final']:.1f}% after {epochs(pre['epochs_to_within'])} ({pre['test_acc'][0]:.1f}% "
            f"after the first), from scratch within {within:g} point of {scratch['final']:.1f}% after "
            f"{epochs(scratch['epochs_to_within'])} ({scratch['test_acc'][0]:.1f}% after the first); "
            f"the finals differ by {pre['final'] - scratch['final']:+.1f} points: ")
    if first.difference is None:
        return text + first.caveat + ".", [first, final]
    faster = first.conclusive and first.difference > 0
    if faster and not final.conclusive:
        text += (f"pre-training sped up convergence ({first.detail}) and the finals agree within "
                 f"noise ({final.detail}), as He et al. found")
    elif faster and final.difference > 0:
        text += (f"pre-training converged faster ({first.detail}) and also ended higher "
                 f"({final.detail}): at this scale the target data or the schedule did not let "
                 f"training from scratch catch up")
    elif final.conclusive and final.difference < 0:
        text += f"training from scratch ended higher ({final.detail}), contrary to the claim"
    elif faster:
        text += f"pre-training converged faster ({first.detail})"
    else:
        text += (f"whether pre-training sped up convergence is {first.caveat}; the finals: "
                 f"{final.says(final.detail)}")
    return text + ".", [first, final]


EXPERIMENT = Experiment(
    name="convergence",
    claim="with enough target data, ImageNet pre-training just speeds up convergence "
          "(He et al. 2019)",
    settings=dict(
        # 32 px: the smallest size each of the five stride-2 stages halves exactly (down to 1x1),
        # and about as cheap per image on a CPU as the native 28 px (docs/lab.md)
        default=dict(model="efficientnet_lite0", image_size=32, n_train=4000, n_test=1500,
                     epochs=5, lr=1e-3, weight_decay=0.05, batch_size=64, within=1.0,
                     bn_momentum=0.1),
        quick=dict(n_train=100, n_test=40, epochs=2, batch_size=50),
        full=dict(image_size=224, n_train=60000, n_test=10000, epochs=20, batch_size=128),
    ),
    run=run,
    ranges=dict(image_size=Range(32), within=POSITIVE, bn_momentum=Range(0, 1, low_open=True)),
)
