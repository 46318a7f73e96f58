"""Image folders at photo sizes: `cnnlab train`'s streaming path vs the textbook loop, and the peak
memory of streaming vs in-memory on the same folder.

The folder is generated: 3 classes of JPEGs (quality 90) between 320x240 and 500x375 pixels,
smooth class-tinted gradients plus noise, ``--folder-images`` of them in train/ and a few in test/.

Baseline ("textbook"): ``torchvision.datasets.ImageFolder`` with the same v2 transforms as cnnlab's
streamed training (``RandomResizedCrop(size)``, horizontal flip; then to float and normalised) and
``DataLoader(shuffle=True, num_workers=2)`` feeding an fp32 NCHW model with SGD + momentum.
cnnlab: ``Trainer.train_epoch`` on the folder with ``data.in_memory=false`` and ``data.workers=2``
(the decoding workers, then the device-side batch path, precision ``auto``), and the same epoch
with ``data.in_memory=true`` (decoded once beforehand: the training step alone, the ceiling of any
input pipeline on this machine). All see the same ``--images`` training images with the same batch
size, each round starting its workers afresh; they are alternated (``--rounds``, through
``benchmarks/_harness.py``) and each ratio is the median of the per-round ratios.

Peak memory: one subprocess per mode loads the train split (``data.in_memory=true``: the whole
decoded split; ``false``: the file list) and passes once over it in training batches; a tiny
launcher process reports the peak resident set of the largest process below it
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``: the child or one of its decoding workers).
Run it on two folder sizes (``--folder-images``) to see which of the two grows with the folder.

    python benchmarks/bench_image_pipeline.py                 # ResNet-20 @ 64 px, ResNet-18 @ 112 px
    python benchmarks/bench_image_pipeline.py --folder-images 300 600 --images 128 --rounds 1  # smoke
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from _harness import Bench, add_arguments, figure, ratio, textbook_loop, times

CASES = (("resnet20", 64), ("resnet18", 112))


def write_folder(root: Path, n_train: int, n_test: int = 30, seed: int = 0) -> Path:
    """3 classes of photo-sized JPEGs: a class-tinted gradient plus noise, random sizes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            label = i % 3
            width = int(rng.integers(320, 501))
            height = width * 3 // 4  # 320x240 ... 500x375
            ramp = np.linspace(0, 1, width)[None, :, None] * np.linspace(0.3, 1, height)[:, None, None]
            tint = np.eye(3)[label] * 0.6 + 0.2
            pixels = 255 * ramp * tint + rng.normal(0, 20, (height, width, 3))
            path = root / split / "abc"[label] / f"{i:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return root


def textbook(root: Path, name: str, size: int, images: int, batch: int) -> float:
    from torchvision import datasets
    from torchvision.transforms import v2

    from cnnlab.models import create_model

    transform = v2.Compose([v2.ToImage(), v2.RandomResizedCrop(size, antialias=True),
                            v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize([0.5] * 3, [0.25] * 3)])
    data = datasets.ImageFolder(str(root / "train"), transform=transform)
    data = torch.utils.data.Subset(data, range(images))
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, num_workers=2)
    torch.manual_seed(0)
    return textbook_loop(create_model(name, num_classes=3, in_chans=3, input_size=size), loader)


def _config(root: Path, name: str, size: int, in_memory: str, batch: int):
    from cnnlab.train import RunConfig
    from cnnlab.train.config import apply_overrides

    return apply_overrides(RunConfig(), {
        "model.name": name, "data.name": "imagefolder", "data.data_dir": str(root),
        "data.image_size": size, "data.in_memory": in_memory, "data.workers": 2,
        "train.epochs": 1, "train.batch_size": batch, "train.lr": 0.01, "train.plot": False,
        "train.tensorboard": False})


def cnnlab_epoch(root: Path, name: str, size: int, images: int, batch: int, out: Path,
                 notes: dict, in_memory: str = "false") -> float:
    """Training images/s of one ``Trainer.train_epoch`` over the first ``images`` of train/:
    streamed (``in_memory="false"``), or decoded once beforehand (``"true"``: the step alone)."""
    from cnnlab.data import load_dataset
    from cnnlab.train import Trainer

    config = _config(root, name, size, in_memory, batch)
    options = config.data.loader_kwargs()
    train = load_dataset("imagefolder", "train", **options).subset(torch.arange(images))
    test = load_dataset("imagefolder", "test", **options)
    trainer = Trainer(config, out, train, test, progress=False, log=None)
    _, _, rate = trainer.train_epoch(1)
    notes[name] = trainer.precision.describe()  # what precision auto chose
    return rate


