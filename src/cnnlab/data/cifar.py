"""CIFAR-10 and CIFAR-100 (Krizhevsky, "Learning Multiple Layers of Features from Tiny Images",
2009): 32x32 RGB images, 50,000 for training and 10,000 for testing, read into memory as uint8.

Both official layouts are read:

* **binary** — ``cifar-10-batches-bin/data_batch_{1..5}.bin`` and ``test_batch.bin``: records of a
  label byte then 1,024 red, 1,024 green and 1,024 blue bytes (row-major); CIFAR-100's
  ``cifar-100-binary/train.bin`` and ``test.bin`` hold a coarse and a fine label byte first;
* **python** (what torchvision downloads) — ``cifar-10-batches-py/data_batch_{1..5}`` and
  ``test_batch``, ``cifar-100-python/train`` and ``test``: pickled dicts of a (N, 3072) uint8 array
  and label lists. They are read by a restricted unpickler that admits nothing but numpy's array
  and dtype reconstruction: a pickle naming any other callable is refused and nothing runs.

Found like Fashion-MNIST: ``data_dir`` / ``CNNLAB_DATA``, the user cache (``~/.cache/cnnlab``), then
the official binary archive downloaded into the cache (MD5-checked, unpacked atomically) when
there is a network; otherwise one error naming the file and where to put it. ``cifar100`` has
the 100 fine labels, ``cifar100-coarse`` the 20 superclasses.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.datasets import InMemoryDataset, cache_dir, candidate_dirs
from cnnlab.errors import DataError

PIXELS = 3 * 32 * 32
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
    "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
    "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
    "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy",
    "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal",
    "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar",
    "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm")
CIFAR100_COARSE_CLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2")


@dataclass(frozen=True)
class CifarSpec:
    """Where one CIFAR set lives and how its files are laid out."""

    name: str  # what users type: cifar10, cifar100, cifar100-coarse
    classes: tuple[str, ...]
    binary_dir: str  # folder of the binary layout
    binary_files: dict  # split -> file names
    label_byte: int  # which leading byte is the label (CIFAR-100: 0 coarse, 1 fine)
    label_bytes: int  # leading label bytes per record
    python_dir: str  # folder of the python layout
    python_files: dict
    python_key: bytes  # label list in the pickled dict
    url: str  # the official binary archive
    md5: str


_BIN10 = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
_PY10 = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_URL = "https://www.cs.toronto.edu/~kriz/"
CIFAR_DATASETS = {
    "cifar10": CifarSpec("cifar10", CIFAR10_CLASSES, "cifar-10-batches-bin", _BIN10, 0, 1,
                         "cifar-10-batches-py", _PY10, b"labels", _URL + "cifar-10-binary.tar.gz",
                         "c32a1d4ab5d03f1284b67883e8d87530"),
    "cifar100": CifarSpec("cifar100", CIFAR100_CLASSES, "cifar-100-binary",
                          {"train": ("train.bin",), "test": ("test.bin",)}, 1, 2,
                          "cifar-100-python", {"train": ("train",), "test": ("test",)},
                          b"fine_labels", _URL + "cifar-100-binary.tar.gz",
                          "03b5dce01913d631647c71ecec9e9cb8"),
}
CIFAR_DATASETS["cifar100-coarse"] = CifarSpec(
    "cifar100-coarse", CIFAR100_COARSE_CLASSES, "cifar-100-binary",
    {"train": ("train.bin",), "test": ("test.bin",)}, 0, 2, "cifar-100-python",
    {"train": ("train",), "test": ("test",)}, b"coarse_labels", _URL + "cifar-100-binary.tar.gz",
    "03b5dce01913d631647c71ecec9e9cb8")


class _ArrayUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR python batch needs: numpy's ndarray/dtype reconstruction and
    ``codecs.encode`` (bytes in a protocol-2 pickle written by Python 3), plus dicts, lists, bytes
    and numbers, which need no global. Anything else is refused before it is looked up."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 spells bytes from Python 3
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never holds")


def _read_python(path: Path, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise DataError(f"refused {path}: not a CIFAR python batch ({err}); nothing in it was "
                        f"run. Use the official files (or the binary layout)") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} holds a {type(batch).__name__}, not a CIFAR batch dict")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    key = spec.python_key.decode()
    data, labels = batch.get("data"), batch.get(key)
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{path} lacks 'data' (an array) or {key!r}: not a {spec.name} batch")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        raise DataError(f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, {PIXELS})")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(labels)} labels for {len(data)} images")
    return data, labels


def _read_binary(path: Path, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    record = spec.label_bytes + PIXELS
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise DataError(f"{path} is truncated or not a {spec.name} binary batch: {raw.size:,} bytes "
                        f"is not a whole number of {record:,}-byte records")
    rows = raw.reshape(-1, record)
    return rows[:, spec.label_bytes:], rows[:, spec.label_byte].astype(np.int64)


def find_cifar(spec: CifarSpec, data_dir: str | Path | None = None, download: bool = True
               ) -> tuple[Path, str]:
    """(folder, "binary" or "python") of the first layout found in the documented order."""
    searched = candidate_dirs(spec.name.split("-")[0], data_dir)  # cifar100-coarse: cifar100/
    if data_dir:  # an explicit folder is used or refused, never silently replaced by another
        searched = searched[:2]
    layouts = (("binary", spec.binary_dir, spec.binary_files),
               ("python", spec.python_dir, spec.python_files))
    for directory in searched:
        for layout, folder, files in layouts:
            if all((directory / folder / f).is_file() for split in files.values() for f in split):
                return directory / folder, layout
    if data_dir:
        for directory in searched:
            for _, folder, files in layouts:
                lacking = [directory / folder / f for split in files.values() for f in split
                           if not (directory / folder / f).is_file()]
                if (directory / folder).is_dir() and lacking:
                    raise DataError(f"--data-dir {str(data_dir)!r}: {directory / folder} lacks "
                                    f"{', '.join(p.name for p in lacking)}; put the files there, "
                                    f"or drop --data-dir to use the cache or a download")
        raise DataError(f"--data-dir {str(data_dir)!r} holds neither {spec.binary_dir}/ nor "
                        f"{spec.python_dir}/ of {spec.name}; unpack {spec.url.rsplit('/', 1)[-1]} "
                        f"there, or drop --data-dir to use the cache or a download")
    if download:
        return _download(spec, searched), "binary"
    raise _missing(spec, searched)


def _missing(spec: CifarSpec, searched: list[Path], reason: str = "") -> DataError:
    where = ", ".join(str(d) for d in dict.fromkeys(searched))
    because = f" The download from {spec.url} failed: {reason}." if reason else ""
    archive = spec.url.rsplit("/", 1)[-1]
    return DataError(f"{spec.name} not found (looked in {where} for {spec.binary_dir}/ or "
                     f"{spec.python_dir}/).{because} To get it: download {archive} from {spec.url} "
                     f"and unpack it into {cache_dir() / spec.name.split('-')[0]} (or set "
                     f"CNNLAB_DATA / --data-dir to the folder that holds {spec.binary_dir}/).")


def _download(spec: CifarSpec, searched: list[Path]) -> Path:
    """Fetch the binary archive into the cache, check its MD5, unpack it atomically."""
    target = cache_dir() / spec.name.split("-")[0]
    target.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        with urllib.request.urlopen(spec.url, timeout=15) as response, tempfile.NamedTemporaryFile(
                dir=target, delete=False, suffix=".part") as tmp:
            shutil.copyfileobj(response, tmp)
        digest = hashlib.md5(Path(tmp.name).read_bytes()).hexdigest()
        if digest != spec.md5:
            raise DataError(f"the download from {spec.url} has MD5 {digest}, not {spec.md5}; try "
                            f"again, or download it by hand (see below)")
        unpack = Path(tempfile.mkdtemp(dir=target, prefix=".unpack-"))
        with tarfile.open(tmp.name) as archive:
            archive.extractall(unpack, filter="data")  # no links out, no absolute paths
        os.replace(unpack / spec.binary_dir, target / spec.binary_dir)
        shutil.rmtree(unpack, ignore_errors=True)
    except OSError as err:
        raise _missing(spec, searched, str(getattr(err, "reason", err))) from None
    finally:
        if tmp is not None and os.path.exists(tmp.name):
            os.unlink(tmp.name)
    return target / spec.binary_dir


def load_cifar(name: str, split: str = "train", data_dir: str | Path | None = None,
               download: bool = True) -> InMemoryDataset:
    """One split of ``cifar10``, ``cifar100`` or ``cifar100-coarse`` as an :class:`InMemoryDataset`
    (N, 3, 32, 32) uint8; mean and std are those of the training split, per channel."""
    spec = CIFAR_DATASETS[name]
    folder, layout = find_cifar(spec, data_dir, download)
    read, files = ((_read_binary, spec.binary_files) if layout == "binary"
                   else (_read_python, spec.python_files))
    splits = {}
    for part in dict.fromkeys(["train", split]):
        pieces = [read(folder / f, spec) for f in files[part]]
        images = np.concatenate([p[0] for p in pieces]).reshape(-1, 3, 32, 32)
        labels = np.concatenate([p[1] for p in pieces])
        if labels.min() < 0 or labels.max() >= len(spec.classes):
            raise DataError(f"{folder} ({part}) holds label {int(labels.max())} but {spec.name} has "
                            f"{len(spec.classes)} classes (labels 0-{len(spec.classes) - 1})")
        splits[part] = torch.from_numpy(images.copy()), torch.from_numpy(labels)
    mean, std = _channel_stats(splits["train"][0])
    images, labels = splits[split]
    return InMemoryDataset(images, labels, spec.classes, name, mean, std)


def _channel_stats(images: torch.Tensor, chunk: int = 5000) -> tuple[tuple[float, ...], ...]:
    """Per-channel mean and standard deviation of uint8 (N, C, H, W) in [0, 1] units, summed in
    float64 a chunk at a time (CIFAR's 50,000 images as float64 at once would take 1.2 GB)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].double() / 255
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    n = images.numel() // images.shape[1]
    mean = total / n
    std = ((squares - n * mean.square()) / (n - 1)).clamp(min=0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())
