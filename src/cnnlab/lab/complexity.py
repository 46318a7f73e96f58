"""Complexity: accuracy against multiply-adds and parameters for the zoo, measured.

The course's complexity chart (lesson 6, after Canziani et al. 2016) places each architecture by
its cost (multiply-adds per image), its size (parameters) and its accuracy. Here every model runs
on 28x28 Fashion-MNIST with *one shared small-input recipe* (AdamW, the same images, epochs and
batch size), its cost counted by ``cnnlab.summary`` at 1x28x28 and its accuracy measured. A
shared short recipe favours networks that learn fast; the sentence reports what happened.
"""

from __future__ import annotations

import math

from cnnlab.analysis import summary
from cnnlab.errors import ConfigError
from cnnlab.lab.common import Experiment, LabContext, Outcome, points, verdict
from cnnlab.models import create_model


def run(ctx: LabContext) -> Outcome:
    s = ctx.settings
    train = ctx.data("fashion-mnist", "train", s["n_train"])
    test = ctx.data("fashion-mnist", "test", s["n_test"])
    shape = train.image_shape
    rows = []
    for name in s["models"]:
        ctx.seed_all()
        model = create_model(name, num_classes=train.num_classes, in_chans=shape[0],
                             input_size=shape[-1])
        cost = summary(model, shape)
        row = dict(model=name, params=cost.total_params, macs=cost.total_macs)
        try:
            h = ctx.train(model, name, train, test, s["epochs"], s["lr"], s["batch_size"],
                          optimizer="adamw", weight_decay=s["weight_decay"], model_name=name)
            row.update(test_acc=points(h[-1]["test_acc"]), train_acc=points(h[-1]["train_acc"]))
        except ConfigError as err:  # the loss diverged: recorded, not hidden
            ctx.log(f"  {name}: {err}")
            row.update(test_acc=None, train_acc=None, error=str(err))
        rows.append(row)
    _plot(ctx, rows)
    numbers = dict(rows=rows, n_test=len(test), num_classes=train.num_classes)
    return Outcome(numbers, *_sentence(numbers))


def _plot(ctx: LabContext, rows: list[dict]) -> None:
    ok = [r for r in rows if r["test_acc"] is not None]
    fig, (ax1, ax2) = ctx.figure(2)
    for ax, key, label in ((ax1, "macs", "multiply-adds per image (log)"),
                           (ax2, "params", "parameters (log)")):
        ax.scatter([r[key] for r in ok], [r["test_acc"] for r in ok],
                   s=[20 + 12 * math.sqrt(r["params"] / 1e4) for r in ok], alpha=0.6)
        for r in ok:
            ax.annotate(r["model"], (r[key], r["test_acc"]), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3, which="both")
    ax1.set_title("accuracy vs compute (marker area ~ parameters)")
    ax2.set_title("accuracy vs size")
    ctx.save(fig, "complexity", "Each zoo model trained with the same small-input recipe: test "
             "accuracy against multiply-adds and parameters at 1x28x28.")


def _sentence(numbers: dict):
    rows, n, classes = numbers["rows"], numbers["n_test"], numbers["num_classes"]
    ok = [r for r in rows if r["test_acc"] is not None]
    failed = [r["model"] for r in rows if r["test_acc"] is None]
    tail = f" ({', '.join(failed)} diverged with this recipe)" if failed else ""
    if len(ok) < 2:
        return f"Too few models finished to compare{tail}.", []
    best = max(ok, key=lambda r: r["test_acc"])
    worst = min(ok, key=lambda r: r["test_acc"])
    # the trend can be read only if the best model learned and the accuracies differ beyond noise
    spread = verdict("most vs least accurate model", n, classes,
                     trained={best["model"]: best["test_acc"]},
                     compare=(best["test_acc"], worst["test_acc"]))
    matches = [r for r in ok if r is best or not verdict(
        "", n, classes, compare=(best["test_acc"], r["test_acc"])).conclusive]
    cheapest_close = min(matches, key=lambda r: r["macs"])
    costliest = max(ok, key=lambda r: r["macs"])
    xs = [math.log10(r["macs"]) for r in ok]
    ys = [r["test_acc"] for r in ok]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    norm = math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys)) or 1.0
    r = cov / norm
    trend = spread.says("more compute bought accuracy" if r > 0.5 else
                        "more compute did not reliably buy accuracy at this scale" if r > -0.2 else
                        "the costlier models did worse at this scale (short recipe, small input)")
    close = ("no cheaper model matched it within the test set's noise" if cheapest_close is best else
             f"{cheapest_close['model']} matched it within the test set's noise at "
             f"{cheapest_close['macs'] / 1e6:.1f}M multiply-adds")
    return (f"With one shared small-input recipe, {best['model']} was the most accurate "
            f"({best['test_acc']:.1f}% with {best['macs'] / 1e6:.1f}M multiply-adds and "
            f"{best['params'] / 1e6:.2f}M parameters); {close}, and the costliest, "
            f"{costliest['model']} ({costliest['macs'] / 1e6:.0f}M), reached "
            f"{costliest['test_acc']:.1f}%: {trend} (correlation of accuracy with log multiply-adds "
            f"r = {r:.2f}){tail}.", [spread])


EXPERIMENT = Experiment(
    name="complexity",
    claim="accuracy vs multiply-adds vs parameters across the zoo (the notes' complexity chart)",
    settings=dict(
        default=dict(models=["lenet5", "lenet5_modern", "plain20", "resnet20", "resnet56",
                             "googlenet", "vgg11_bn", "alexnet", "efficientnet_lite0"],
                     n_train=2500, n_test=1000, epochs=3, lr=1e-3, weight_decay=0.05,
                     batch_size=64),
        quick=dict(models=["lenet5", "lenet5_modern"], n_train=200, n_test=80, epochs=1,
                   batch_size=50),
        full=dict(models=["lenet5", "lenet5_modern", "nin", "plain20", "resnet20", "plain56",
                          "resnet56", "googlenet", "inception_v2", "vgg11_bn", "vgg16_bn",
                          "alexnet", "resnet18", "efficientnet_lite0", "convnext_tiny"],
                  n_train=60000, n_test=10000, epochs=15, batch_size=128),
    ),
    run=run,
    runs=lambda s: len(s["models"]),
)
