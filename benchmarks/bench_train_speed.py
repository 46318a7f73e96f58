"""Training images/s: cnnlab's training path vs the textbook PyTorch loop, same run, same machine.

Baseline ("textbook"): torchvision.datasets.FashionMNIST + transforms.ToTensor + DataLoader
(shuffle, num_workers=0, the default) feeding an fp32 NCHW model with SGD + momentum.
cnnlab: ``Trainer.train_epoch`` — one uint8 tensor in memory, batches sliced and normalised on
the device by a background producer, precision chosen by ``auto`` (measured: fp32 NCHW, fp32
channels_last, or bf16 + channels_last where oneDNN has bf16 kernels). Both train the same
architecture on the same number of images with the same batch; the two are alternated
(``--rounds``, benchmarks/_harness.py) and the median and spread of each are reported, with
the median of the per-round ratios.

    python benchmarks/bench_train_speed.py [--models lenet5 resnet20 resnet18] [--images 2560]
    python benchmarks/bench_train_speed.py --bare   # the bare step's ceiling: fp32 vs bf16
    python benchmarks/bench_train_speed.py --profile --models fmnist-fast --batch 512

``--profile``: where the time of a bare fp32 NCHW training step goes (forward, backward, SGD step;
torch.profiler over 5 steps after 3 warm-up ones), by kind of operation, and the convolutions'
throughput (2 FLOPs per multiply-add of the forward, counted by ``cnnlab.summary``, times 3 for the
forward and the two backward products: a slight over-count, as no gradient of the input image
is computed). A name in ``--models`` may be a recipe's: its model with
the recipe's options.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
from pathlib import Path

import torch
from _harness import Bench, Figure, Sample, add_arguments, figure, ratio, textbook_loop, times

from cnnlab.data import load_dataset
from cnnlab.data.datasets import find_idx_dir
from cnnlab.device import Precision, measure_cpu_precision
from cnnlab.models import create_model
from cnnlab.train import RunConfig, Trainer

RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
       "t10k-labels-idx1-ubyte")


def torchvision_root(tmp: Path) -> Path:
    """torchvision's FashionMNIST wants root/FashionMNIST/raw/<unzipped IDX files>."""
    source, raw = find_idx_dir("fashion-mnist"), tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in RAW:
        gz = source / f"{stem}.gz"
        with (gzip.open(gz) if gz.exists() else open(source / stem, "rb")) as f, open(raw / stem, "wb") as o:
            shutil.copyfileobj(f, o)
    return tmp


def textbook(name: str, root: Path, images: int, batch: int) -> float:
    from torchvision import datasets, transforms

    data = datasets.FashionMNIST(root, train=True, download=False, transform=transforms.ToTensor())
    data = torch.utils.data.Subset(data, range(images))
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True)
    torch.manual_seed(0)
    return textbook_loop(create_model(name, num_classes=10, in_chans=1, input_size=28), loader)


def cnnlab_path(name: str, train_set, test_set, batch: int, out: Path) -> tuple[float, str]:
    config = RunConfig()
    config.model.name = name
    config.train.epochs, config.train.batch_size, config.train.lr = 1, batch, 0.01
    trainer = Trainer(config, out, train_set, test_set, progress=False, log=None)
    _, _, rate = trainer.train_epoch(1)
    return rate, trainer.precision.describe()


# The kinds of operation a profiled step is split into: (kind, substrings of aten op names).
OP_KINDS = (("convolution", ("convolution",)), ("max pooling", ("max_pool",)),
            ("BatchNorm", ("batch_norm",)))


