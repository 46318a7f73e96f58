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

Reports seconds per epoch (``Trainer.train_epoch``), the ratio, the one-time cache cost, and the
test accuracy of each network after one epoch, measured on the test *images* (backbone + head).

    .venv/bin/python benchmarks/bench_feature_cache.py --train 10000 --test 2000
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

from cnnlab.data import load_dataset
from cnnlab.device import resolve_precision
from cnnlab.evaluate import evaluate_model
from cnnlab.models import create_model
from cnnlab.train import RunConfig, Trainer
from cnnlab.transfer import FeatureDataset, cached_features, freeze, split_for_cache


def epoch_seconds(trainer: Trainer, first: int, epochs: int) -> float:
    """The fastest of ``epochs`` training epochs from ``first``, in seconds (no evaluation, no
    checkpoint)."""
    best = float("inf")
    for epoch in range(first, first + epochs):
        start = time.perf_counter()
        trainer.train_epoch(epoch)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10000, help="training images (first N)")
    parser.add_argument("--test", type=int, default=2000, help="test images (first N)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
        print(f"resnet18 (small stem), fashion-mnist {len(train):,} train / {len(test):,} test, "
              f"batch {args.batch_size}, training {baseline.precision.describe()}, cache "
              f"{precision.describe()}, {torch.get_num_threads()} threads")
        base_s = epoch_seconds(baseline, 1, 1)
        cached_model = precision.prepare(copy.deepcopy(model)).eval()
        point, extract, head = split_for_cache(cached_model)
        start = time.perf_counter()
        feats = [cached_features(extract, cached_model, ds, folder, {"point": point},
                                 precision=precision)[0] for ds in (train, test)]
        cache_s = time.perf_counter() - start
        cached = Trainer(config, Path(folder) / "cached", FeatureDataset(feats[0], train.labels,
                         train.classes, train.name), FeatureDataset(feats[1], test.labels,
                         test.classes, test.name), progress=False, log=None, model=head)
        cached_s = epoch_seconds(cached, 1, 1)  # the same one epoch as the baseline's
        acc_base = evaluate_model(baseline.model, test, 500, baseline.precision).accuracy
        acc_cached = evaluate_model(head.network, test, 500, cached.precision).accuracy
        cached_s = min(cached_s, epoch_seconds(cached, 2, 3))  # and the best of three more
    print(f"baseline (recompute backbone): {base_s:8.3f} s/epoch  test acc {acc_base:.2%} (1 epoch)")
    print(f"cached features:               {cached_s:8.3f} s/epoch  test acc {acc_cached:.2%} (1 epoch)")
    print(f"one-time cache build:          {cache_s:8.3f} s ({feats[0].shape[1]:,} x "
          f"{tuple(feats[0].shape[2:])} float32, point: {point})")
    print(f"speed-up per epoch: {base_s / cached_s:,.0f}x; break-even after "
          f"{cache_s / max(base_s - cached_s, 1e-9):.2f} epochs")


if __name__ == "__main__":
    main()
