"""The campaign's engine rows: --overwrite, NaN and exploding losses, kills at every moment (the
K-rows), SIGINT/SIGTERM, full disks, resume (finished runs, flags it would ignore, advice, data
paths), precision and file modes.

A kill is injected in ``setup`` as an exception nothing catches (SIGKILL's effect: the code after
it never runs), at a training step or half-way through a file write; the oracle of every resume is
an uninterrupted run of the same seeded, deterministic command.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.cli import main
from cnnlab.train import Trainer, read_metrics
from cnnlab.train import checkpoint as ckpt

from .campaign import Case, parametrize, run_case

BASE_FILES = ("runs/base/config.json", "runs/base/model.safetensors", "runs/base/state.pt",
              "runs/base/metrics.csv")
KILL_ARGS = ("lenet5 --data-dir data/small --epochs 2 --batch-size 64 --deterministic "
             "--checkpoint-every 3 --precision fp32 --no-progress --set train.tensorboard=false")


class Killed(BaseException):
    """SIGKILL's effect in-process: nothing after it runs, no handler catches it."""


def _quiet(argv: list[str]) -> int:
    """``main(argv)`` with its output swallowed (setup output must not satisfy a case's words)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(argv)


def _copy_base(name: str):
    def setup(root: Path) -> None:
        shutil.copytree(root / "runs" / "base", root / name)
    return setup


def _with_notes(name: str):
    def setup(root: Path) -> None:
        _copy_base(name)(root)
        (root / name / "notes.txt").write_text("my notes\n")
    return setup


def _truncated_data(root: Path) -> None:
    shutil.copytree(root / "data" / "small", root / "data" / "trunc")
    path = root / "data" / "trunc" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _copy_base("runs/ow1")(root)


def _stale_overwrite(root: Path) -> None:
    _copy_base("runs/ow3")(root)
    (root / "runs" / "ow3" / ".state.pt.x1y2.tmp").write_bytes(b"half")
    (root / "runs" / "ow3" / "tensorboard").mkdir()


def _check_ow3(root: Path, text: str) -> None:
    names = sorted(p.name for p in (root / "runs" / "ow3").iterdir())
    assert names == ["config.json", "curves.png", "metrics.csv", "model.safetensors", "state.pt"]
    assert json.loads((root / "runs/ow3/config.json").read_text())["train"]["epochs"] == 2


def _no_checkpoint_claimed(out: str):
    def check(root: Path, text: str) -> None:
        state = root / out / "state.pt"
        if "last good checkpoint" in text:
            assert state.is_file()
            for value in torch.load(state, weights_only=True)["model"].values():
                assert torch.isfinite(value).all()
        else:
            assert not state.exists()
    return check


def _modern_base(root: Path) -> None:
    assert _quiet(["train", "lenet5_modern", "--data-dir", "data/small", "--epochs", "1",
                   "--precision", "fp32", "--no-progress", "--set", "train.schedule=constant",
                   "--set", "train.tensorboard=false", "--out", "runs/nan3r"]) == 0


def _check_nan3r(root: Path, text: str) -> None:
    state = torch.load(root / "runs/nan3r/state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 0)  # the epoch-1 checkpoint: before lr=1e6
    assert _quiet(["train", "--resume", "runs/nan3r", "--epochs", "2", "--lr", "0.01",
                   "--no-progress"]) == 0  # resumed with a smaller learning rate: it trains
    rows = read_metrics(root / "runs/nan3r/metrics.csv")
    assert len(rows) == 2 and all(r["train_loss"] < 10 for r in rows)


def _config_only(name: str, tmp: bool = False):
    def setup(root: Path) -> None:
        (root / name).mkdir(parents=True)
        shutil.copy(root / "runs" / "base" / "config.json", root / name / "config.json")
        if tmp:
            (root / name / ".model.safetensors.a1b2.tmp").write_bytes(b"")
    return setup


def _advice_works(name: str):
    """The advice of a run with no checkpoint is a command that works (r04 was circular)."""
    def check(root: Path, text: str) -> None:
        command = text.split("`")[1].split()
        assert command[:2] == ["cnnlab", "train"] and "--overwrite" in command
        assert _quiet([*command[1:], "--no-progress"]) == 0
        assert (root / name / "state.pt").is_file()
        assert not [p for p in (root / name).iterdir() if p.name.endswith(".tmp")]
    return check


# ---- kills (K-rows) ----------------------------------------------------------------------

_REFERENCE: dict[str, Path] = {}


def _reference_dir() -> Path:
    """The uninterrupted run of KILL_ARGS (computed once, in the first workspace that needs it)."""
    if "run" not in _REFERENCE:
        out = Path.cwd() / "kill" / "reference"
        assert _quiet(["train", *KILL_ARGS.split(), "--out", str(out)]) == 0
        keep = Path(_REFERENCE["tmp"]) / "reference"
        shutil.copytree(out, keep)
        _REFERENCE["run"] = keep
    return _REFERENCE["run"]


def _kill_at_step(step: int):
    real, calls = Trainer.loss, [0]

    def loss(self, outputs, targets):
        calls[0] += 1
        if calls[0] == step:
            raise Killed
        return real(self, outputs, targets)
    Trainer.loss = loss  # restored by the _restore fixture


def _kill_in_write(name: str, k: int):
    """The k-th write of ``name`` dies half-way, leaving its temp file with half the bytes."""
    real, count = ckpt.atomic_write_bytes, [0]

    def dying(path, data):
        path = Path(path)
        if path.name == name:
            count[0] += 1
            if count[0] == k:
                (path.parent / f".{path.name}.k1ll.tmp").write_bytes(data[: len(data) // 2])
                raise Killed
        return real(path, data)
    ckpt.atomic_write_bytes = dying


def _killed(out: str, *kills, resume_between: bool = False):
    """Run KILL_ARGS into ``out``, killed by each of ``kills`` in turn (resuming in between)."""
    def setup(root: Path) -> None:
        _reference_dir()
        real_loss, real_write = Trainer.loss, ckpt.atomic_write_bytes
        for i, kill in enumerate(kills):
            kill()
            argv = ["train", "--resume", out, "--no-progress"] if i else \
                ["train", *KILL_ARGS.split(), "--out", out]
            with pytest.raises(Killed):
                _quiet(argv)
            Trainer.loss, ckpt.atomic_write_bytes = real_loss, real_write
    return setup


def _same_as_reference(out: str):
    def check(root: Path, text: str) -> None:
        ref, run = _reference_dir(), root / out
        a, b = load_file(ref / "model.safetensors"), load_file(run / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        cols = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")
        rows_a, rows_b = read_metrics(ref / "metrics.csv"), read_metrics(run / "metrics.csv")
        assert [[r[c] for c in cols] for r in rows_a] == [[r[c] for c in cols] for r in rows_b]
        assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    return check


def _interrupt_at_step(signum: int, step: int):
    def setup(root: Path) -> None:
        _reference_dir()
        real, calls = Trainer.loss, [0]

        def loss(self, outputs, targets):
            calls[0] += 1
            if calls[0] == step:
                os.kill(os.getpid(), signum)
            return real(self, outputs, targets)
        Trainer.loss = loss
    return setup


def _resume_is_exact(out: str):
    def check(root: Path, text: str) -> None:
        Trainer.loss = _ORIGINAL_LOSS
        state = torch.load(root / out / "state.pt", weights_only=True)
        assert (state["epoch"], state["step"]) == (0, 5)  # the step it stopped at
        assert _quiet(["train", "--resume", out, "--no-progress"]) == 0
        _same_as_reference(out)(root, text)
    return check


# ---- full disks (z-rows) -----------------------------------------------------------------

def _disk_full_at(name: str, k: int):
    """The k-th temp file for ``name`` cannot be created: no space left on the device."""
    def setup(root: Path) -> None:
        real, count = ckpt.tempfile.mkstemp, [0]

        def mkstemp(*args, prefix="", **kwargs):
            if prefix == f".{name}.":
                count[0] += 1
                if count[0] >= k:
                    raise OSError(28, "No space left on device")
            return real(*args, prefix=prefix, **kwargs)
        ckpt.tempfile.mkstemp = mkstemp
    return setup


def _z01_check(root: Path, text: str) -> None:
    ckpt.tempfile.mkstemp = _ORIGINAL_MKSTEMP  # space freed (z02)
    state = torch.load(root / "small/run/state.pt", weights_only=True)  # the previous one loads
    assert (state["epoch"], state["step"]) == (0, 2)
    assert not [p for p in (root / "small/run").iterdir() if p.name.endswith(".tmp")]
    assert _quiet(["train", "--resume", "small/run", "--no-progress"]) == 0


def _modes_follow_umask(root: Path, text: str) -> None:
    files = [p for p in (root / "runs" / "umask").iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"config.json", "model.safetensors", "state.pt",
                                       "metrics.csv", "curves.png"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in files)


def _relative_run_elsewhere(root: Path) -> None:
    assert _quiet(["train", "lenet5", "--data-dir", "data/small", "--epochs", "1", "--precision",
                   "fp32", "--no-progress", "--out", "runs/r10"]) == 0
    (root / "elsewhere").mkdir()
    os.chdir(root / "elsewhere")  # the workspace fixture restores the folder


def _check_r11(root: Path, text: str) -> None:
    saved = json.loads((root / "runs/r10/config.json").read_text())["data"]["data_dir"]
    assert saved == str((root / "data" / "small").resolve())
    assert "(600 images)" in text and len(read_metrics(root / "runs/r10/metrics.csv")) == 2


def _k7_check(root: Path, text: str) -> None:
    rows = read_metrics(root / "kill/k7/metrics.csv")  # rebuilt from the checkpoint's history
    assert [r["epoch"] for r in rows] == [1, 2]
    _same_as_reference("kill/k7")(root, text)


def _transfer_run(out: str):
    def setup(root: Path) -> None:
        assert _quiet(["transfer", "--from", "runs/base", "--epochs", "1", "--no-progress",
                       "--set", "train.tensorboard=false", "--out", out]) == 0
    return setup


def _transfer_resumes(out: str):
    def check(root: Path, text: str) -> None:
        Trainer.loss = _ORIGINAL_LOSS
        assert (root / out / "state.pt").is_file()
        assert _quiet(["transfer", "--resume", out, "--no-progress"]) == 0
        assert len(read_metrics(root / out / "metrics.csv")) == 1
    return check


def _transfer_without_state(root: Path) -> None:
    _transfer_run("runs/tn")(root)
    (root / "runs/tn/state.pt").unlink()


TRAIN = "train lenet5 --data-dir data/small --precision fp32 --no-progress --epochs 1"

CASES = [
    # --overwrite: only after the new run's inputs are validated, only cnnlab's files
    Case("ow1", "train lenet5 --data-dir data/trunc --set data.download=false --epochs 1 "
         "--no-progress --out runs/ow1 --overwrite", 2, ("truncated",),
         survive=tuple(f.replace("base", "ow1") for f in BASE_FILES), setup=_truncated_data),
    Case("ow2", f"{TRAIN} --out runs/ow2 --overwrite", 2, ("runs/ow2/notes.txt", "did not write"),
         survive=("runs/ow2/notes.txt", "runs/ow2/model.safetensors", "runs/ow2/state.pt"),
         setup=_with_notes("runs/ow2")),
    Case("ow3", "train lenet5 --data-dir data/small --precision fp32 --no-progress --epochs 2 "
         "--set train.tensorboard=false --out runs/ow3 --overwrite", 0, ("test accuracy",),
         setup=_stale_overwrite, check=_check_ow3),
    Case("t15", "transfer --from runs/selfx --epochs 1 --no-progress --out runs/selfx --overwrite",
         2, ("--from run itself",), survive=("runs/selfx/model.safetensors", "runs/selfx/state.pt",
                                             "runs/selfx/config.json"),
         setup=_copy_base("runs/selfx")),
    Case("t16", "transfer --from runs/base --data fashion-mnist --data-dir data/small --epochs 1 "
         "--no-progress --out runs/tx --overwrite", 2, ("runs/tx/notes.txt",),
         survive=("runs/tx/notes.txt", "runs/tx/model.safetensors"), setup=_with_notes("runs/tx")),
    Case("o01", TRAIN, 2, ("--out DIR is required",)),
    Case("o03", f"{TRAIN} --out runs/base", 2, ("already holds a run", "--overwrite", "--resume"),
         survive=BASE_FILES),
    Case("o05", f"{TRAIN} --out 'runs/dir with spaces/ünïcødé ✓/run'", 0, ("test accuracy",)),
    Case("o07", f"{TRAIN} --out runs/nonempty", 0, ("test accuracy",),
         survive=("runs/nonempty/notes.txt",),
         setup=lambda root: (root / "runs/nonempty").mkdir() or
         (root / "runs/nonempty/notes.txt").write_text("mine\n")),
    # NaN / inf: a checkpoint is kept only when verified finite; an exploding loss is reported
    Case("nan1", f"{TRAIN} --lr 1e6 --out runs/nan1", 0,
         ("warning: the training loss exploded", "train.lr")),
    Case("nan2", f"{TRAIN} --lr 1e6 --checkpoint-every 1 --out runs/nan2", 0,
         ("warning: the training loss exploded",)),
    Case("nan3", "train lenet5_modern --data-dir data/small --precision fp32 --no-progress "
         "--epochs 3 --set train.lr=1e6 --checkpoint-every 1 --out runs/nan3", 2,
         ("became nan", "train.lr"), check=_no_checkpoint_claimed("runs/nan3")),
    Case("nan3r", "train --resume runs/nan3r --epochs 2 --lr 1e6 --checkpoint-every 1 "
         "--no-progress", 2, ("became", "last good checkpoint is kept", "--resume runs/nan3r"),
         setup=_modern_base, check=_check_nan3r),
    Case("nan4", "train lenet5_modern --data-dir data/small --precision fp32 --no-progress "
         "--epochs 3 --set train.lr=1e6 --out runs/nan4", 2, ("no checkpoint was written",),
         check=_no_checkpoint_claimed("runs/nan4")),
    Case("s08", f"{TRAIN} --set train.lr=nan --out runs/s08", 2, ("train.lr",),
         check=_no_checkpoint_claimed("runs/s08")),
    # resume: nothing to resume, finished runs, flags it would ignore, the data it reads
    Case("r02", "train --resume rd/empty --no-progress", 2, ("not a cnnlab run directory",),
         setup=lambda root: (root / "rd/empty").mkdir(parents=True)),
    Case("r03", "train --resume rd/nonexistent --no-progress", 2, ("not a cnnlab run directory",)),
    Case("r04", "train --resume rd/nostate --no-progress --data-dir data/small", 2,
         ("no state.pt", "--overwrite"), survive=("rd/nostate/config.json",),
         setup=_config_only("rd/nostate"), check=_advice_works("rd/nostate")),
    Case("e_nost", "evaluate rd/nost --data-dir data/small", 2,
         ("no model.safetensors", "--overwrite"), setup=_config_only("rd/nost")),
    Case("r_done", "train --resume runs/base --no-progress", 0, ("is finished", "--epochs N"),
         survive=BASE_FILES),
    Case("r_more", "train --resume runs/more --epochs 2 --no-progress", 0,
         ("resuming at epoch 2", "test accuracy"), setup=_copy_base("runs/more"),
         check=lambda root, text: len(read_metrics(root / "runs/more/metrics.csv")) == 2 or
         pytest.fail("no second epoch")),
    Case("r11", "train --resume ../runs/r10 --epochs 2 --no-progress", 0, ("test accuracy",),
         setup=_relative_run_elsewhere, check=_check_r11),
    Case("x01", "train resnet20 --resume runs/base --no-progress", 2, ("a MODEL", "--resume"),
         survive=BASE_FILES),
    Case("x02", "train --resume runs/base --out runs/x02 --no-progress", 2, ("--out", "--resume"),
         survive=BASE_FILES),
    Case("x03", "train --recipe fmnist-fast --resume runs/base --no-progress", 2,
         ("--recipe", "--resume"), survive=BASE_FILES),
    Case("x03c", "train --config runs/base/config.json --resume runs/base --no-progress", 2,
         ("--config", "--resume"), survive=BASE_FILES),
    Case("x03t", "transfer --resume runs/base --from runs/base --no-progress", 2,
         ("--from", "--resume"), survive=BASE_FILES),
    Case("t_done", "transfer --resume runs/tr --no-progress", 0,
         ("is finished", "`cnnlab transfer --resume runs/tr --epochs N`"),
         survive=("runs/tr/model.safetensors", "runs/tr/state.pt"), setup=_transfer_run("runs/tr")),
    Case("t_more", "transfer --resume runs/tm --epochs 2 --no-progress", 0,
         ("resuming at epoch 2", "test accuracy"), setup=_transfer_run("runs/tm"),
         check=lambda root, text: len(read_metrics(root / "runs/tm/metrics.csv")) == 2 or
         pytest.fail("no second epoch")),
    Case("t_nostate", "transfer --resume runs/tn --no-progress", 2, ("no state.pt", "--overwrite"),
         setup=_transfer_without_state),
    Case("t_int", "transfer --from runs/base --epochs 1 --no-progress --set train.tensorboard=false "
         "--out runs/ti", 128 + signal.SIGINT, ("interrupted (SIGINT)", "cnnlab transfer --resume runs/ti"),
         setup=_interrupt_at_step(signal.SIGINT, 3), check=_transfer_resumes("runs/ti")),
    Case("x04", "train lenet5 --deterministic --precision bf16 --data-dir data/small --epochs 1 "
         "--no-progress --out runs/x04", 0, ("fp32", "test accuracy")),
    # kills at every moment: the resume gives the uninterrupted run's weights and metrics
    Case("K1", "train --resume kill/k1 --no-progress", 2, ("not a cnnlab run directory",),
         setup=_killed("kill/k1", lambda: _kill_in_write("config.json", 1))),
    Case("K2", "train --resume kill/k2 --no-progress", 2, ("no state.pt", "--overwrite"),
         setup=_config_only("kill/k2"), check=_advice_works("kill/k2")),
    Case("K3", "train --resume kill/k3 --no-progress", 0, ("resuming at epoch 1, step 3",),
         setup=_killed("kill/k3", lambda: _kill_at_step(5)), check=_same_as_reference("kill/k3")),
    Case("K4", "train --resume kill/k4 --no-progress", 2, ("no state.pt", "--overwrite"),
         setup=_config_only("kill/k4", tmp=True), check=_advice_works("kill/k4")),
    Case("K5", "train --resume kill/k5 --no-progress", 0, ("test accuracy",),
         setup=_killed("kill/k5", lambda: _kill_in_write("model.safetensors", 4)),
         check=_same_as_reference("kill/k5")),
    Case("K6", "train --resume kill/k6 --no-progress", 0, ("test accuracy",),
         setup=_killed("kill/k6", lambda: _kill_in_write("state.pt", 3)),
         check=_same_as_reference("kill/k6")),
    Case("K7", "train --resume kill/k7 --no-progress", 0, ("is finished",),
         setup=_killed("kill/k7", lambda: _kill_in_write("metrics.csv", 2)), check=_k7_check),
    Case("K8", "train --resume kill/k8 --no-progress", 0, ("resuming at epoch",),
         setup=_killed("kill/k8", lambda: _kill_at_step(5), lambda: _kill_at_step(4)),
         check=_same_as_reference("kill/k8")),
    Case("K9", "train --resume kill/k9 --no-progress", 0, ("resuming at epoch 2",),
         setup=_killed("kill/k9", lambda: _kill_at_step(16)), check=_same_as_reference("kill/k9")),
    Case("K10", f"train {KILL_ARGS} --out kill/k10", 128 + signal.SIGINT,
         ("interrupted (SIGINT)", "cnnlab train --resume kill/k10"),
         setup=_interrupt_at_step(signal.SIGINT, 5), check=_resume_is_exact("kill/k10")),
    Case("K11", f"train {KILL_ARGS} --out kill/k11", 128 + signal.SIGTERM,
         ("interrupted (SIGTERM)", "cnnlab train --resume kill/k11"),
         setup=_interrupt_at_step(signal.SIGTERM, 5), check=_resume_is_exact("kill/k11")),
    # full disk: one line naming the file, and whether the previous checkpoint survives
    Case("z01", "train lenet5 --data-dir data/small --epochs 3 --precision fp32 --checkpoint-every 2 "
         "--no-progress --out small/run", 2,
         ("disk is full", "small/run/state.pt", "previous checkpoint", "survives",
          "cnnlab train --resume small/run"),
         setup=_disk_full_at("state.pt", 2), check=_z01_check),
    Case("z03", f"{TRAIN} --out small/run2", 2,
         ("disk is full", "small/run2/config.json", "no checkpoint was written yet"),
         setup=_disk_full_at("config.json", 1)),
    # the files a run writes follow the umask (they were 0600 under umask 022)
    Case("umask", f"{TRAIN} --out runs/umask", 0, ("test accuracy",),
         setup=lambda root: os.umask(0o022), check=_modes_follow_umask),
]

_ORIGINAL_LOSS, _ORIGINAL_MKSTEMP = Trainer.loss, ckpt.tempfile.mkstemp


@pytest.fixture(autouse=True)
def _restore(tmp_path_factory):
    """Undo every injection of a setup (training step, writer, disk, umask, signal handlers)."""
    _REFERENCE.setdefault("tmp", str(tmp_path_factory.mktemp("kill-reference")))
    writer, handlers = ckpt.atomic_write_bytes, (signal.getsignal(signal.SIGINT),
                                                 signal.getsignal(signal.SIGTERM))
    mask = os.umask(0o022)
    os.umask(mask)
    yield
    Trainer.loss, ckpt.atomic_write_bytes = _ORIGINAL_LOSS, writer
    ckpt.tempfile.mkstemp = _ORIGINAL_MKSTEMP
    os.umask(mask)
    signal.signal(signal.SIGINT, handlers[0])
    signal.signal(signal.SIGTERM, handlers[1])


@parametrize(CASES)
def test_case(case, workspace, capsys):
    run_case(case, workspace, capsys)
