"""Image folders at photo sizes: `cnnlab train`'s streaming path vs the textbook loop, and the peak
memory of streaming vs in-memory on the same folder.

The folder is generated: 3 classes of JPEGs (quality 90) between 320x240 and 500x375 pixels,
smooth class-tinted gradients plus noise, ``--folder-images`` of them in train/ and a few in test/.

Baseline ("textbook"): ``torchvision.datasets.ImageFolder`` with the same v2 transforms as cnnlab's
streamed training (``RandomResizedCrop(size)``, horizontal flip; then to float and normalised) and
``DataLoader(shuffle=True, num_workers=2)`` feeding an fp32 NCHW model with SGD + momentum.
cnnlab: ``Trainer.train_epoch`` on the folder with ``data.in_memory=false`` and ``data.workers=2``
(the decoding workers, then the device-side batch path, precision ``auto``). Both see the same
``--images`` training images with the same batch size, each round starting its workers afresh;
the two are alternated (``--rounds``) and the best round of each is kept, so that the load of a
shared machine hits both alike. The ratio is the figure; absolute img/s depend on the load.

Peak memory: one subprocess per mode loads the train split (``data.in_memory=true``: the whole
decoded split; ``false``: the file list) and passes once over it in training batches; a tiny
launcher process reports the peak resident set of the largest process below it
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``: the child or one of its decoding workers).
Run it on two folder sizes (``--folder-images``) to see which of the two grows with the folder.

    python benchmarks/bench_image_pipeline.py                 # ResNet-20 @ 64 px, ResNet-18 @ 112 px
    python benchmarks/bench_image_pipeline.py --folder-images 600 --images 256 --rounds 1  # smoke
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _harness import textbook_loop

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


def best_rates(measures: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """The timing loop: run each measurement once per round, alternating; keep each one's best."""
    best = dict.fromkeys(measures, 0.0)
    for _ in range(rounds):
        for name, measure in measures.items():
            best[name] = max(best[name], measure())
    return best


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


def cnnlab_streaming(root: Path, name: str, size: int, images: int, batch: int, out: Path,
                     notes: dict) -> float:
    from cnnlab.data import load_dataset
    from cnnlab.train import Trainer

    config = _config(root, name, size, "false", batch)
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
    parser.add_argument("--folder-images", type=int, default=3000, help="JPEGs in train/")
    parser.add_argument("--images", type=int, default=1024, help="training images per measurement")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=None, help="use this folder (else generated)")
    parser.add_argument("--size", type=int, default=112, help="(--rss-child) image size")
    parser.add_argument("--rss-child", choices=("true", "false"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return peak_rss_child(args.folder, args.rss_child, args.size, args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.folder or write_folder(Path(tmp) / "photos", args.folder_images)
        n_train = sum(1 for _ in (root / "train").rglob("*.jpg"))
        images = min(args.images, n_train)
        print(f"{n_train:,} training JPEGs (320x240 to 500x375), {images:,} per measurement, "
              f"batch {args.batch}, best of {args.rounds} alternating rounds; "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        notes: dict[str, str] = {}
        print(f"{'model':<10} {'size':>5} {'textbook img/s':>15} {'cnnlab img/s':>13} {'ratio':>6}")
        for name, size in CASES:
            common = (root, name, size, images, args.batch)
            rates = best_rates({
                "textbook": lambda common=common: textbook(*common),
                "cnnlab": lambda common=common: cnnlab_streaming(*common, Path(tmp) / "run", notes),
            }, args.rounds)
            print(f"{name:<10} {size:>5} {rates['textbook']:>15.1f} {rates['cnnlab']:>13.1f} "
                  f"{rates['cnnlab'] / rates['textbook']:>5.2f}x  ({notes[name]})")
        print(f"\npeak RSS of one pass over train/ at 112 px ({n_train:,} images; the largest "
              f"process, MiB)")
        for mode, label in (("false", "streaming"), ("true", "in memory")):
            print(f"  {label:<10} {peak_rss(root, mode, 112, args.batch):>8.0f}")


if __name__ == "__main__":
    main()
