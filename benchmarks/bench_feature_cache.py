"""Head training on cached backbone features vs recomputing the frozen backbone every epoch.

ResNet-18 with the small-input stem (create_model('resnet18', num_classes=10, in_chans=1,
input_size=28)), frozen except its ``fc`` head, on a Fashion-MNIST subset. Both paths use the same
backbone, precision (the fastest correct one, as the Trainer picks it), batch order, optimizer and
head initialisation:

* baseline — every batch runs the frozen backbone (no grad) and then one SGD step of the head;
* cached   — the backbone runs once over the split (timed separately, then memory-mapped from
  disk via cnnlab.transfer.cached_features), and each epoch reads only the cache.

Reports seconds per epoch, the ratio, the one-time cache cost, and the test accuracy of each head
measured by running the *whole* model (backbone + trained head) on the test images.

    .venv/bin/python benchmarks/bench_feature_cache.py --train 10000 --test 2000
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import torch
import torch.nn.functional as F

from cnnlab.data import load_dataset
from cnnlab.data.loader import normalize
from cnnlab.device import resolve_precision
from cnnlab.models import create_model
from cnnlab.transfer import cached_features, freeze, split_for_cache


def head_epoch(head, batches, get_features, lr=0.05, seed=0):
    """One epoch of SGD on ``head``; ``get_features(index)`` supplies each batch's inputs."""
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9)
    start = time.perf_counter()
    for index, labels in batches:
        loss = F.cross_entropy(head(get_features(index)).float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


@torch.no_grad()
def full_model_accuracy(model, head, ds, precision, batch=500):
    model = copy.deepcopy(model)
    model.fc.load_state_dict(head.state_dict())
    model.eval()
    correct = 0
    for i in range(0, len(ds), batch):
        x = normalize(ds.images[i:i + batch], ds.mean, ds.std)
        if precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with precision.autocast():
            correct += (model(x).argmax(1) == ds.labels[i:i + batch]).sum().item()
    return correct / len(ds)


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
    precision = resolve_precision(args.device, "auto")
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10, in_chans=1, input_size=28)
    freeze(model, "features")
    model = model.to(precision.device).eval()
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    point, extract, _ = split_for_cache(model)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    batches = [(order[i:i + args.batch_size], train.labels[order[i:i + args.batch_size]])
               for i in range(0, len(train), args.batch_size)]
    head0 = copy.deepcopy(model.fc).float()
    print(f"resnet18 (small stem), fashion-mnist {len(train):,} train / {len(test):,} test, "
          f"batch {args.batch_size}, {precision.describe()}, {torch.get_num_threads()} threads, "
          f"cache point: {point}")

    def recompute(index):
        x = normalize(train.images[index].to(precision.device), train.mean, train.std)
        if precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), precision.autocast():
            return extract(x).float()

    head_base = copy.deepcopy(head0)
    base_s = head_epoch(head_base, batches, recompute)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        feats, _ = cached_features(extract, model, train, folder, {"point": point},
                                   precision=precision)
        cache_s = time.perf_counter() - start
        head_cached = copy.deepcopy(head0)
        cached_s = head_epoch(head_cached, batches, lambda index: feats[0, index])
        repeat = [head_epoch(copy.deepcopy(head0), batches, lambda index: feats[0, index])
                  for _ in range(3)]
        cached_s = min([cached_s, *repeat])
        acc_base = full_model_accuracy(model, head_base, test, precision)
        acc_cached = full_model_accuracy(model, head_cached, test, precision)
    print(f"baseline (recompute backbone): {base_s:8.3f} s/epoch  test acc {acc_base:.2%}")
    print(f"cached features:               {cached_s:8.3f} s/epoch  test acc {acc_cached:.2%}")
    print(f"one-time cache build:          {cache_s:8.3f} s ({feats.shape[1]:,} x "
          f"{tuple(feats.shape[2:])} float32)")
    print(f"speed-up per epoch: {base_s / cached_s:,.0f}x; break-even after "
          f"{cache_s / max(base_s - cached_s, 1e-9):.2f} epochs")


if __name__ == "__main__":
    main()
