"""Error sources: modelling, estimation and optimisation error, separated by capacity and data.

The Georgia Tech lesson splits a network's error three ways: *modelling error* (the family cannot
represent the task), *estimation error* (too little data to pick the right member: the gap
between training and test error) and *optimisation error* (training did not find the best member
it could). One family, :class:`cnnlab.models.fastnet.FastNet` with widths ``(w, w, 2w, 4w)``, is
trained at each width of ``widths`` (two orders of magnitude of parameters at the default) on
nested, class-balanced training subsets of each size of ``sizes``, with one recipe. Measured with
:func:`cnnlab.evaluate.metrics.evaluate_model` after training, in eval mode, unaugmented:

* training error, on (up to ``n_test`` images of) the training subset — optimisation + modelling;
* the train-test gap — estimation;
* for each width, on the median size, the training error after a ``long_factor`` times longer
  schedule: how much of the training error was optimisation (what remains is closer to the
  modelling error).

Small training sets are repeated within an epoch to at least ``min_epoch_images`` images, so
every size gets the same optimizer steps per epoch (as in ``data-scaling``).
"""

from __future__ import annotations

import math

from cnnlab.evaluate.metrics import evaluate_model
from cnnlab.lab.common import COUNT, Experiment, LabContext, Outcome, points, repeat_to, verdict
from cnnlab.models.fastnet import FastNet


def family(width: int, in_chans: int, num_classes: int) -> FastNet:
    """The family member of ``width``: stem w, then groups of w, 2w and 4w channels."""
    return FastNet(width, (width, 2 * width, 4 * width), num_classes=num_classes, in_chans=in_chans)