def profile_step(bench: Bench, names: list[str], batch: int, steps: int = 5) -> None:
    """Self CPU time of a bare fp32 NCHW training step (the textbook loop's, on random images) by
    kind of operation (see the docstring)."""
    from torch.profiler import ProfilerActivity, profile

    import cnnlab
    from cnnlab.train.recipes import RECIPES, recipe_config

    table = bench.table("model", "step ms", *(kind for kind, _ in OP_KINDS), "other",
                        "convolution GFLOP/s",
                        title=f"where a bare fp32 NCHW training step goes, batch {batch} at 28 px "
                              f"(share of self CPU time over {steps} profiled steps)")
    for name in names:
        torch.manual_seed(0)
        kwargs = dict(name=name, num_classes=10, in_chans=1, input_size=28)
        if name in RECIPES:
            kwargs.update({k: v for k, v in recipe_config(name).model.create_kwargs().items()
                           if v is not None})
        model = create_model(**kwargs)
        batches = [(torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,)))]
        textbook_loop(model, batches * 3)  # warm-up: the same step, unprofiled
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            wall = batch / textbook_loop(model, batches * steps)  # seconds a step
        spent = dict.fromkeys([kind for kind, _ in OP_KINDS] + ["other"], 0.0)
        for event in prof.key_averages():
            if not event.key.startswith("aten::"):
                continue
            kind = next((k for k, keys in OP_KINDS if any(s in event.key for s in keys)), "other")
            spent[kind] += event.self_cpu_time_total / 1e6 / steps  # seconds a step
        total = sum(spent.values())
        macs = sum(r.self_macs for r in cnnlab.summary(model, (1, 28, 28), batch_size=batch).rows
                   if "Conv" in r.type)
        table.row(name, Figure(f"{1e3 * wall:,.0f}"),
                  *(f"{spent[k] / total:.0%}" for k in spent),
                  Figure(f"{3 * 2 * macs / spent['convolution'] / 1e9:.0f}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet5", "resnet20", "resnet18"])
    parser.add_argument("--images", type=int, default=2560, help="training images per measurement")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bare", action="store_true",
                        help="instead: time a bare forward + backward, fp32 NCHW vs bf16 + channels_last")
    parser.add_argument("--profile", action="store_true",
                        help="instead: where a bare fp32 training step's time goes (see above)")
    add_arguments(parser)
    args = parser.parse_args()
    bench = Bench.from_args(args)
    if args.profile:
        profile_step(bench, args.models, args.batch)
        bench.finish()
        return
    if args.bare:
        table = bench.table("model", "fp32 NCHW ms", "bf16 CL ms", "ratio",
                            title="bare forward + backward, batch "
                                  f"{args.batch} (best of 5, as --precision auto times it)")
        for name in args.models:  # forward + backward on random images: what `auto` times
            torch.manual_seed(0)
            model = create_model(name, num_classes=10, in_chans=1, input_size=28)
            images, labels = torch.randn(args.batch, 1, 28, 28), torch.randint(0, 10, (args.batch,))
            cpu = torch.device("cpu")
            _, measured = measure_cpu_precision(model, images, labels, repeats=5, candidates={
                "fp32": Precision(cpu, "fp32", False), "bf16": Precision(cpu, "bf16", True)})
            fp32, bf16 = (Sample((measured[k],)) for k in ("fp32", "bf16"))
            table.row(name, figure(fp32.scaled(1e3), ",.0f"), figure(bf16.scaled(1e3), ",.0f"),
                      times(ratio(fp32, bf16)))
        bench.finish()
        return
    train_full = load_dataset("fashion-mnist", "train")
    test_small = load_dataset("fashion-mnist", "test").subset(torch.arange(1000))
    table = bench.table("model", "textbook img/s", "cnnlab img/s", "ratio", "cnnlab path",
                        title=f"training images/s, batch {args.batch}, {args.rounds} alternating "
                              "rounds, median (IQR)")
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(Path(tmp))
        for name in args.models:
            n = args.images if name != "resnet18" else args.images // 4
            subset = train_full.subset(torch.arange(n))
            path = []

            def ours(name=name, subset=subset, path=path):
                rate, how = cnnlab_path(name, subset, test_small, args.batch, Path(tmp) / name)
                path.append(how)
                return rate

            rates = bench.alternate({"textbook": lambda name=name, n=n: textbook(
                name, root, n, args.batch), "cnnlab": ours}, rounds=args.rounds, warmup=0)
            table.row(name, figure(rates["textbook"], ",.0f"), figure(rates["cnnlab"], ",.0f"),
                      times(ratio(rates["cnnlab"], rates["textbook"]), ".1f"), path[-1])
    bench.finish()


if __name__ == "__main__":
    main()
