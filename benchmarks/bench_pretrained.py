"""Pretrained EfficientNet-Lite0 (ImageNet) as a frozen feature extractor: speed and what it buys.

1. **Feature extraction, images/s at the weights' input size (224).** Fashion-MNIST images resized
   to 224, grey repeated to RGB, the weights' normalisation. Baseline: the textbook forward,
   ``model.eval()`` + ``torch.no_grad()`` in fp32 NCHW, pooled features of each batch. Candidate:
   cnnlab's feature cache (:func:`cnnlab.transfer.cached_features`) with the numeric path ``auto``
   picks (:func:`cnnlab.transfer.run.cache_precision`: fp32 NCHW, fp32 channels_last, bf16 where
   oneDNN has it, measured). Alternating rounds in one process; median and spread of each.
2. **Few labels.** K labels per class of Fashion-MNIST's ten classes (a seeded, class-balanced
   subset), tested on ``--test`` test images: a linear head on the frozen ImageNet features
   (trained by the Trainer on the cache), a linear classifier on the raw pixels, and LeNet-5
   (modern) trained from scratch on the same images.

    .venv/bin/python benchmarks/bench_pretrained.py --images 512 --rounds 3 --labels 10 --test 2000
    taskset -c 0 .venv/bin/python benchmarks/bench_pretrained.py --threads 1   # one core

benchmarks/_harness.py records the machine and the load before and after, and marks every figure
UNDER LOAD when the machine was busy (a busy core slows the two sides unequally).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch
from _harness import Bench, Sample, add_arguments, figure, ratio, times
from torch import nn

from cnnlab.data.datasets import labels_per_class, load_dataset
from cnnlab.data.loader import normalize
from cnnlab.models import create_model, weights_info
from cnnlab.train import RunConfig
from cnnlab.train.trainer import Trainer
from cnnlab.transfer import FeatureDataset, TargetSpec, cached_features, freeze, split_for_cache
from cnnlab.transfer.run import cache_precision


@torch.no_grad()
def textbook(model: nn.Module, images: torch.Tensor, mean, std, batch: int = 64) -> float:
    """Seconds for the plain fp32 NCHW forward to the pooled features of every image."""
    model.eval()
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        x = normalize(images[i:i + batch], mean, std)
        model.forward_head(model.forward_features(x), pre_logits=True)
    return time.perf_counter() - start


def extraction(bench: Bench, args, model, spec, precision) -> None:
    raw = load_dataset("fashion-mnist", "test").subset(torch.arange(args.images))
    data = spec.transform(raw)
    point, extract, _ = split_for_cache(model)
    with tempfile.TemporaryDirectory() as folder:
        rounds = itertools.count()

        def cache() -> None:  # cnnlab picks the batch (feature_batch_size)
            cached_features(extract, model, data, Path(folder) / str(next(rounds)),
                            {"point": point}, precision=precision)

        samples = bench.alternate({  # the warm-up round warms up oneDNN's kernels
            "textbook": lambda: textbook(model, data.images, data.mean, data.std),
            "cache": cache}, rounds=args.rounds, warmup=1)
    rates = {k: Sample(tuple(args.images / v for v in s.values)) for k, s in samples.items()}
    table = bench.table("path", "images/s", title=f"feature extraction, {args.images} images at "
                                                  f"{spec.size} px, {args.rounds} rounds alternating")
    table.row("textbook: model.eval(), torch.no_grad(), fp32 NCHW, batches of 64",
              figure(rates["textbook"]))
    table.row(f"cnnlab feature cache ({precision.describe()})", figure(rates["cache"]))
    table.row("ratio cnnlab / textbook", times(ratio(rates["cache"], rates["textbook"])))


def train_run(model, train, test, epochs, lr, out, name):
    config = RunConfig()
    config.model.name, config.model.num_classes = name, train.num_classes
    t = config.train
    t.epochs, t.lr, t.batch_size, t.plot, t.tensorboard = epochs, lr, 50, False, False
    history = Trainer(config, out, train, test, progress=False, log=None, model=model).fit()
    return history[-1]["test_acc"]


def few_labels(bench: Bench, args, model, spec, precision) -> None:
    full, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    test = test.subset(torch.arange(args.test))
    train = labels_per_class(full, args.labels, seed=0)
    repeat = max(1, 1000 // len(train))  # every method sees the same 1,000 images an epoch
    train_rep = train.subset(torch.arange(len(train)).repeat(repeat))
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        freeze(model, "features")
        model.reset_classifier(10)
        point, extract, head = split_for_cache(model)
        start = time.perf_counter()
        feats = [cached_features(extract, model, spec.transform(ds), folder / "cache",
                                 {"point": point}, precision=precision)[0] for ds in (train, test)]
        seconds = time.perf_counter() - start
        cached = [FeatureDataset(f, ds.labels, ds.classes, ds.name) for f, ds in zip(feats, (train, test))]
        cached[0] = cached[0].subset(torch.arange(len(train)).repeat(repeat))
        results["ImageNet features (frozen Lite0) + linear head"] = train_run(
            head, cached[0], cached[1], 10, 0.05, folder / "probe", "efficientnet_lite0")
        pixels = [FeatureDataset(normalize(ds.images, ds.mean, ds.std).flatten(1).unsqueeze(0),
                                 ds.labels, ds.classes, ds.name) for ds in (train_rep, test)]
        torch.manual_seed(0)
        results["linear classifier on pixels"] = train_run(
            nn.Linear(784, 10), pixels[0], pixels[1], 10, 0.05, folder / "pixels", "pixels")
        torch.manual_seed(0)
        scratch = create_model("lenet5_modern", num_classes=10, in_chans=1, input_size=28)
        results["LeNet-5 (modern) from scratch"] = train_run(
            scratch, train_rep, test, 10, 0.05, folder / "scratch", "lenet5_modern")
    table = bench.table("method", "test accuracy", title=(
        f"{args.labels} labels per class ({len(train)} images, each seen {repeat}x an epoch, 10 "
        f"epochs), Fashion-MNIST test {args.test} images"))
    for name, acc in results.items():
        table.row(name, f"{acc * 100:.2f}%")  # accuracies: not timings, never marked
    bench.note("features computed in ", figure(Sample((seconds,)), ".0f", " s"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512, help="images for the speed part")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--labels", type=int, default=10, help="labels per class")
    parser.add_argument("--test", type=int, default=2000, help="test images for the accuracy part")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    add_arguments(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = Bench.from_args(args)
    bench.note(f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    pre = weights_info("efficientnet_lite0").preprocessing
    spec = TargetSpec("fashion-mnist", size=pre.crop, in_chans=3, mean=pre.mean, std=pre.std)
    model = create_model("efficientnet_lite0", weights="imagenet").eval()
    probe = spec.transform(load_dataset("fashion-mnist", "test").subset(torch.arange(16)))
    precision = cache_precision(model, probe, RunConfig(), log=print)
    extraction(bench, args, model, spec, precision)
    if not args.skip_accuracy:
        few_labels(bench, args, model, spec, precision)
    bench.finish()


if __name__ == "__main__":
    main()
