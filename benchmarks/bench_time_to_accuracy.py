"""Time to accuracy on Fashion-MNIST with cnnlab's recipes, wall clock including start-up and
data loading (a fresh ``cnnlab train --recipe NAME`` process), against each recipe's budget.

For each recipe: the wall-clock seconds of the whole command, the first epoch whose test accuracy
reaches the target and the ``elapsed_s`` it was reached at, the final accuracy, and the ratio of
the time to the budget (<= 1.0 meets the goal). One run per recipe (there is no baseline to
alternate with); benchmarks/_harness.py records the machine and the load, and marks every time
UNDER LOAD when the machine was busy (the times stretch with the load).

    python benchmarks/bench_time_to_accuracy.py [--recipes fmnist-fast fmnist-best] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import Bench, Figure, Sample, add_arguments, seconds, times

from cnnlab.train import read_metrics

GOALS = {"fmnist-fast": (0.93, 180.0), "fmnist-best": (0.95, 1800.0)}  # (accuracy, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["fmnist-fast"])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    add_arguments(parser)
    args = parser.parse_args()
    bench = Bench.from_args(args)
    table = bench.table("recipe", "final test accuracy", "target reached", "wall clock",
                        "x budget", title="time to accuracy, one fresh `cnnlab train` process "
                                          "per recipe")
    for name in args.recipes:
        target, budget = GOALS[name]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            command = [sys.executable, "-m", "cnnlab.cli", "train", "--recipe", name, "--out", str(out),
                       "--no-progress", *(a for kv in args.overrides for a in ("--set", kv))]

            def train(command=command) -> None:
                subprocess.run(command, check=True)

            wall = Sample((bench.time_call(train),))  # the whole command, start-up included
            rows = read_metrics(out / "metrics.csv")
        hit = next((r for r in rows if r["test_acc"] >= target), None)
        reached = Figure(f"{target:.0%} at epoch {hit['epoch']}, {hit['elapsed_s']:.0f} s") \
            if hit else f"{target:.0%} not reached"  # a time: marked when the machine was busy
        table.row(f"{name} ({len(rows)} epochs)", f"{rows[-1]['test_acc']:.2%}",
                  reached, seconds(wall, ".0f"),
                  times(wall.scaled(1 / budget)))
    bench.finish()


if __name__ == "__main__":
    main()