def run(ctx: LabContext) -> Outcome:
    s = ctx.settings
    full = ctx.data("fashion-mnist", "train")
    test = ctx.data("fashion-mnist", "test", s["n_test"])
    sizes = sorted({n for n in s["sizes"] if n <= len(full)} or {len(full)})
    long_size = sizes[len(sizes) // 2]
    cells, long = [], []
    for i, width in enumerate(s["widths"]):
        for n, epochs in [(n, s["epochs"]) for n in sizes] + [(long_size, s["epochs"] * s["long_factor"])]:
            train = ctx.data("fashion-mnist", "train", n, dataset=full)  # nested prefixes
            ctx.seed_all(i)
            model = family(width, full.image_shape[0], full.num_classes)
            longer = epochs != s["epochs"]
            ctx.train(model, f"w{width}-n{n}" + ("-long" if longer else ""),
                      repeat_to(train, s["min_epoch_images"]), test, epochs, s["lr"],
                      s["batch_size"], seed_offset=i, distinct=len(train))
            model = model.float().cpu()
            seen = train.subset(range(min(len(train), s["n_test"])))  # balanced: a prefix
            row = dict(width=width, params=sum(p.numel() for p in model.parameters()), n_train=n,
                       epochs=epochs, n_eval_train=len(seen),
                       train_error=points(1 - evaluate_model(model, seen, 500).accuracy),
                       test_error=points(1 - evaluate_model(model, test, 500).accuracy))
            row["gap"] = round(row["test_error"] - row["train_error"], 2)
            (long if longer else cells).append(row)
    numbers = dict(cells=cells, long=long, long_size=long_size, long_factor=s["long_factor"],
                   sizes=sizes, widths=list(s["widths"]), n_test=len(test),
                   num_classes=full.num_classes)
    _plot(ctx, numbers)
    return Outcome(numbers, *_sentence(numbers))


def _cell(numbers: dict, width: int, n: int) -> dict:
    return next(c for c in numbers["cells"] if c["width"] == width and c["n_train"] == n)


def _plot(ctx: LabContext, numbers: dict) -> None:
    fig, (ax1, ax2, ax3) = ctx.figure(3, size=(4.6, 4.2))
    for n in numbers["sizes"]:
        rows = [_cell(numbers, w, n) for w in numbers["widths"]]
        params = [r["params"] for r in rows]
        ax1.plot(params, [r["train_error"] for r in rows], marker="o", label=f"{n:,} images")
        ax2.plot(params, [r["gap"] for r in rows], marker="o", label=f"{n:,} images")
    normal = [_cell(numbers, w, numbers["long_size"]) for w in numbers["widths"]]
    params = [r["params"] for r in normal]
    ax3.plot(params, [r["train_error"] for r in normal], marker="o",
             label=f"{normal[0]['epochs']} epochs")
    ax3.plot(params, [r["train_error"] for r in numbers["long"]], marker="s",
             label=f"{numbers['long'][0]['epochs']} epochs")
    ax3.fill_between(params, [r["train_error"] for r in normal],
                     [r["train_error"] for r in numbers["long"]], alpha=0.2, label="optimisation")
    titles = ("training error: modelling + optimisation", "test - training error: estimation",
              f"a {numbers['long_factor']}x longer schedule ({numbers['long_size']:,} images)")
    for ax, title, label in zip((ax1, ax2, ax3), titles, ("training error (%)",
                                                         "train-test gap (points)",
                                                         "training error (%)")):
        ax.set_xscale("log")
        ax.set_xticks(params, [f"{p / 1e3:.1f}k" for p in params])  # the widths measured
        ax.minorticks_off()
        ax.set_xlabel("parameters (log scale)")
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ctx.save(fig, "error_sources", "One family (FastNet, widths w, 2w, 4w) at each width and "
             "training-set size: training error (left), the train-test gap (middle), and the "
             "training error a longer schedule reaches (right; the shaded band is optimisation "
             "error).")


def _dominant(cell: dict) -> str:
    return ("estimation error (the train-test gap)" if cell["gap"] > cell["train_error"] else
            "modelling and optimisation error (the training error)")


def _sentence(numbers: dict):
    widths, sizes = numbers["widths"], numbers["sizes"]
    big_small = _cell(numbers, max(widths), min(sizes))  # high capacity, little data
    small_big = _cell(numbers, min(widths), max(sizes))  # low capacity, much data
    args = (numbers["n_test"], numbers["num_classes"])
    gap = verdict(f"train vs test accuracy, width {big_small['width']} on {big_small['n_train']:,}",
                  min(big_small["n_eval_train"], numbers["n_test"]), numbers["num_classes"],
                  trained={"the widest net": 100 - big_small["test_error"]},
                  compare=(100 - big_small["train_error"], 100 - big_small["test_error"]))
    capacity = verdict(f"widest vs narrowest training error on {small_big['n_train']:,}", *args,
                       trained={"the narrowest net": 100 - small_big["test_error"]},
                       compare=(small_big["train_error"],
                                _cell(numbers, max(widths), max(sizes))["train_error"]))
    gains = [(n["train_error"] - l["train_error"], n, l) for n, l in
             zip((_cell(numbers, w, numbers["long_size"]) for w in widths), numbers["long"])]
    gain, normal, longer = max(gains, key=lambda g: g[0])
    optimisation = verdict(f"{longer['epochs']} vs {normal['epochs']} epochs, width {normal['width']}",
                           *args, compare=(normal["train_error"], longer["train_error"]))
    decades = math.log10(max(c["params"] for c in numbers["cells"])
                         / min(c["params"] for c in numbers["cells"]))
    wide_big = _cell(numbers, max(widths), max(sizes))
    bs, sb = big_small, small_big
    text = (f"Across {decades:.1f} decades of parameters, the widest net ({bs['params']:,} "
            f"parameters) on {bs['n_train']:,} images ended with {bs['train_error']:.1f}% training "
            f"and {bs['test_error']:.1f}% test error: "
            + gap.says(f"a train-test gap of {gap.detail}, so {_dominant(bs)} dominated there")
            + f"; the narrowest ({sb['params']:,}) on {sb['n_train']:,} images kept "
            f"{sb['train_error']:.1f}% training error against a gap of {sb['gap']:+.1f} points: "
            + capacity.says(f"more training error than the widest net's "
                            f"{wide_big['train_error']:.1f}% ({capacity.detail}), so "
                            f"{_dominant(sb)} dominated there",
                            f"no more training error than the widest net's "
                            f"{wide_big['train_error']:.1f}% ({capacity.detail}), so no modelling "
                            f"error showed")
            + f"; a {numbers['long_factor']}x longer schedule on {numbers['long_size']:,} images "
            f"lowered the training error by at most {gain:.1f} points (width {normal['width']}): ")
    text += optimisation.says(
        f"optimisation error was {'the larger' if gain > normal['train_error'] - gain else 'the smaller'}"
        f" part of that net's training error ({optimisation.detail})",
        f"the longer schedule did not lower it ({optimisation.detail})")
    return text + ".", [gap, capacity, optimisation]


EXPERIMENT = Experiment(
    name="error-sources",
    claim="a network's error splits into modelling, estimation and optimisation error",
    settings=dict(
        default=dict(widths=[2, 4, 8, 16], sizes=[1000, 4000, 16000], n_test=2000, epochs=3,
                     long_factor=4, min_epoch_images=4000, lr=0.05, batch_size=128),
        quick=dict(widths=[2, 4], sizes=[40, 120], n_test=80, epochs=1, long_factor=2,
                   min_epoch_images=100, batch_size=50),
        full=dict(widths=[2, 4, 8, 16, 32, 64], sizes=[1000, 10000, 60000], n_test=10000,
                  epochs=15, min_epoch_images=10000),
    ),
    run=run,
    ranges=dict(widths=COUNT, long_factor=COUNT),
)
