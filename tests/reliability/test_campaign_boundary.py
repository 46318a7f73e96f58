"""The campaign's boundary rows: every failure from the user's files, arguments or machine is one
line naming the thing, the problem and the fix, exit status 2; every value is validated before any
data loads or any file is written; rows the campaign found ok stay ok.

Run files are broken the way the campaign broke them (truncated, zero-byte, random bytes, a pickle
renamed, a list for an object, keys missing, weights of another architecture); a read-only folder
and a full disk are simulated by making ``os.open``/``os.mkdir``/``open`` raise the errno under one
folder (no mount needed); CUDA is reported absent whatever the machine has.
"""

from __future__ import annotations

import builtins
import errno
import gzip
import io
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.cli import main
from cnnlab.data import write_idx

from ..conftest import make_images
from .campaign import Case, parametrize, run_case
from .conftest import write_image

MARKER = "PWNED"  # a malicious pickle would create this file in the workspace


class _Evil:
    """Unpickling this runs ``touch PWNED``: cnnlab must refuse it without running it."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


# ---- fixture builders (each takes the workspace root) ------------------------------------------

def copy_run(name: str, src: str = "runs/base"):
    def setup(root: Path) -> Path:
        shutil.copytree(root / src, root / name)
        return root / name
    return setup


def broken_run(name: str, file: str, content: bytes | str | None = None, truncate: bool = False):
    """A copy of runs/base whose ``file`` holds ``content`` (or is cut to half its size)."""
    def setup(root: Path) -> None:
        run = copy_run(name)(root)
        path = run / file
        if truncate:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
    return setup


def edit_config(name: str, **changes):
    """A copy of runs/base whose config.json has ``changes`` (``section__key=value``)."""
    def setup(root: Path) -> None:
        run = copy_run(name)(root)
        config = json.loads((run / "config.json").read_text())
        for key, value in changes.items():
            section, field = key.split("__")
            config[section][field] = value
        (run / "config.json").write_text(json.dumps(config))
    return setup


def config_only(name: str, **changes):
    """A run folder with only config.json (no weights yet), edited like :func:`edit_config`."""
    def setup(root: Path) -> None:
        edit_config(name, **changes)(root)
        for file in (root / name).iterdir():
            if file.name != "config.json":
                file.unlink() if file.is_file() else shutil.rmtree(file)
    return setup


def text_file(rel: str, text: str = "hello, I am not a model\n"):
    def setup(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return setup


def folder(rel: str):
    return lambda root: (root / rel).mkdir(parents=True, exist_ok=True)


def evil_pickles(root: Path) -> None:
    """evil/evil_zip.pth (torch's zip format), evil/evil_raw.pth (a bare pickle) and
    evil/evil.safetensors (the pickle renamed)."""
    (root / "evil").mkdir(exist_ok=True)
    torch.save({"conv1.weight": _Evil()}, root / "evil" / "evil_zip.pth")
    raw = pickle.dumps({"conv1.weight": _Evil()})
    (root / "evil" / "evil_raw.pth").write_bytes(raw)
    (root / "evil" / "evil.safetensors").write_bytes(raw)


def evil_state(root: Path) -> None:
    broken_run("rd/evil_resume", "state.pt", b"")(root)
    torch.save({"model": _Evil()}, root / "rd" / "evil_resume" / "state.pt")


def key_state(root: Path) -> None:
    broken_run("rd/keystate", "state.pt", b"")(root)
    torch.save({"epoch": 1, "history": []}, root / "rd" / "keystate" / "state.pt")


def yaml_file(rel: str, text: str):
    return text_file(rel, text)


def idx_set(name: str, n_train: int = 600, n_test: int = 100, train_size: int = 28,
            test_size: int = 28, dtype=None):
    """data/NAME: four gzipped IDX files (sizes and counts as given)."""
    def setup(root: Path) -> None:
        out = root / "data" / name
        out.mkdir(parents=True)
        for split, n, size, seed in (("train", n_train, train_size, 0), ("t10k", n_test, test_size, 1)):
            images, labels = make_images(max(n, 1), size=size, seed=seed)
            images, labels = images[:n], labels[:n]
            write_idx(out / f"{split}-images-idx3-ubyte.gz",
                      images if dtype is None else images.to(dtype))
            write_idx(out / f"{split}-labels-idx1-ubyte.gz", labels)
    return setup


def small_copy(name: str, edit=None):
    """data/NAME: a copy of data/small with ``edit(folder)`` applied."""
    def setup(root: Path) -> None:
        shutil.copytree(root / "data" / "small", root / "data" / name)
        if edit is not None:
            edit(root / "data" / name)
    return setup


def _raw_idx(folder: Path, stem: str, payload: bytes) -> None:
    (folder / f"{stem}.gz").unlink()
    (folder / stem).write_bytes(payload)


def _bad_deflate(folder: Path) -> None:
    """Corrupt the deflate stream of the train images (zlib.error: invalid block type)."""
    path = folder / "train-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[10:18] = bytes(8 * [0xFF])  # the first deflate block header, after gzip's 10 bytes
    path.write_bytes(bytes(data))


def _truncated_gzip(folder: Path) -> None:
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:2000])


def _truncated_raw(folder: Path) -> None:
    raw = gzip.decompress((folder / "train-images-idx3-ubyte.gz").read_bytes())
    _raw_idx(folder, "train-images-idx3-ubyte", raw[: len(raw) // 2])


def _bad_magic(folder: Path) -> None:
    raw = gzip.decompress((folder / "train-images-idx3-ubyte.gz").read_bytes())
    _raw_idx(folder, "train-images-idx3-ubyte", b"\x12\x34" + raw[2:])


def _empty(folder: Path) -> None:
    _raw_idx(folder, "train-images-idx3-ubyte", b"")


def _huge_header(folder: Path) -> None:
    _raw_idx(folder, "train-images-idx3-ubyte", bytes([0, 0, 8, 3]) + b"\xff" * 12 + b"\x00" * 100)


def _labels(values):
    def edit(folder: Path) -> None:
        (folder / "train-labels-idx1-ubyte.gz").unlink()
        write_idx(folder / "train-labels-idx1-ubyte.gz", values)
    return edit


def _flat_images(folder: Path) -> None:
    images, _ = make_images(600, seed=0)
    (folder / "train-images-idx3-ubyte.gz").unlink()
    write_idx(folder / "train-images-idx3-ubyte.gz", images.reshape(600, 784))


def pimg(root: Path) -> None:
    """pimg/: single images — grey, RGB, 1x1, large, a text file named .png, a truncated PNG, a
    BMP, a folder."""
    write_image(root / "pimg" / "gray.png", (90,))
    write_image(root / "pimg" / "rgb.png", (200, 30, 30))
    write_image(root / "pimg" / "one.png", (128,), size=(1, 1))
    write_image(root / "pimg" / "huge.png", (40, 40, 200), size=(900, 1400))
    (root / "pimg" / "text.png").write_text("this is not an image\n")
    good = (root / "pimg" / "gray.png").read_bytes()
    (root / "pimg" / "trunc.png").write_bytes(good[: len(good) // 2])
    # a 2x2 24-bit BMP: torchvision does not decode BMP
    pixels = b"\x00\x00\xff\x00\xff\x00\x00\x00" * 2
    header = b"BM" + (54 + len(pixels)).to_bytes(4, "little") + b"\0\0\0\0" + (54).to_bytes(4, "little")
    info = (40).to_bytes(4, "little") + (2).to_bytes(4, "little") + (2).to_bytes(4, "little") + \
        (1).to_bytes(2, "little") + (24).to_bytes(2, "little") + b"\0" * 24
    (root / "pimg" / "x.bmp").write_bytes(header + info + pixels)


def image_run(root: Path) -> None:
    """runs/g00: lenet5 trained on the image folder at 28 px."""
    assert main(["train", "lenet5", "--data", "imagefolder", "--data-dir", "imgs/good",
                 "--set", "data.image_size=28", "--set", "data.workers=0", "--epochs", "1",
                 "--precision", "fp32", "--no-progress", "--out", "runs/g00"]) == 0


def transfer_run(root: Path) -> None:
    """runs/t07: a transfer of runs/base to the 8x8 digits."""
    assert main(["transfer", "--from", "runs/base", "--data", "digits", "--epochs", "1",
                 "--set", "train.precision=fp32", "--no-progress", "--out", "runs/t07"]) == 0


def feature_cache(damage):
    """A transfer with --cache-features into cache/, then ``damage(npy_path)`` on each file."""
    def setup(root: Path) -> None:
        assert main(["transfer", "--from", "runs/base", "--data", "digits", "--freeze", "features",
                     "--cache-features", "--cache-dir", "cache", "--epochs", "1", "--set",
                     "train.precision=fp32", "--no-progress", "--out", "runs/cached"]) == 0
        files = sorted((root / "cache").glob("*.npy"))
        assert files
        for path in files:
            damage(path)
    return setup


def _truncate_npy(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _object_npy(path: Path) -> None:
    np.save(path, np.array([_Evil(), 1], dtype=object), allow_pickle=True)


def both(*setups):
    def setup(root: Path) -> None:
        for s in setups:
            s(root)
    return setup


# ---- file-system faults: a folder that refuses writes with an errno ---------------------------

_FAULTS: dict[Path, int] = {}  # folder -> errno raised for any write under it (reset per test)


def faulty(rel: str, code: int):
    """``rel`` exists; every write under it fails with ``code`` (EROFS, ENOSPC, ...)."""
    def setup(root: Path) -> None:
        (root / rel).mkdir(parents=True, exist_ok=True)
        _FAULTS[(root / rel).resolve()] = code
    return setup


def _fault_for(path) -> int | None:
    try:
        target = Path(os.fsdecode(path)).resolve()
    except (TypeError, ValueError):
        return None
    for base, code in _FAULTS.items():
        if target == base or base in target.parents:
            return code
    return None


@pytest.fixture(autouse=True)
def _machine(monkeypatch):
    """No CUDA GPU, whatever this machine has; writes under a :func:`faulty` folder fail."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    _FAULTS.clear()
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def check(path, writing: bool):
        code = _fault_for(path) if writing else None
        if code is not None:
            raise OSError(code, os.strerror(code), os.fsdecode(path))

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            check(file, any(c in mode for c in "wax+"))
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        check(path, bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        check(path, True)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    yield
    _FAULTS.clear()


# ---- checks beyond words ------------------------------------------------------------------------

def not_executed(root: Path, text: str) -> None:
    assert not (root / MARKER).exists(), "a pickle ran code"
    assert "weights_only=False" not in text and "weights_only` set to `False" not in text


def nothing_written(rel: str):
    def check(root: Path, text: str) -> None:
        assert not (root / rel).exists(), f"{rel} was written"
    return check


def no_cpp_path(root: Path, text: str) -> None:
    assert ".cpp" not in text and "/__w/" not in text, text


def onnx_alone(root: Path, text: str) -> None:
    """The exported model.onnx is one file, and runs alone from another folder."""
    run = root / "runs" / "base"
    assert (run / "model.onnx").is_file()
    assert not (run / "model.onnx.data").exists()
    pytest.importorskip("onnxruntime")
    from cnnlab.evaluate.export import run_exported
    from cnnlab.train import load_run_model

    alone = root / "elsewhere"
    alone.mkdir()
    shutil.move(str(run / "model.onnx"), alone / "model.onnx")
    _, model = load_run_model(run)
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    got = run_exported(alone / "model.onnx", "onnx", x)
    assert torch.allclose(got, expected, atol=1e-4)


TRAIN = "train lenet5 --data-dir data/small --precision fp32 --no-progress --epochs 1"
IDX = "train lenet5 --precision fp32 --no-progress --epochs 1 --set data.download=false --data-dir"
IMG = "train lenet5 --data imagefolder --data-dir imgs/good --precision fp32 --no-progress --epochs 1"
XFER = "transfer --from runs/base --epochs 1 --no-progress --set train.precision=fp32"
BASE = ("runs/base/model.safetensors", "runs/base/config.json")

CASES = [
    # ---- unreadable run files (point 3a) --------------------------------------------------------
    Case("e_trunc_st", "evaluate rd/trunc_st --data-dir data/small", 2,
         ("rd/trunc_st/model.safetensors", "not a valid safetensors file", "train the run again"),
         setup=broken_run("rd/trunc_st", "model.safetensors", truncate=True)),
    Case("e_zero_st", "evaluate rd/zero_st --data-dir data/small", 2,
         ("rd/zero_st/model.safetensors", "empty"),
         setup=broken_run("rd/zero_st", "model.safetensors", b"")),
    Case("e_garbage_st", "evaluate rd/garbage_st --data-dir data/small", 2,
         ("rd/garbage_st/model.safetensors", "not a valid safetensors file"),
         setup=broken_run("rd/garbage_st", "model.safetensors", bytes(range(256)) * 40)),
    Case("u17", "summary rd/trunc_st", 2, ("model.safetensors", "not a valid safetensors file"),
         setup=broken_run("rd/trunc_st", "model.safetensors", truncate=True)),
    Case("p01", "predict rd/trunc_st pimg/gray.png --data-dir data/small", 2,
         ("model.safetensors", "not a valid safetensors file"),
         setup=both(broken_run("rd/trunc_st", "model.safetensors", truncate=True), pimg)),
    Case("p02", "export rd/zero_st --format torchscript", 2, ("model.safetensors", "empty"),
         setup=broken_run("rd/zero_st", "model.safetensors", b""),
         check=nothing_written("rd/zero_st/model.pt")),
    Case("p03", f"{XFER} --from rd/trunc_st --out runs/p03", 2,
         ("model.safetensors", "not a valid safetensors file"),
         setup=broken_run("rd/trunc_st", "model.safetensors", truncate=True),
         check=nothing_written("runs/p03")),
    Case("p04", "ensemble runs/base rd/garbage_st --data-dir data/small", 2,
         ("rd/garbage_st/model.safetensors", "not a valid safetensors file"),
         setup=broken_run("rd/garbage_st", "model.safetensors", bytes(range(256)) * 40)),
    Case("m04", f"{XFER} --from evil/evil.safetensors --model lenet5 --out runs/m04", 2,
         ("evil/evil.safetensors", "not a valid safetensors file"), setup=evil_pickles,
         check=not_executed),
    Case("e_listjson", "evaluate rd/listjson --data-dir data/small", 2,
         ("rd/listjson/config.json", "mapping", "list"),
         setup=broken_run("rd/listjson", "config.json", "[1, 2, 3]")),
    Case("p05", "report rd/listjson --data-dir data/small", 2, ("rd/listjson/config.json", "list"),
         setup=broken_run("rd/listjson", "config.json", "[1, 2, 3]")),
    Case("e_nomodel", "evaluate rd/nomodel --data-dir data/small", 2,
         ("rd/nomodel/config.json", "model"),
         setup=broken_run("rd/nomodel", "config.json", '{"train": {"epochs": 1}}')),
    Case("e_badjson", "evaluate rd/badjson --data-dir data/small", 2,
         ("rd/badjson/config.json", "not valid json"),
         setup=broken_run("rd/badjson", "config.json", '{"model": {"name": "lenet5"}\n"x"}')),
    Case("p06", "summary rd/badjson", 2, ("rd/badjson/config.json", "not valid json"),
         setup=broken_run("rd/badjson", "config.json", '{"model": {"name": "lenet5"}\n"x"}')),
    Case("e_empty", "evaluate rd/empty --data-dir data/small", 2, ("not a cnnlab run directory",),
         setup=folder("rd/empty")),
    Case("e_missing", "evaluate rd/missing --data-dir data/small", 2,
         ("not a cnnlab run directory",)),
    Case("e_unkmodel", "evaluate rd/unkmodel --data-dir data/small", 2,
         ("unknown model 'lenet99'", "lenet5"), setup=edit_config("rd/unkmodel", model__name="lenet99")),
    Case("v04", "evaluate rd/badtransfer", 2, ("rd/badtransfer/transfer.json", "not valid json"),
         setup=broken_run("rd/badtransfer", "transfer.json", "{bad json")),
    Case("v04b", "evaluate rd/listtransfer", 2, ("rd/listtransfer/transfer.json", "target"),
         setup=broken_run("rd/listtransfer", "transfer.json", "[1]")),
    Case("r01", "train --resume rd/corrupt_state --no-progress", 2,
         ("rd/corrupt_state/state.pt", "truncated, corrupt", "--overwrite"),
         setup=broken_run("rd/corrupt_state", "state.pt", truncate=True),
         survive=("rd/corrupt_state/model.safetensors",)),
    Case("r01b", "train --resume rd/garbage_state --no-progress", 2,
         ("rd/garbage_state/state.pt", "truncated, corrupt"),
         setup=broken_run("rd/garbage_state", "state.pt", b"not a zip file at all" * 10)),
    Case("m01", "train --resume rd/evil_resume --no-progress", 2,
         ("rd/evil_resume/state.pt", "never unpickles"), setup=evil_state, check=not_executed),
    Case("r06", "train --resume rd/keystate --no-progress", 2,
         ("rd/keystate/state.pt", "lacks", "model"), setup=key_state),
    Case("m02", f"{XFER} --from evil/evil_zip.pth --model lenet5 --out runs/m02", 2,
         ("evil/evil_zip.pth", "never unpickles"), setup=evil_pickles, check=not_executed),
    Case("m03", f"{XFER} --from evil/evil_raw.pth --model lenet5 --out runs/m03", 2,
         ("evil/evil_raw.pth", "not a"), setup=evil_pickles, check=not_executed),
    Case("m05", f"{TRAIN} --config cfg/evil.yaml --out runs/m05", 2,
         ("cfg/evil.yaml", "not valid yaml"),
         setup=yaml_file("cfg/evil.yaml", f"train: !!python/object/apply:os.system ['touch {MARKER}']\n"),
         check=not_executed),
    Case("t12", f"{XFER} --from existing_file.txt --model lenet5 --out runs/t12", 2,
         ("existing_file.txt", "not a weights file"), setup=text_file("existing_file.txt")),
    Case("t08", "transfer --from runs/base --data digits --freeze features --cache-features "
         "--cache-dir cache --epochs 1 --set train.precision=fp32 --no-progress --out runs/t08", 2,
         (".npy", "delete"), setup=feature_cache(_truncate_npy)),
    Case("t09", "transfer --from runs/base --data digits --freeze features --cache-features "
         "--cache-dir cache --epochs 1 --set train.precision=fp32 --no-progress --out runs/t09", 2,
         (".npy", "delete"), setup=feature_cache(_object_npy), check=not_executed),
    # ---- weights that do not fit the config (point 3b) ------------------------------------------
    Case("e_shape", "evaluate rd/shape --data-dir data/small", 2,
         ("rd/shape/model.safetensors", "do not fit", "(10, 84)", "(5, 84)"),
         setup=edit_config("rd/shape", model__num_classes=5)),
    Case("r07", "train --resume rd/archswap --epochs 2 --no-progress", 2, ("state.pt", "do not fit"),
         setup=edit_config("rd/archswap", model__name="resnet20")),
    Case("e_arch", "evaluate rd/arch --data-dir data/small", 2,
         ("model.safetensors", "do not fit", "missing"),
         setup=edit_config("rd/arch", model__name="resnet20")),
    Case("t10", f"{XFER} --from exp/lenet.safetensors --model resnet18 --out runs/t10", 2,
         ("do not fit",), setup=lambda root: (root / "exp").mkdir() or shutil.copy(
             root / "runs/base/model.safetensors", root / "exp/lenet.safetensors")),
    Case("t11", f"{XFER} --from exp/lenet.safetensors --out runs/t11", 2, ("--model NAME",),
         setup=lambda root: (root / "exp").mkdir() or shutil.copy(
             root / "runs/base/model.safetensors", root / "exp/lenet.safetensors")),
    # ---- IDX files (point 3c, and the rows that were ok) -----------------------------------------
    Case("i_badgz", f"{IDX} data/badgz --out runs/i_badgz", 2,
         ("data/badgz/train-images-idx3-ubyte.gz", "corrupt", "fetch it again"),
         setup=small_copy("badgz", _bad_deflate), check=nothing_written("runs/i_badgz")),
    Case("i_zeroimgs", f"{IDX} data/zeroimgs --out runs/i_zeroimgs", 2,
         ("no images", "train"), setup=idx_set("zeroimgs", n_train=0),
         check=nothing_written("runs/i_zeroimgs")),
    Case("i_diffsize", f"{IDX} data/diffsize --out runs/i_diffsize", 2,
         ("28x28", "20x20", "differ"), setup=idx_set("diffsize", test_size=20),
         check=nothing_written("runs/i_diffsize")),
    Case("e20", "evaluate runs/base --data-dir data/diffsize", 2, ("too small",),
         setup=idx_set("diffsize", test_size=20)),
    # ---- the file system (point 3d) --------------------------------------------------------------
    Case("o02", f"{TRAIN} --out existing_file.txt", 2, ("existing_file.txt", "not a folder"),
         setup=text_file("existing_file.txt"), survive=("existing_file.txt",)),
    Case("o02b", f"{TRAIN} --out existing_file.txt/run", 2, ("existing_file.txt", "not a folder"),
         setup=text_file("existing_file.txt"), survive=("existing_file.txt",)),
    Case("o04", f"{TRAIN} --out rom/run", 2, ("rom/run", "read-only", "writable"),
         setup=faulty("rom", errno.EROFS)),
    Case("o04b", f"{TRAIN} --out noperm/run", 2, ("noperm/run", "permission denied"),
         setup=faulty("noperm", errno.EACCES)),
    Case("o_full", f"{TRAIN} --out full/run", 2, ("no space left", "free"),
         setup=faulty("full", errno.ENOSPC)),
    Case("o08", f"{XFER} --out existing_file.txt", 2, ("existing_file.txt", "not a folder"),
         setup=text_file("existing_file.txt"), survive=("existing_file.txt",)),
    Case("o10", "lab equivariance --quick --out existing_file.txt", 2,
         ("existing_file.txt", "not a folder"), setup=text_file("existing_file.txt"),
         survive=("existing_file.txt",)),
    Case("w05", "report runs/base --data-dir data/small --out rom/r.html", 2,
         ("rom/r.html", "read-only"), setup=faulty("rom", errno.EROFS)),
    Case("x11", "export runs/base --format torchscript --out rom/model.pt", 2,
         ("rom/model.pt", "read-only"), setup=faulty("rom", errno.EROFS)),
    Case("x12", "export runs/base --format torchscript --out exdir", 2,
         ("exdir", "is a folder", "exdir/model.pt"), setup=folder("exdir"), survive=("exdir",)),
    Case("u15", "summary lenet5 --plot newdir/sub/x.png", 0, ("layer plot",),
         check=lambda root, text: (root / "newdir/sub/x.png").is_file() or pytest.fail("no plot")),
    Case("d03", "evaluate runs/base --data-dir data/small --plot newdir/c.png", 0,
         ("newdir/c.png",),
         check=lambda root, text: (root / "newdir/c.png").is_file() or pytest.fail("no plot")),
    Case("o09", "evaluate runs/base --data-dir data/small --plot exdir", 0, ("exdir.png",),
         check=lambda root, text: (root / "exdir.png").is_file() or pytest.fail("no exdir.png")),
    Case("o06", "evaluate 'runs/dir with spaces/ünïcødé ✓' --data-dir data/small", 0,
         ("test accuracy",), setup=copy_run("runs/dir with spaces/ünïcødé ✓")),
    # ---- the device (point 3d) -------------------------------------------------------------------
    Case("d01", f"{TRAIN} --device cuda --out runs/d01", 2, ("no CUDA GPU here", "--device cpu"),
         check=nothing_written("runs/d01")),
    Case("d01s", f"{TRAIN} --set train.device=cuda --out runs/d01s", 2, ("no CUDA GPU here",),
         check=nothing_written("runs/d01s")),
    Case("d02", "evaluate runs/base --data-dir data/small --device cuda", 2,
         ("no CUDA GPU here", "--device cpu")),
    Case("u14", "summary lenet5 --input 1x28x28 --device cuda", 2, ("no CUDA GPU here",)),
    Case("d05", "ensemble runs/base runs/base --data-dir data/small --device cuda", 2,
         ("no CUDA GPU here",)),
    Case("d06", f"{XFER} --device cuda --out runs/d06", 2, ("no CUDA GPU here",),
         check=nothing_written("runs/d06")),
    Case("d07", "lab equivariance --quick --device cuda --out runs/d07", 2, ("no CUDA GPU here",),
         check=nothing_written("runs/d07")),
    Case("d08", "evaluate rd/gpurun --data-dir data/small", 2, ("no CUDA GPU here", "--device cpu"),
         setup=edit_config("rd/gpurun", train__device="cuda")),
    Case("d09", "report rd/gpurun --data-dir data/small", 2, ("no CUDA GPU here", "--device cpu"),
         setup=edit_config("rd/gpurun", train__device="cuda")),
    Case("d10", "report rd/gpurun --data-dir data/small --device cpu --out exp/r.html", 0,
         ("report written",), setup=edit_config("rd/gpurun", train__device="cuda")),
    Case("s16", f"{TRAIN} --set train.device=tpu --out runs/s16", 2, ("unknown device 'tpu'",)),
    # ---- torchrun (point 3e) ---------------------------------------------------------------------
    Case("x05", f"{TRAIN} --nproc 2 --batch-size 3 --out runs/x05", 2, ("divisible", "2 processes"),
         check=nothing_written("runs/x05")),
    Case("x05b", f"{TRAIN} --nproc 0 --out runs/x05b", 2, ("--nproc",)),
    Case("x05c", f"{TRAIN} --nproc 2 --device cuda --out runs/x05c", 2, ("no CUDA GPU here",)),
    # ---- config values (point 4) -----------------------------------------------------------------
    Case("s01", f"{TRAIN} --set train.lrr=0.1 --out runs/s01", 2, ("train.lrr", "train.lr")),
    Case("s02", f"{TRAIN} --set train.nesterov=ture --out runs/s02", 2, ("not a valid bool",)),
    Case("s03", f"{TRAIN} --set train.lr=ture --out runs/s03", 2, ("not a valid float",)),
    Case("s04", f"{TRAIN} --set trian.lr=0.1 --out runs/s04", 2,
         ("trian.lr", "model, data, train, augment")),
    Case("s05", f"{TRAIN} --set train.lr --out runs/s05", 2, ("section.key=value",)),
    Case("s06", f"{TRAIN} --set train=1 --out runs/s06", 2, ("train is a config section",)),
    Case("s07", f"{TRAIN} --set train.epochs.x=1 --out runs/s07", 2,
         ("train.epochs.x", "train keys", "epochs, batch_size")),
    Case("s08b", f"{TRAIN} --set train.lr=0 --out runs/s08b", 2, ("train.lr", "greater than 0")),
    Case("s09", f"{TRAIN} --set train.eval_batch_size=0 --out runs/s09", 2,
         ("train.eval_batch_size", "at least 1"), check=nothing_written("runs/s09")),
    Case("s10", f"{TRAIN} --set train.momentum=-1 --out runs/s10", 2, ("train.momentum", "[0, 1)")),
    Case("s11", f"{TRAIN} --set train.threads=0 --out runs/s11", 2, ("train.threads", "at least 1")),
    Case("s12", f"{TRAIN} --set train.label_smoothing=2 --out runs/s12", 2,
         ("train.label_smoothing", "[0, 1)"), check=nothing_written("runs/s12")),
    Case("s13", f"{TRAIN} --set 'model.options={{\"bogus\": 1}}' --out runs/s13", 2,
         ("bogus", "lenet5", "modern"), check=nothing_written("runs/s13")),
    Case("s14", f"{TRAIN} --set model.num_classes=0 --out runs/s14", 2,
         ("model.num_classes", "at least 1"), check=nothing_written("runs/s14")),
    Case("s14b", f"{TRAIN} --set model.num_classes=-3 --out runs/s14b", 2, ("model.num_classes",)),
    Case("s15", f"{TRAIN} --set model.in_chans=3 --out runs/s15", 2,
         ("model.in_chans=3", "1 channel"), check=nothing_written("runs/s15")),
    Case("s17", f"{TRAIN} --set train.weight_decay=-1 --out runs/s17", 2,
         ("train.weight_decay", "at least 0")),
    Case("s18", f"{TRAIN} --set augment.crop_pad=-2 --out runs/s18", 2,
         ("augment.crop_pad", "at least 0")),
    Case("s19", f"{TRAIN} --set data.prefetch=-1 --out runs/s19", 2, ("data.prefetch", "at least 0")),
    Case("s20", f"{TRAIN} --set model.options=[1] --out runs/s20", 2, ("model.options",)),
    Case("s21", f"{TRAIN} --set train.schedule=step --set 'train.step_epochs=[\"a\"]' "
         "--out runs/s21", 2, ("train.step_epochs",)),
    Case("s22", f"{TRAIN} --set augment.erase_area=0.5 --set augment.erase=1 --out runs/s22", 2,
         ("augment.erase_area", "[min, max]")),
    Case("s23", f"{TRAIN} --set augment.flip=1.5 --out runs/s23", 2, ("augment.flip", "[0, 1]")),
    # every other range, and the option and type rules, each refused before data loads
    Case("v_bs", f"{TRAIN} --set train.batch_size=0 --out runs/v_bs", 2,
         ("train.batch_size", "at least 1"), check=nothing_written("runs/v_bs")),
    Case("v_rotate", f"{TRAIN} --set augment.rotate=200 --out runs/v_rotate", 2,
         ("augment.rotate", "[0, 180]")),
    Case("v_lpc", f"{TRAIN} --set data.labels_per_class=-1 --out runs/v_lpc", 2,
         ("data.labels_per_class", "at least 0")),
    Case("v_warmup", f"{TRAIN} --set train.warmup_epochs=-1 --out runs/v_warmup", 2,
         ("train.warmup_epochs", "at least 0")),
    Case("v_ema", f"{TRAIN} --set train.ema_decay=1 --out runs/v_ema", 2,
         ("train.ema_decay", "[0, 1)")),
    Case("v_clip", f"{TRAIN} --set train.grad_clip=-1 --out runs/v_clip", 2,
         ("train.grad_clip", "at least 0")),
    Case("v_gamma", f"{TRAIN} --set train.step_gamma=0 --out runs/v_gamma", 2,
         ("train.step_gamma", "greater than 0")),
    Case("v_steps", f"{TRAIN} --set train.schedule=step --set train.step_epochs=-1 "
         "--out runs/v_steps", 2, ("train.step_epochs", "at least 0")),
    Case("v_ckpt", f"{TRAIN} --set train.checkpoint_every=-1 --out runs/v_ckpt", 2,
         ("train.checkpoint_every", "at least 0")),
    Case("v_patience", f"{TRAIN} --set train.early_stop_patience=-1 --out runs/v_patience", 2,
         ("train.early_stop_patience", "at least 0")),
    Case("v_inf", f"{TRAIN} --set train.lr=inf --out runs/v_inf", 2, ("train.lr", "finite")),
    Case("v_chans0", f"{TRAIN} --set model.in_chans=0 --out runs/v_chans0", 2,
         ("model.in_chans", "at least 1")),
    Case("v_optim", f"{TRAIN} --set train.optimizer=lbfgs --out runs/v_optim", 2,
         ("train.optimizer", "sgd, adamw")),
    Case("v_fixed", f"{TRAIN.replace('lenet5', 'lenet5_modern')} "
         "--set 'model.options={\"modern\": false}' --out runs/v_fixed", 2,
         ("lenet5_modern", "modern")),
    Case("v_optstr", f"{TRAIN} --config cfg/opt.yaml --out runs/v_optstr", 2, ("model.options",),
         setup=yaml_file("cfg/opt.yaml", "model:\n  options: fast\n")),
    Case("v_eraselist", f"{TRAIN} --config cfg/erase.yaml --out runs/v_eraselist", 2,
         ("augment.erase_area", "[min, max]"),
         setup=yaml_file("cfg/erase.yaml", "augment:\n  erase_area: [0.3, 0.1]\n")),
    Case("v_section", f"{TRAIN} --set train.=1 --out runs/v_section", 2,
         ("train is a config section",)),
    Case("g16", f"{IMG} --set data.image_size=28 --set data.workers=-1 --out runs/g16", 2,
         ("data.workers", "at least 0"), check=nothing_written("runs/g16")),
    Case("g17", f"{IMG} --set data.image_size=0 --out runs/g17", 2,
         ("data.image_size", "at least 1")),
    Case("g20", f"{IMG} --out runs/g20", 2, ("32x32", "--set data.image_size=32"),
         check=nothing_written("runs/g20")),
    Case("g21", f"{IMG.replace('lenet5', 'lenet5_modern')} --out runs/g21", 2,
         ("32x32", "--set data.image_size=32")),
    Case("f01", f"{TRAIN} --config cfg/null.yaml --out runs/f01", 2, ("train.epochs", "int"),
         setup=yaml_file("cfg/null.yaml", "train:\n  epochs: null\n")),
    Case("f02", f"{TRAIN} --config cfg/list.yaml --out runs/f02", 2, ("train.epochs", "int"),
         setup=yaml_file("cfg/list.yaml", "train:\n  epochs: [1, 2]\n")),
    Case("f03", f"{TRAIN} --config cfg/bad.json --out runs/f03", 2, ("cfg/bad.json", "not valid JSON"),
         setup=text_file("cfg/bad.json", '{"train": {"epochs": 1,}}')),
    Case("f04", f"{TRAIN} --config cfg/badlr.yaml --out runs/f04", 2, ("not a valid float",),
         setup=yaml_file("cfg/badlr.yaml", "train:\n  lr: 0.1x\n")),
    Case("f05", f"{TRAIN} --config cfg/listtop.yaml --out runs/f05", 2, ("mapping of sections",),
         setup=yaml_file("cfg/listtop.yaml", "- 1\n- 2\n")),
    Case("f06", f"{TRAIN} --config cfg/badsec.yaml --out runs/f06", 2,
         ("unknown config section 'modle'", "model, data, train, augment"),
         setup=yaml_file("cfg/badsec.yaml", "modle:\n  name: lenet5\n")),
    Case("f07", f"{TRAIN} --config cfg/missing.yaml --out runs/f07", 2,
         ("cannot read config file", "No such file")),
    Case("f08", f"{TRAIN} --config cfg/scalar.yaml --out runs/f08", 2, ("train", "must map keys"),
         setup=yaml_file("cfg/scalar.yaml", "train: 1\n")),
    Case("f09", f"{TRAIN} --config runs/base/model.safetensors --out runs/f09", 2,
         ("model.safetensors", "not a text file"), check=nothing_written("runs/f09")),
    Case("f10", f"{TRAIN} --config cfg/binary.yaml --out runs/f10", 2,
         ("cfg/binary.yaml", "not a text file"),
         setup=lambda root: (root / "cfg").mkdir() or (root / "cfg/binary.yaml").write_bytes(
             bytes(range(128, 256)))),
    Case("c01", "train lenet55 --data-dir data/small --out runs/c01", 2,
         ("unknown model 'lenet55'", "lenet5")),
    Case("c02", "train lenet5 --data fashion-mnst --out runs/c02", 2, ("fashion-mnst",)),
    Case("c03", "train --recipe fmnist-fastest --out runs/c03", 2, ("fmnist-fastest",)),
    Case("c04", f"{TRAIN} --epochs 0 --out runs/c04", 2, ("--epochs", "at least 1")),
    Case("c05", f"{TRAIN} --epochs -3 --out runs/c05", 2, ("--epochs",)),
    Case("c06", f"{TRAIN} --epochs abc --out runs/c06", 2, ("--epochs", "'abc'")),
    Case("c07", f"{TRAIN} --epochs 1.5 --out runs/c07", 2, ("--epochs", "'1.5'")),
    Case("c08", "train lenet5 --epochs 99999999999999999999999 --show", 0,
         ("99999999999999999999999",)),
    Case("c09", f"{TRAIN} --batch-size 0 --out runs/c09", 2, ("--batch-size", "at least 1")),
    Case("c10", f"{TRAIN} --batch-size 100000 --out runs/c10", 0, ("test accuracy",)),
    Case("c11", f"{TRAIN} --lr -0.1 --out runs/c11", 2, ("--lr",)),
    Case("c12", f"{TRAIN} --lr nan --out runs/c12", 2, ("--lr",)),
    Case("c13", f"{TRAIN} --lr fast --out runs/c13", 2, ("--lr", "'fast'")),
    Case("x06", "train --show", 2, ("name a MODEL",)),
    Case("x07", "train lenet5 --recipe fmnist-fast --show --set train.epochs=0", 2,
         ("train.epochs must be at least 1",)),
    Case("d04", "evaluate runs/base --data-dir data/small --batch-size 0", 2,
         ("--batch-size", "at least 1")),
    Case("d04b", "ensemble runs/base runs/base --data-dir data/small --batch-size 0", 2,
         ("--batch-size",)),
    Case("x13", "export runs/base --format torchscript --out exp/lenet.pt --tolerance -1", 2,
         ("--tolerance", "at least 0"), check=nothing_written("exp/lenet.pt")),
    Case("x10", "export runs/base --format tflite", 2, ("invalid choice: 'tflite'",)),
    Case("x14", "export rd/missing --format torchscript", 2, ("not a cnnlab run directory",)),
    Case("x16", "export runs/base --format torchscript --out exp/lenet.pt", 0,
         ("max abs difference",),
         check=lambda root, text: (root / "exp/lenet.pt").is_file() or pytest.fail("no file")),
    Case("x15", "export runs/base --format onnx", 0, ("max abs difference",), check=onnx_alone),
    # ---- transfer arguments ----------------------------------------------------------------------
    Case("t01", f"{XFER} --from rd/missing --out runs/t01", 2, ("does not exist", "--model NAME")),
    Case("t02", f"{XFER} --freeze stage9 --out runs/t02", 2, ("stage9", "stage1")),
    Case("t03", f"{XFER} --classes 9-5 --data fashion-mnist --data-dir data/small --out runs/t03", 2,
         ("9-5", "reversed", "5-9")),
    Case("t04", f"{XFER} --classes 11,12 --data fashion-mnist --data-dir data/small --out runs/t04",
         2, ("class 11", "0-9")),
    Case("t05", f"{XFER} --classes a-b --out runs/t05", 2, ("a-b", "5-9")),
    Case("t06", f"{XFER} --classes 3 --data fashion-mnist --data-dir data/small --out runs/t06", 2,
         ("--classes", "at least 2 classes"), check=nothing_written("runs/t06")),
    Case("t06b", f"{XFER} --classes 3,3 --data fashion-mnist --data-dir data/small --out runs/t06b",
         2, ("each class once",)),
    Case("t13", f"{XFER} --cache-features --freeze stage1 --out runs/t13", 2,
         ("--freeze features",)),
    Case("t14", f"{XFER} --out runs/base", 2, ("already holds a run",), survive=BASE),
    Case("v05", f"{XFER} --data cifar10 --out runs/v05", 2, ("cifar10",)),
    Case("v06", f"{XFER} --data imagefolder --data-dir imgs/good --set data.workers=0 "
         "--out runs/v06", 0, ("test accuracy",)),
    # ---- predict ---------------------------------------------------------------------------------
    Case("q01", "predict runs/base pimg --data-dir data/small", 2, ("pimg", "is a folder"),
         setup=pimg),
    Case("q14", "predict runs/t07 pimg/gray.png --top-k 2", 0, ("%",),
         setup=both(pimg, transfer_run)),
    # ---- ensemble, report, lab, summary arguments ------------------------------------------------
    Case("n01", "ensemble runs/base runs/g00 --data-dir data/small", 2, ("no train/ folder",),
         setup=image_run),
    Case("n01b", "ensemble runs/base runs/g00", 2, ("different examples",), setup=image_run),
    Case("n02", "ensemble runs/base runs/base2 --data-dir data/small", 0, ("test accuracy",),
         setup=copy_run("runs/base2")),
    Case("n03", "ensemble runs/base --data-dir data/small", 2, ("at least two",)),
    Case("n04", "ensemble runs/base rd/missing --data-dir data/small", 2,
         ("not a cnnlab run directory",)),
    Case("n05", "ensemble runs/base runs/base", 0, ("test accuracy",)),
    Case("w01", "report imgs/good", 2, ("neither a training run",)),
    Case("w03", "report existing_file.txt", 2, ("neither a training run",),
         setup=text_file("existing_file.txt")),
    Case("w07", "report lab/broken", 2, ("lab/broken/results.json", "not valid json"),
         setup=text_file("lab/broken/results.json", "{bad")),
    Case("w04", "report runs/base --data-dir data/small --mistakes -1 --out exp/r.html", 2,
         ("--mistakes",)),
    Case("l01", "lab depht --quick --out runs/l01", 2, ("invalid choice: 'depht'",)),
    Case("l02", "lab depth --quick --set depthz=20 --out runs/l02", 2, ("depthz", "depths")),
    Case("l03", "lab depth --quick", 2, ("--out DIR",)),
    Case("l04", "lab data-scaling --quick --set sizes=abc --out runs/l04", 2, ("sizes",)),
    Case("u01", "summary lenet5 --input 0x32x32", 2, ("positive sizes",)),
    Case("u02", "summary lenet5 --input 1x-32x32", 2, ("positive sizes",)),
    Case("u03", "summary lenet5 --input 1x4x4", 0, ("conv / fc share",)),
    Case("u04", "summary lenet5 --input 1x1x32x32", 2, ("--input",)),
    Case("u05", "summary lenet5 --input abc", 2, ("3x224x224",)),
    Case("u06", "summary resnet50 --input 3x8x8", 0, ("conv / fc share",)),
    Case("u07", "summary lenet5 --input 3x32x32", 0, ("conv / fc share",)),
    Case("u08", "summary nosuchmodel", 2, ("unknown model 'nosuchmodel'",)),
    Case("u09", "summary lenet5 --depth -1", 2, ("--depth",)),
    Case("u10", "summary lenet5 --batch-size 0", 2, ("--batch-size",)),
    Case("u11", "summary alexnet --input 3x10x10", 2, ("too small",)),
    Case("u13", "summary tdnn --input 16x2", 2, ("too small",)),
    Case("u16", "summary lenet5 --optimizer bogus", 2, ("bogus",)),
    Case("v01", "models 'zzz*'", 2, ("no model matches 'zzz*'",)),
    Case("v03", "frobnicate", 2, ("invalid choice: 'frobnicate'",)),
]


@parametrize(CASES)
def test_case(case, workspace, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_case(case, workspace, capsys)
    if case.exit == 2:  # a warning Python shows would be a second line under the error
        shown = [w for w in caught
                 if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
        assert not shown, f"{case.id}: warnings on stderr: {[str(w.message) for w in shown]}"
