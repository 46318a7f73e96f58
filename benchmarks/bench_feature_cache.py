"""Head training on cached backbone features vs recomputing the frozen backbone every epoch.

ResNet-18 with the small-input stem (create_model('resnet18', num_classes=10, in_chans=1,
input_size=28)), frozen except its ``fc`` head, on a Fashion-MNIST subset. Both paths are the
Trainer's — the one training loop — with the same config (batch order, optimizer, precision as
the Trainer picks it) and the same initial head:

* baseline — the Trainer trains the frozen network on the images: every batch runs the frozen
  backbone (no gradient reaches it) and then the head;
* cached   — the backbone runs once over the split (timed separately, then memory-mapped from disk
  via cnnlab.transfer.cached_features), and the Trainer trains ``CachedHead`` on a
  ``FeatureDataset``: each epoch reads only the cache.

Reports seconds per epoch (``Trainer.train_epoch``; the two paths' epochs alternate, ``--rounds``,
benchmarks/_harness.py), the ratio, the one-time cache cost, and the test accuracy of each network
after its first epoch, measured on the test *images* (backbone + head).

    .venv/bin/python benchmarks/bench_feature_cache.py --train 10000 --test 2000 --rounds 2
"""

from __future__ import annotations

import argparse
import copy
import itertools
import tempfile
from pathlib import Path

import torch
from _harness import Bench, Sample, add_arguments, figure, ratio, seconds, times

from cnnlab.data import load_dataset
from cnnlab.device import resolve_precision
from cnnlab.evaluate import evaluate_model
from cnnlab.models import create_model
from cnnlab.train import RunConfig, Trainer
from cnnlab.transfer import FeatureDataset, cached_features, freeze, split_for_cache


def epochs(trainer: Trainer):
    """A callable that trains ``trainer``'s next epoch (no evaluation, no checkpoint)."""
    counter = itertools.count(1)

    def run() -> None:
        trainer.train_epoch(next(counter))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10000, help="training images (first N)")
    parser.add_argument("--test", type=int, default=2000, help="test images (first N)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating epochs of each path")
    add_arguments(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = Bench.from_args(args)
    train = load_dataset("fashion-mnist", "train").subset(torch.arange(args.train))
    test = load_dataset("fashion-mnist", "test").subset(torch.arange(args.test))
    config = RunConfig()
    config.model.name = "resnet18"
    t = config.train
    t.epochs, t.batch_size, t.lr, t.device, t.plot, t.tensorboard = 4, args.batch_size, 0.05, \
        args.device, False, False
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10, in_chans=1, input_size=28)
    freeze(model, "features")
    precision = resolve_precision(args.device, "auto")
    with tempfile.TemporaryDirectory() as folder:
        baseline = Trainer(config, Path(folder) / "base", train, test, progress=False, log=None,
                           model=copy.deepcopy(model))
        bench.note(f"resnet18 (small stem), fashion-mnist {len(train):,} train / {len(test):,} "
                   f"test, batch {args.batch_size}, training {baseline.precision.describe()}, "
                   f"cache {precision.describe()}, {torch.get_num_threads()} threads")
        cached_model = precision.prepare(copy.deepcopy(model)).eval()
        point, extract, head = split_for_cache(cached_model)
        feats = []

        def build_cache() -> None:
            feats.extend(cached_features(extract, cached_model, ds, folder, {"point": point},
                                         precision=precision)[0] for ds in (train, test))

        cache_s = Sample((bench.time_call(build_cache),))
        cached = Trainer(config, Path(folder) / "cached", FeatureDataset(feats[0], train.labels,
                         train.classes, train.name), FeatureDataset(feats[1], test.labels,
                         test.classes, test.name), progress=False, log=None, model=head)
        cases = {"baseline": epochs(baseline), "cached": epochs(cached)}
        first = bench.alternate(cases, rounds=1, warmup=0)  # both paths' first epoch
        acc_base = evaluate_model(baseline.model, test, 500, baseline.precision).accuracy
        acc_cached = evaluate_model(head.network, test, 500, cached.precision).accuracy
        more = bench.alternate(cases, rounds=args.rounds - 1, warmup=0) if args.rounds > 1 else {}
    per_epoch = {k: Sample(first[k].values + (more[k].values if more else ()))
                 for k in cases}
    table = bench.table("path", "s / epoch", "test accuracy after 1 epoch",
                        title=f"feature cache vs recomputing the backbone, {args.rounds} "
                              "alternating epochs each")
    table.row("baseline: recompute the frozen backbone every batch",
              seconds(per_epoch["baseline"], ".2f"), f"{acc_base:.2%}")
    table.row("cached features", seconds(per_epoch["cached"], ".2f"), f"{acc_cached:.2%}")
    table.row(f"one-time cache build ({feats[0].shape[1]:,} x {tuple(feats[0].shape[2:])} "
              f"float32, point: {point})", seconds(cache_s, ".2f"), "")
    speedup = ratio(per_epoch["baseline"], per_epoch["cached"])
    table.row("speed-up per epoch", times(speedup, ".0f"), "")
    gain = per_epoch["baseline"].median - per_epoch["cached"].median
    table.row("the cache pays for itself after (epochs)",
              figure(Sample((cache_s.median / max(gain, 1e-9),)), ".2f"), "")
    bench.finish()


if __name__ == "__main__":
    main()
