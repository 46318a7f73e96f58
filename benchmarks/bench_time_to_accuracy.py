"""Time to accuracy on Fashion-MNIST with cnnlab's recipes, wall clock including start-up and
data loading (a fresh ``cnnlab train --recipe NAME`` process), against each recipe's budget.

For each recipe: the wall-clock seconds of the whole command, the first epoch whose test accuracy
reaches the target and the ``elapsed_s`` it was reached at, the final accuracy, and the ratio of
the time to the budget (<= 1.0 meets the goal). The 1-minute load average before and after is
printed: on a shared machine the times stretch with the load.

    python benchmarks/bench_time_to_accuracy.py [--recipes fmnist-fast fmnist-best] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnlab.train import read_metrics

GOALS = {"fmnist-fast": (0.93, 180.0), "fmnist-best": (0.95, 1800.0)}  # (accuracy, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["fmnist-fast"])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    for name in args.recipes:
        target, budget = GOALS[name]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            command = [sys.executable, "-m", "cnnlab.cli", "train", "--recipe", name, "--out", str(out),
                       "--no-progress", *(a for kv in args.overrides for a in ("--set", kv))]
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            subprocess.run(command, check=True)
            wall = time.perf_counter() - start
            rows = read_metrics(out / "metrics.csv")
        hit = next((r for r in rows if r["test_acc"] >= target), None)
        reached = f"epoch {hit['epoch']} at {hit['elapsed_s']:.0f}s" if hit else "not reached"
        print(f"{name}: final test accuracy {rows[-1]['test_acc']:.2%} after {len(rows)} epochs; "
              f"{target:.0%} {reached}; wall clock {wall:.0f}s = {wall / budget:.2f} x budget "
              f"({budget:.0f}s); load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores", flush=True)


if __name__ == "__main__":
    main()