def peak_rss_child(root: Path, in_memory: str, size: int, batch: int) -> None:
    """(Run in a subprocess.) Load the train split and pass over it once; print the peak RSS."""
    from cnnlab.data import load_dataset
    from cnnlab.data.loader import InMemoryLoader

    options = _config(root, "resnet20", size, in_memory, batch).data.loader_kwargs()
    train = load_dataset("imagefolder", "train", **options)
    for _ in InMemoryLoader(train, batch, shuffle=True, seed=0):
        pass


# Linux keeps a process's peak RSS across fork + exec, so a child of this (large) process would
# report at least our own size: a tiny launcher starts the child and reads its peak instead.
LAUNCHER = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
            "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss(root: Path, in_memory: str, size: int, batch: int) -> float:
    """MiB: the peak resident set of the largest process (the child or one of its workers)."""
    child = [sys.executable, __file__, "--rss-child", in_memory, "--folder", str(root),
             "--size", str(size), "--batch", str(batch)]
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *child], capture_output=True, text=True,
                          check=True)
    return int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder-images", type=int, nargs="+", default=[3000, 6000],
                        help="JPEGs in train/; the speed is measured on the first folder, the "
                             "peak memory on each")
    parser.add_argument("--images", type=int, default=512, help="training images per measurement")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=None, help="use this folder (else generated)")
    parser.add_argument("--size", type=int, default=112, help="(--rss-child) image size")
    parser.add_argument("--rss-child", choices=("true", "false"), default=None, help=argparse.SUPPRESS)
    add_arguments(parser)
    args = parser.parse_args()
    if args.rss_child:
        return peak_rss_child(args.folder, args.rss_child, args.size, args.batch)
    bench = Bench.from_args(args)
    with tempfile.TemporaryDirectory() as tmp:
        roots = [args.folder] if args.folder else \
            [write_folder(Path(tmp) / f"photos{n}", n) for n in args.folder_images]
        counts = [sum(1 for _ in (root / "train").rglob("*.jpg")) for root in roots]
        images = min(args.images, counts[0])
        speed = bench.table(
            "model", "size", "textbook img/s", "cnnlab streaming img/s", "streaming / textbook",
            "step alone (in memory) img/s", "streaming / step alone",
            title=f"training images/s, {counts[0]:,} JPEGs of 320x240 to 500x375, {images:,} "
                  f"images per measurement, batch {args.batch}, median of {args.rounds} "
                  f"alternating rounds, 2 decoding workers each")
        notes: dict[str, str] = {}
        for name, size in CASES:
            common = (roots[0], name, size, images, args.batch)
            out = Path(tmp) / "run"
            rates = bench.alternate({
                "textbook": lambda common=common: textbook(*common),
                "streaming": lambda common=common, out=out: cnnlab_epoch(*common, out, notes),
                "in memory": lambda common=common, out=out: cnnlab_epoch(*common, out, notes, "true"),
            }, rounds=args.rounds, warmup=0)
            speed.row(f"{name} ({notes[name]})", size, figure(rates["textbook"]),
                      figure(rates["streaming"]), times(ratio(rates["streaming"], rates["textbook"])),
                      figure(rates["in memory"]),
                      times(ratio(rates["streaming"], rates["in memory"])))
        memory = bench.table("train/ JPEGs", "streaming peak RSS", "in memory peak RSS",
                             title="peak RSS (MiB) of one pass over train/ at 112 px, the largest "
                                   "process (the trainer or one of its decoding workers)")
        for root, count in zip(roots, counts, strict=True):
            memory.row(f"{count:,}", f"{peak_rss(root, 'false', 112, args.batch):.0f}",  # not a timing
                       f"{peak_rss(root, 'true', 112, args.batch):.0f}")
    bench.finish()


if __name__ == "__main__":
    main()
