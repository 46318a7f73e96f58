"""Time to accuracy on Fashion-MNIST with cnnlab's recipes, wall clock including start-up and
data loading (a fresh ``cnnlab train --recipe NAME`` process), against each recipe's budget.

For each recipe: the wall-clock seconds of the whole command, the first epoch whose test accuracy
reaches the target and the ``elapsed_s`` it was reached at, the final accuracy, the ratio of the
time to the budget (<= 1.0 meets the goal), and the curve from metrics.csv: test accuracy against
training seconds and against images seen (epochs x training images).

``--ablate``: the recipe run again with each of its speed-run techniques removed in turn
(:data:`TECHNIQUES`; only those the recipe uses), seeded like the full recipe, one run each, with
the accuracy each removal costs against the full recipe of the same run. ``--only NAME ...``
runs just those rows (plus the full recipe they are compared with; ``--no-reference`` skips it).
``--seeds 0 1 2``: the full recipe once per seed, and the mean, standard deviation and range of
the final accuracy. benchmarks/_harness.py records the machine and the load, and marks every time
UNDER LOAD when the machine was busy (the times stretch with the load; accuracies do not).

    python benchmarks/bench_time_to_accuracy.py [--recipes fmnist-fast fmnist-best] [--set k=v ...]
    python benchmarks/bench_time_to_accuracy.py --recipes fmnist-fast --ablate [--only lookahead]
    python benchmarks/bench_time_to_accuracy.py --recipes fmnist-fast --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _harness import Bench, Figure, Sample, add_arguments, seconds, times

from cnnlab.data import load_dataset
from cnnlab.data.datasets import labels_per_class
from cnnlab.text import plural
from cnnlab.train import read_metrics
from cnnlab.train.checkpoint import load_run_config
from cnnlab.train.config import RunConfig
from cnnlab.train.recipes import recipe_config

GOALS = {"fmnist-fast": (0.94, 60.0), "fmnist-best": (0.955, 900.0)}  # (accuracy, seconds)


def _option(name: str, value) -> Callable[[RunConfig], list[str] | None]:
    """Removal of a model option: the whole ``model.options`` with ``name`` set to ``value``
    (None when the recipe does not use the technique)."""
    def remove(config: RunConfig) -> list[str] | None:
        options = dict(config.model.options)
        if name not in options or options[name] == value:
            return None
        if name == "whiten_bias_epochs" and (not options.get("whiten")
                                             or options[name] >= config.train.epochs):
            return None  # no whitening, or its bias trains all along already
        options[name] = value
        return [f"model.options={json.dumps(options, separators=(',', ':'))}"]
    return remove


def _key(key: str, value, active: Callable[[RunConfig], bool]) -> Callable[[RunConfig], list[str] | None]:
    """Removal of a train/augment key: ``key=value`` when ``active(config)``."""
    def remove(config: RunConfig) -> list[str] | None:
        if not active(config):
            return None
        text = json.dumps(value) if not isinstance(value, str) else value
        extra = ["train.tta_shift=false"] if key == "train.tta_flip" and config.train.tta_shift else []
        return [f"{key}={text}", *extra]
    return remove


# name -> how to remove it from a recipe's config (the --set overrides), None when not used.
TECHNIQUES: dict[str, Callable[[RunConfig], list[str] | None]] = {
    "whitening stem": _option("whiten", False),
    "whiten bias freeze": _option("whiten_bias_epochs", 10 ** 6),  # bias trained all along
    "dirac init": _option("dirac", False),
    "bias-only BatchNorm": _option("bn_weight", True),
    "BatchNorm momentum": _option("bn_momentum", 0.1),  # torch's default
    "logit scale": _option("logit_scale", 1.0),
    "bias lr scale": _key("train.bias_lr_scale", 1.0, lambda c: c.train.bias_lr_scale != 1),
    "label smoothing": _key("train.label_smoothing", 0.0, lambda c: c.train.label_smoothing > 0),
    "nesterov": _key("train.nesterov", False, lambda c: c.train.nesterov),
    "lookahead": _key("train.lookahead_every", 0, lambda c: c.train.lookahead_every > 0),
    "alternating flip": _key("augment.flip_mode", "random",
                             lambda c: c.augment.flip_mode == "alternate" and c.augment.flip > 0),
    "flip": _key("augment.flip", 0.0, lambda c: c.augment.flip > 0),
    "crop (translate)": _key("augment.crop_pad", 0, lambda c: c.augment.crop_pad > 0),
    "shift TTA": _key("train.tta_shift", False, lambda c: c.train.tta_shift),
    "flip TTA": _key("train.tta_flip", False, lambda c: c.train.tta_flip),
}


def run_recipe(bench: Bench, name: str, overrides: list[str]) -> tuple[float, list[dict], RunConfig]:
    """One fresh ``cnnlab train --recipe name --set ...`` process: (wall seconds, metrics rows,
    the run's resolved config)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "cnnlab.cli", "train", "--recipe", name, "--out", str(out),
                   "--no-progress", *(a for kv in overrides for a in ("--set", kv))]
        wall = bench.time_call(lambda: subprocess.run(command, check=True))
        return wall, read_metrics(out / "metrics.csv"), load_run_config(out)


