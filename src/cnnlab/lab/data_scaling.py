"""Data scaling: more training data, higher test accuracy — on a log axis, roughly a line.

The course notes ("Convolutional Neural Network Architectures": transfer learning, "effectiveness
of more data"): with little data, transfer and augmentation help; with more data the same network
generalises better. Here one network and one recipe are trained on nested, class-balanced
subsets of Fashion-MNIST of growing size (each subset contains the smaller ones). Small subsets are
repeated within an epoch so that every size gets at least ``min_epoch_images`` images per epoch —
otherwise the smallest sets would see only a handful of optimizer steps and the curve would
measure under-training rather than data.
"""

from __future__ import annotations

import math

from cnnlab.lab.common import Experiment, LabContext, Outcome, points, repeat_to, verdict
from cnnlab.models import create_model


def run(ctx: LabContext) -> Outcome:
    s = ctx.settings  # sizes are positive: checked where --set is parsed (Experiment.check)
    full = ctx.data("fashion-mnist", "train")
    test = ctx.data("fashion-mnist", "test", s["n_test"])
    sizes = sorted(n for n in s["sizes"] if n <= len(full))
    rows = []
    for n in sizes:
        train = ctx.data("fashion-mnist", "train", n, dataset=full)  # nested: prefix of one order
        ctx.seed_all()
        model = create_model(s["model"], num_classes=full.num_classes, in_chans=full.image_shape[0],
                             input_size=full.image_shape[-1])
        history = ctx.train(model, f"n{n}", repeat_to(train, s["min_epoch_images"]), test,
                            s["epochs"], s["lr"], s["batch_size"], model_name=s["model"], distinct=n)
        rows.append(dict(n_train=n, test_acc=points(history[-1]["test_acc"]),
                         train_acc=points(history[-1]["train_acc"]),
                         test_loss=history[-1]["test_loss"]))
    _plot(ctx, rows, s["model"])
    numbers = dict(rows=rows, model=s["model"], n_test=len(test), num_classes=full.num_classes)
    return Outcome(numbers, *_sentence(numbers))


def _plot(ctx: LabContext, rows: list[dict], model: str) -> None:
    fig, ax = ctx.figure()
    n = [r["n_train"] for r in rows]
    ax.plot(n, [r["test_acc"] for r in rows], marker="o", label="test")
    ax.plot(n, [r["train_acc"] for r in rows], "--", marker="s", label="train (last epoch)")
    for r in rows:
        ax.annotate(f"{r['test_acc']:.1f}", (r["n_train"], r["test_acc"]), fontsize=8,
                    xytext=(0, -12), textcoords="offset points", ha="center")
    ax.set_xscale("log")
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{model}: accuracy vs training-set size")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ctx.save(fig, "data_scaling", "Test and training accuracy of the same network and recipe "
             "trained on nested class-balanced subsets of Fashion-MNIST.")


def _sentence(numbers: dict):
    rows, n, classes = numbers["rows"], numbers["n_test"], numbers["num_classes"]
    first, last = rows[0], rows[-1]
    if len(rows) < 2:
        return (f"Only one size fit the data: {first['test_acc']:.1f}% with {first['n_train']:,} "
                f"images.", [])
    rise = verdict(f"test accuracy with {last['n_train']:,} vs {first['n_train']:,} images", n,
                   classes, trained={f"the network trained on {last['n_train']:,} images":
                                     last["test_acc"]},
                   compare=(last["test_acc"], first["test_acc"]))
    decades = math.log10(last["n_train"] / first["n_train"])
    per_decade = (last["test_acc"] - first["test_acc"]) / decades
    drops = [(a["n_train"], b["n_train"]) for a, b in zip(rows, rows[1:])
             if b["test_acc"] < a["test_acc"] and verdict(
                 "", n, classes, compare=(a["test_acc"], b["test_acc"])).conclusive]
    top = rows[-2:]
    last_gain = (top[1]["test_acc"] - top[0]["test_acc"]) / math.log10(top[1]["n_train"] / top[0]["n_train"])
    shape = (f"the last step added {last_gain:.1f} points per tenfold, "
             f"{'less than' if last_gain < per_decade else 'at least'} the average: "
             f"{'diminishing returns on a log axis' if last_gain < per_decade else 'no saturation yet'}")
    if drops:
        shape += (f"; accuracy fell beyond the test set's noise between {drops[0][0]:,} and "
                  f"{drops[0][1]:,} images, so at this scale the rise is not monotone")
    head = (f"Test accuracy went from {first['test_acc']:.1f}% with {first['n_train']:,} training "
            f"images to {last['test_acc']:.1f}% with {last['n_train']:,} ({per_decade:+.1f} points "
            f"per tenfold more data on average)")
    if not rise.conclusive:
        return f"{head}: {rise.caveat}.", [rise]
    verdict_text = rise.says(f"more data gave higher accuracy ({rise.detail}); {shape}",
                             f"more data gave lower accuracy at this scale, contrary to the notes "
                             f"({rise.detail})")
    return f"{head}: {verdict_text}.", [rise]


EXPERIMENT = Experiment(
    name="data-scaling",
    claim="more training data gives higher test accuracy (test accuracy vs training-set size)",
    settings=dict(
        default=dict(model="lenet5_modern", sizes=[100, 300, 1000, 3000, 10000, 30000, 60000],
                     n_test=5000, epochs=8, min_epoch_images=5000, lr=0.05, batch_size=128),
        quick=dict(sizes=[20, 60, 200], n_test=80, epochs=1, min_epoch_images=100, batch_size=50),
        full=dict(model="resnet20", n_test=10000, epochs=30, min_epoch_images=20000),
    ),
    run=run,
    runs=lambda s: len(s["sizes"]),
)
