"""The campaign's image-folder and data-lookup rows (issue 14 point 2): the right data, or an error.

Each fixture is written by the case's ``setup``: image files with PIL (JPEG, CMYK JPEG, grey+alpha,
palette, 16-bit PNG, BMP) and broken IDX sets, in a fresh copy of the campaign workspace. The
healthy image-folder runs are trained by the setup too (lenet5, 1 epoch at 28 px: 12 images).
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.data.stream import FileImageDataset
from cnnlab.errors import DataError

from .campaign import Case, parametrize, run_case
from .conftest import write_image_folder

TRAIN = "train lenet5 --data imagefolder --precision fp32 --no-progress --epochs 1 " \
        "--set data.image_size=28"
IDX = "train lenet5 --precision fp32 --no-progress --epochs 1 --set data.download=false"


def _train(folder: str, out: str, *extra: str):
    """A setup that trains a healthy image-folder run ``out`` on imgs/good (or ``folder``)."""
    def setup(root: Path) -> None:
        code = main([*TRAIN.split(), "--data-dir", folder, "--out", out, *extra])
        assert code == 0

    return setup


def _pil(path: Path, image: Image.Image, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save)
    return path


def _colour(c: int) -> tuple[int, int, int]:
    return [(200, 30, 30), (30, 200, 30), (30, 30, 200)][c]


def _folder(name: str, make, classes=("a", "b", "c"), per_class=(3, 1)):
    """A setup writing imgs/<name>: ``make(path_without_suffix, class_index) -> Path`` per image."""
    def setup(root: Path) -> None:
        for split, n in zip(("train", "test"), per_class):
            for c, cls in enumerate(classes):
                for i in range(n):
                    make(root / "imgs" / name / split / cls / str(i), c)

    return setup


def _jpeg(stem: Path, c: int) -> Path:
    return _pil(stem.with_suffix(".jpg"), Image.new("RGB", (40, 30), _colour(c)), quality=90)


def _with(setup, extra):
    """``setup`` then ``extra(root)``."""
    def both(root: Path) -> None:
        setup(root)
        extra(root)

    return both


def _corrupt_jpeg(root: Path, name: str) -> None:
    """A JPEG cut at 70%: its header reads (the scan passes it), its data does not decode."""
    noise = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    path = _pil(root / "imgs" / name / "train" / "a" / "bad.jpg", Image.fromarray(noise), quality=90)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) * 7 // 10])


def _sixteen_bit(stem: Path, c: int) -> Path:
    grey = np.full((24, 24), [20, 120, 220][c] * 257, dtype=np.uint16)  # 8-bit value v as v * 257
    return _pil(stem.with_suffix(".png"), Image.fromarray(grey))


def _mixed_modes(stem: Path, c: int) -> Path:
    """Grey, grey+alpha, palette and RGBA PNGs, one mode per image index."""
    modes = ["L", "LA", "P", "RGBA"]
    image = Image.new("RGB", (24, 24), _colour(c)).convert(modes[int(stem.name) % 4])
    return _pil(stem.with_suffix(".png"), image)


def _cmyk(stem: Path, c: int) -> Path:
    return _pil(stem.with_suffix(".jpg"), Image.new("RGB", (30, 30), _colour(c)).convert("CMYK"))


def _bmp(stem: Path, c: int) -> Path:
    return _pil(stem.with_suffix(".bmp"), Image.new("RGB", (30, 20), _colour(c)))


def _single(path: str, image: Image.Image, **save):
    return lambda root: _pil(root / path, image, **save)


def _deep16_pair(root: Path) -> None:
    ramp = np.tile(np.linspace(0, 255, 28).round().astype(np.uint16), (28, 1))
    _pil(root / "pimg" / "deep16.png", Image.fromarray(ramp * 257))
    _pil(root / "pimg" / "deep8.png", Image.fromarray(ramp.astype(np.uint8)))


def _same_as_8bit(root: Path, text: str) -> None:
    """q08: a 16-bit PNG reaches the network as its 8-bit twin does (scaled to 0-255 first)."""
    from cnnlab.evaluate.predict import load_image

    deep, shallow = (load_image(root / "pimg" / f"deep{b}.png", 1, 28) for b in (16, 8))
    assert deep.dtype == torch.uint8 and torch.equal(deep, shallow)


# ---- broken IDX sets (data lookup) ---------------------------------------------------------------

def _idx_copy(name: str, change=None):
    def setup(root: Path) -> None:
        target = root / "data" / name
        shutil.copytree(root / "data" / "small", target)
        if change is not None:
            change(target)

    return setup


def _idx_bytes(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def _replace_images(target: Path, data: bytes) -> None:
    (target / "train-images-idx3-ubyte.gz").unlink()
    (target / "train-images-idx3-ubyte").write_bytes(data)


def _truncated(target: Path) -> None:
    data = _idx_bytes(target / "train-images-idx3-ubyte.gz")
    _replace_images(target, data[: len(data) // 2])


def _magic(target: Path) -> None:
    data = _idx_bytes(target / "train-images-idx3-ubyte.gz")
    _replace_images(target, b"\x12\x34" + data[2:])


def _empty(target: Path) -> None:
    _replace_images(target, b"")


def _huge_header(target: Path) -> None:
    _replace_images(target, b"\x00\x00\x08\x03" + struct.pack(">III", *(2**32 - 1,) * 3) + b"\0" * 100)


def _mismatch(target: Path) -> None:
    labels = _idx_bytes(target / "train-labels-idx1-ubyte.gz")
    (target / "train-labels-idx1-ubyte.gz").unlink()
    (target / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 500)
                                                      + labels[8:508])


def _dims2(target: Path) -> None:
    data = _idx_bytes(target / "train-images-idx3-ubyte.gz")
    _replace_images(target, b"\x00\x00\x08\x02" + struct.pack(">II", 600, 784) + data[16:])


def _bad_label(target: Path) -> None:
    labels = bytearray(_idx_bytes(target / "train-labels-idx1-ubyte.gz"))
    labels[8] = 200
    (target / "train-labels-idx1-ubyte.gz").unlink()
    (target / "train-labels-idx1-ubyte").write_bytes(bytes(labels))


def _float_images(target: Path) -> None:
    data = _idx_bytes(target / "train-images-idx3-ubyte.gz")
    pixels = np.frombuffer(data[16:], dtype=np.uint8).astype(">f4")
    _replace_images(target, b"\x00\x00\x0d\x03" + data[4:16] + pixels.tobytes())


def _truncated_gzip(target: Path) -> None:
    path = target / "train-images-idx3-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _missing_one(target: Path) -> None:
    (target / "t10k-labels-idx1-ubyte.gz").unlink()


CASES = [
    # -- a healthy image-folder run is evaluated and reported at its own image size -------------
    Case("g00e", "evaluate runs/g00", 0, ("test accuracy", "imagefolder"),
         setup=_train("imgs/good", "runs/g00")),
    Case("g11e", "evaluate runs/g11", 0, ("test accuracy",),  # a streamed run, reloaded streamed
         setup=_train("imgs/good", "runs/g11", "--set", "data.in_memory=false")),
    Case("g22e", "evaluate runs/g22", 0, ("test accuracy",),
         setup=lambda root: main(["train", "lenet5_modern", *TRAIN.split()[2:], "--set",
                                  "data.image_size=32", "--data-dir", "imgs/good", "--out", "runs/g22"])),
    Case("g00r", "report runs/g00 --out exp/g00.html", 0, (), setup=_train("imgs/good", "runs/g00"),
         check=lambda root, text: (root / "exp" / "g00.html").stat().st_size > 0 or None),
    Case("g00p", "predict runs/g00 imgs/good/test/a/0.png --top-k 1", 0, ("%",),
         setup=_train("imgs/good", "runs/g00")),
    Case("q05", "predict runs/g00 pimg/gray.png --top-k 2", 0, ("%",),
         setup=_with(_train("imgs/good", "runs/g00"),
                     _single("pimg/gray.png", Image.new("L", (20, 20), 90)))),
    Case("q10", "predict runs/g00 pimg/cmyk.jpg --top-k 2", 0, ("%",),
         setup=_with(_train("imgs/good", "runs/g00"),
                     _single("pimg/cmyk.jpg", Image.new("CMYK", (20, 20), (0, 200, 200, 0))))),
    # -- class folders: named errors ------------------------------------------------------------
    Case("g11", f"{TRAIN} --data-dir imgs/extratest --out runs/g11", 2,
         ("'d'", "train/ lacks"),
         setup=lambda root: (_folder("extratest", _jpeg)(root),
                             _jpeg(root / "imgs/extratest/test/d/0", 2))),
    Case("g02", f"{TRAIN} --data-dir imgs/oneclass --out runs/g02", 2, ("one class", "two"),
         setup=_folder("oneclass", _jpeg, classes=("a",))),
    Case("g03", f"{TRAIN} --data-dir imgs/emptyclass --out runs/g03", 2, ("holds no images", "d"),
         setup=lambda root: (_folder("emptyclass", _jpeg)(root),
                             (root / "imgs/emptyclass/train/d").mkdir())),
    Case("g01", f"{TRAIN} --data-dir imgs/noclass --out runs/g01", 2, ("no images",),
         setup=lambda root: _jpeg(root / "imgs/noclass/train/loose", 0)),
    Case("g13", f"{TRAIN} --data-dir imgs/testmissing --out runs/g13", 0, ("test accuracy",),
         setup=lambda root: (_folder("testmissing", _jpeg)(root),
                             shutil.rmtree(root / "imgs/testmissing/test/c"))),
    Case("g12", f"{TRAIN} --data-dir imgs/notest --out runs/g12", 0,
         ("no test/ folder", "held out", "data.val_fraction"),
         setup=lambda root: (_folder("notest", _jpeg, per_class=(5, 0))(root),
                             shutil.rmtree(root / "imgs/notest/test", ignore_errors=True))),
    Case("g12-off", f"{TRAIN} --data-dir imgs/notest --set data.val_fraction=0 --out runs/g12", 2,
         ("no test/ or val/", "data.val_fraction"),
         setup=lambda root: _folder("notest", _jpeg, per_class=(5, 0))(root)),
    # -- every image mode reaches the network as 0-255 RGB --------------------------------------
    Case("g07", f"{TRAIN} --data-dir imgs/png16 --out runs/g07", 0, ("test accuracy",),
         setup=_folder("png16", _sixteen_bit)),
    Case("g08", f"{TRAIN} --data-dir imgs/gray --out runs/g08", 0, ("test accuracy",),
         setup=_folder("gray", _mixed_modes, per_class=(4, 1))),
    Case("g06", f"{TRAIN} --data-dir imgs/cmyk --out runs/g06", 0, ("test accuracy",),
         setup=_folder("cmyk", _cmyk)),
    Case("g14", f"{TRAIN} --data-dir imgs/bmp --out runs/g14", 0, ("test accuracy",),
         setup=_folder("bmp", _bmp)),
    Case("g05", f"{TRAIN} --data-dir imgs/tiny1x1 --out runs/g05", 0, ("test accuracy",),
         setup=_folder("tiny1x1", lambda stem, c: _pil(stem.with_suffix(".png"),
                                                       Image.new("RGB", (1, 1), _colour(c))))),
    Case("g09", f"{TRAIN} --data-dir imgs/huge --out runs/g09", 0, ("test accuracy",),
         setup=_folder("huge", lambda stem, c: _pil(stem.with_suffix(".png"),
                                                    Image.new("RGB", (1600, 1200), _colour(c))),
                       per_class=(1, 1))),
    # -- bad files: one line naming the file, before training; or skipped and counted ----------
    Case("g04", f"{TRAIN} --data-dir imgs/corruptjpg --out runs/g04", 2,
         ("cannot read", "bad.jpg", "incomplete or truncated"),
         setup=lambda root: (_folder("corruptjpg", _jpeg)(root), _corrupt_jpeg(root, "corruptjpg"))),
    Case("g15", f"{TRAIN} --data-dir imgs/corruptjpg --set data.workers=0 --out runs/g15", 2,
         ("bad.jpg",), setup=lambda root: (_folder("corruptjpg", _jpeg)(root),
                                           _corrupt_jpeg(root, "corruptjpg"))),
    Case("g04-stream", f"{TRAIN} --data-dir imgs/corruptjpg --set data.in_memory=false "
         "--out runs/g04s", 2, ("bad.jpg",),
         setup=lambda root: (_folder("corruptjpg", _jpeg)(root), _corrupt_jpeg(root, "corruptjpg"))),
    Case("g10", f"{TRAIN} --data-dir imgs/textjpg --out runs/g10", 2,
         ("notes.jpg", "data.bad_images=skip"),
         setup=lambda root: (_folder("textjpg", _jpeg)(root),
                             (root / "imgs/textjpg/train/a/notes.jpg").write_text("not a picture\n"))),
    Case("g10-skip", f"{TRAIN} --data-dir imgs/textjpg --set data.bad_images=skip --out runs/g10", 0,
         ("left out 1 of 10", "notes.jpg", "test accuracy"),
         setup=lambda root: (_folder("textjpg", _jpeg)(root),
                             (root / "imgs/textjpg/train/a/notes.jpg").write_text("not a picture\n"))),
    Case("g-badpolicy", f"{TRAIN} --data-dir imgs/good --set data.bad_images=ignore --out runs/x", 2,
         ("data.bad_images", "error, skip")),
    # -- streaming, and the in-memory decision --------------------------------------------------
    Case("g-stream", f"{TRAIN} --data-dir imgs/good --set data.in_memory=false --out runs/s", 0,
         ("streaming", "test accuracy")),
    Case("g-stream-crop", f"{TRAIN} --data-dir imgs/good --set data.in_memory=false "
         "--set augment.crop_pad=2 --set augment.rotate=5 --out runs/s", 0,
         ("RandomResizedCrop", "augment.crop_pad=2", "not applied", "test accuracy")),
    Case("g-auto-big", f"{TRAIN} --data-dir imgs/good --set data.memory_budget_gb=0.00001 "
         "--out runs/s", 0, ("exceeds data.memory_budget_gb", "streaming")),
    Case("g-auto-fits", f"{TRAIN} --data-dir imgs/good --out runs/s", 0,
         ("fits data.memory_budget_gb", "in memory")),
    Case("g-inmem-bad", f"{TRAIN} --data-dir imgs/good --set data.in_memory=maybe --out runs/s", 2,
         ("data.in_memory", "auto, true, false")),
    Case("g-nodir", f"{TRAIN} --data-dir imgs/nothing --out runs/s", 2, ("imgs/nothing", "train/")),
    # -- predict: the folders' decoder --------------------------------------------------------------
    Case("q08", "predict runs/base pimg/deep16.png --data-dir data/small --top-k 2", 0, ("%",),
         setup=_deep16_pair, check=lambda root, text: _same_as_8bit(root, text)),
    Case("q02", "predict runs/base pimg/nope.png --data-dir data/small", 2, ("does not exist",)),
    Case("q04", "predict runs/base pimg/rgb.png --data-dir data/small --top-k 2", 0, ("%",),
         setup=_single("pimg/rgb.png", Image.new("RGB", (30, 20), (200, 30, 30)))),
    Case("q06", "predict runs/base pimg/huge.png --data-dir data/small --top-k 2", 0, ("%",),
         setup=_single("pimg/huge.png", Image.new("RGB", (1600, 1200), (20, 30, 200)))),
    Case("q07", "predict runs/base pimg/trunc.png --data-dir data/small", 2,
         ("cannot read", "trunc.png"),
         setup=lambda root: (_single("pimg/full.png", Image.effect_noise((64, 64), 60))(root),
                             (root / "pimg/trunc.png").write_bytes(
                                 (root / "pimg/full.png").read_bytes()[:300]))),
    Case("q09", "predict runs/base pimg/x.bmp --data-dir data/small --top-k 2", 0, ("%",),
         setup=_single("pimg/x.bmp", Image.new("RGB", (30, 20), (10, 200, 10)))),
    Case("q11", "predict runs/base pimg/one.png --data-dir data/small --top-k 100", 0, ("%",),
         setup=_single("pimg/one.png", Image.new("L", (28, 28), 128))),
    Case("q12", "predict runs/base pimg/gray.png pimg/text.png --data-dir data/small --top-k 1", 2,
         ("text.png",), setup=lambda root: (_single("pimg/gray.png", Image.new("L", (9, 9), 90))(root),
                                            (root / "pimg/text.png").write_text("hello\n"))),
    Case("q03", "predict runs/base pimg/text.png --data-dir data/small", 2,
         ("cannot read", "text.png"),
         setup=lambda root: (root / "pimg").mkdir() or (root / "pimg/text.png").write_text("hi\n"),
         check=lambda root, text: None if ".cpp" not in text else pytest.fail(text)),
    # -- IDX lookup: an explicit folder is used or refused --------------------------------------
    Case("i_missing", f"{IDX} --data-dir data/missing --out runs/i_missing", 2,
         ("t10k-labels-idx1-ubyte", "data/missing"), setup=_idx_copy("missing", _missing_one)),
    Case("i_missing-nothing", f"{IDX} --data-dir data/none --out runs/x", 2,
         ("data/none", "train-images-idx3-ubyte"),
         setup=lambda root: (root / "data" / "none").mkdir()),
    Case("i_trunc", f"{IDX} --data-dir data/trunc --out runs/x", 2, ("truncated",),
         setup=_idx_copy("trunc", _truncated)),
    Case("i_magic", f"{IDX} --data-dir data/magic --out runs/x", 2, ("not an IDX file",),
         setup=_idx_copy("magic", _magic)),
    Case("i_empty", f"{IDX} --data-dir data/empty --out runs/x", 2, ("truncated", "0 bytes"),
         setup=_idx_copy("empty", _empty)),
    Case("i_hugehdr", f"{IDX} --data-dir data/hugehdr --out runs/x", 2, ("truncated", "needs"),
         setup=_idx_copy("hugehdr", _huge_header)),
    Case("i_mismatch", f"{IDX} --data-dir data/mismatch --out runs/x", 2, ("do not match",),
         setup=_idx_copy("mismatch", _mismatch)),
    Case("i_dims2", f"{IDX} --data-dir data/dims2 --out runs/x", 2, ("do not match", "(N, H, W)"),
         setup=_idx_copy("dims2", _dims2)),
    Case("i_badlabel", f"{IDX} --data-dir data/badlabel --out runs/x", 2, ("label 200", "10 classes"),
         setup=_idx_copy("badlabel", _bad_label)),
    Case("i_truncgz", f"{IDX} --data-dir data/truncgz --out runs/x", 2, ("gzip",),
         setup=_idx_copy("truncgz", _truncated_gzip)),
    Case("i_floatimg", f"{IDX} --data-dir data/floatimg --out runs/x", 0, ("test accuracy",),
         setup=_idx_copy("floatimg", _float_images)),
    Case("env3", "train lenet5 --data mnist --precision fp32 --no-progress --epochs 1 "
         "--set data.download=false --out runs/env3", 2, ("mnist not found", "CNNLAB_DATA")),
    Case("env2", "train lenet5 --data mnist --precision fp32 --no-progress --epochs 1 --out runs/env2",
         2, ("mnist not found", "download")),
]


@parametrize(CASES)
def test_case(case, workspace, capsys):
    run_case(case, workspace, capsys)


def test_env1_cnnlab_data_is_read(workspace, capsys, monkeypatch):
    """env1: CNNLAB_DATA pointing at a broken set is read (and refused), not skipped."""
    _idx_copy("magic", _magic)(workspace)
    monkeypatch.setenv("CNNLAB_DATA", str(workspace / "data" / "magic"))
    run_case(Case("env1", "train lenet5 --precision fp32 --no-progress --epochs 1 --out runs/env1",
                  2, ("not an IDX file", "data/magic")), workspace, capsys)


class _KillWorker(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, item):
        os.kill(os.getpid(), signal.SIGKILL)


def test_killed_worker_is_one_line(workspace, monkeypatch):
    """A DataLoader worker killed mid-epoch (the OOM killer's SIGKILL) is one DataError line that
    says what happened and what to do, not PyTorch's RuntimeError."""
    write_image_folder(workspace / "imgs" / "k")
    files = [str(p) for p in sorted((workspace / "imgs/k/train").rglob("*.png"))]
    ds = FileImageDataset(files, torch.zeros(len(files), dtype=torch.long), ("a", "b"), "k",
                          (0.5,) * 3, (0.25,) * 3, 8, workers=1)
    monkeypatch.setattr("cnnlab.data.stream._Decode.__getitem__", _KillWorker.__getitem__)
    with pytest.raises(DataError) as err:
        list(ds.stream([torch.arange(2), torch.arange(2, 4)]))
    message = str(err.value)
    assert "\n" not in message and "killed" in message and "data.workers" in message