def images_per_epoch(config: RunConfig) -> int:
    """The training images of one epoch of ``config``'s run (its labels-per-class subset)."""
    d = config.data
    train_set = load_dataset(d.name, "train", **d.loader_kwargs())
    if d.labels_per_class:  # the subset the Trainer trained on
        train_set = labels_per_class(train_set, d.labels_per_class, d.subset_seed)
    return len(train_set)


def _final(rows: list[dict]) -> float:
    return [r for r in rows if r["test_acc"] is not None][-1]["test_acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["fmnist-fast"], choices=sorted(GOALS))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a config override for every run (section.key=value)")
    parser.add_argument("--ablate", action="store_true",
                        help="also run each recipe with each of its techniques removed in turn")
    parser.add_argument("--only", nargs="+", default=None, choices=sorted(TECHNIQUES),
                        metavar="TECHNIQUE", help="with --ablate: only these rows "
                        f"(of: {', '.join(TECHNIQUES)})")
    parser.add_argument("--no-reference", action="store_true",
                        help="with --ablate: do not run the full recipe (the 'costs' column is "
                             "then empty)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="run the full recipe once per seed and report the spread of the "
                             "final accuracy (e.g. --seeds 0 1 2)")
    add_arguments(parser)
    args = parser.parse_args()
    if args.only and not args.ablate:
        parser.error("--only picks rows of the ablation: give --ablate too")
    bench = Bench.from_args(args)
    summary = bench.table("recipe", "final test accuracy", "target reached", "wall clock",
                          "x budget", title="time to accuracy, one fresh `cnnlab train` process "
                                            "per recipe")
    for name in args.recipes:
        target, budget = GOALS[name]
        reference = None
        if not (args.ablate and args.no_reference):
            wall, rows, run_config = run_recipe(bench, name, args.overrides)
            per_epoch = images_per_epoch(run_config)
            reference = _final(rows)
            hit = next((r for r in rows if r["test_acc"] is not None and r["test_acc"] >= target),
                       None)
            reached = Figure(f"{target:.1%} at epoch {hit['epoch']}, {hit['elapsed_s']:.0f} s") \
                if hit else f"{target:.1%} not reached"  # a time: marked when the machine was busy
            summary.row(f"{name} ({plural(len(rows), 'epoch')})", f"{reference:.2%}", reached,
                        seconds(Sample((wall,)), ".0f"), times(Sample((wall / budget,))))
            curve = bench.table("epoch", "images seen", "training s", "test accuracy",
                                title=f"{name}: test accuracy against time and images seen")
            for r in rows:
                curve.row(r["epoch"], f"{r['epoch'] * per_epoch:,}", Figure(f"{r['elapsed_s']:.0f}"),
                          "-" if r["test_acc"] is None else f"{r['test_acc']:.2%}")
        if args.ablate:
            config = recipe_config(name)
            table = bench.table("removed", "overrides", "final test accuracy", "costs (points)",
                                "wall clock", title=f"{name}: each technique removed in turn "
                                                    f"(seed {config.train.seed}, one run each)")
            for technique, remove in TECHNIQUES.items():
                if args.only and technique not in args.only:
                    continue
                change = remove(config)
                if change is None:
                    continue
                wall, rows, _ = run_recipe(bench, name, [*args.overrides, *change])
                accuracy = _final(rows)
                cost = "" if reference is None else f"{100 * (reference - accuracy):+.2f}"
                table.row(technique, " ".join(change), f"{accuracy:.2%}", cost,
                          seconds(Sample((wall,)), ".0f"))
        if args.seeds:
            finals = []
            for seed in args.seeds:
                _, rows, _ = run_recipe(bench, name, [*args.overrides, f"train.seed={seed}"])
                finals.append(_final(rows))
            spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
            seeds = bench.table("seeds", "final accuracies", "mean", "std", "range",
                                title=f"{name}: final test accuracy over seeds")
            seeds.row(" ".join(map(str, args.seeds)), " ".join(f"{a:.2%}" for a in finals),
                      f"{statistics.mean(finals):.2%}", f"{100 * spread:.2f} points",
                      f"{min(finals):.2%}-{max(finals):.2%}")
    bench.finish()


if __name__ == "__main__":
    main()
