"""Faults while a run writes its files: a kill during each write, a full disk at each write, SIGINT
and SIGTERM mid-epoch, NaN and exploding losses, and the precision a run resolves once.

Kills and full disks are injected at the one atomic writer (cnnlab.train.checkpoint), so every
file a run writes goes through the injection; the oracle is an uninterrupted run of the same seed
(``train.deterministic``: bitwise repeatable).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat

import pytest
import torch
from safetensors.torch import load_file

from cnnlab import device
from cnnlab.errors import ConfigError
from cnnlab.train import RunConfig, Trainer, read_metrics
from cnnlab.train import checkpoint as ckpt
from cnnlab.train import trainer as trainer_module
from cnnlab.train.checkpoint import DiskFullError, RunFinished
from cnnlab.train.trainer import TrainingDiverged, TrainingInterrupted

from ..conftest import run_config


def _config(epochs: int = 2, **train) -> RunConfig:
    return run_config("lenet5", **{"epochs": epochs, "batch_size": 64, "checkpoint_every": 2,
                                   "deterministic": True, "plot": True, "eval_batch_size": 80,
                                   **train})


def _run(out, data, config=None, **kwargs) -> Trainer:
    trainer = Trainer(config or _config(), out, *data, progress=False, log=None, **kwargs)
    trainer.fit()
    return trainer


def _same_run(a, b) -> None:
    """Bitwise the same weights, the same metrics rows (but the timings), the same progress."""
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    rows_a, rows_b = read_metrics(a / "metrics.csv"), read_metrics(b / "metrics.csv")
    assert len(rows_a) == len(rows_b)
    for ra, rb in zip(rows_a, rows_b):
        for col in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr"):
            assert ra[col] == rb[col], col
    assert not [p.name for p in b.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run, and the names of the files it wrote, in the order it wrote them."""
    from cnnlab.data.datasets import InMemoryDataset

    from ..conftest import make_images

    data = []
    for n, seed in ((320, 0), (80, 1)):  # the tiny_dataset fixture's images
        images, labels = make_images(n, seed=seed)
        data.append(InMemoryDataset(images.unsqueeze(1), labels.long(), tuple(map(str, range(10))),
                                    "synthetic", (0.15,), (0.25,)))
    writes = []
    real = ckpt.atomic_write_bytes

    def recording(path, data):
        writes.append(os.path.basename(path))
        return real(path, data)

    out = tmp_path_factory.mktemp("reference")
    ckpt.atomic_write_bytes = recording
    try:
        _run(out, data)
    finally:
        ckpt.atomic_write_bytes = real
    return out, writes


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no cleanup handler catches it."""


def _nth(writes: list[str], name: str, k: int) -> int:
    """The index of the k-th write of ``name`` (negative k: counted from the end)."""
    return [i for i, w in enumerate(writes) if w == name][k]


def _kill_at(monkeypatch, index: int) -> None:
    """The ``index``-th write dies half-way: a temp file with half the bytes is left, as SIGKILL
    during the write leaves it, and the old file is untouched."""
    real, count = ckpt.atomic_write_bytes, [0]

    def dying(path, data):
        count[0] += 1
        if count[0] - 1 == index:
            path = ckpt.Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / f".{path.name}.k1ll3d.tmp").write_bytes(data[: len(data) // 2])
            raise Killed
        return real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", dying)


# (file, which of its writes): the first of each, a mid-epoch and an end-of-epoch checkpoint,
# the last epoch's metrics.csv (campaign K7) and curves.png.
KILL_POINTS = [("config.json", 0), ("model.safetensors", 0), ("state.pt", 0),
               ("model.safetensors", 3), ("state.pt", 2), ("metrics.csv", 0), ("curves.png", 0),
               ("model.safetensors", -1), ("state.pt", -1), ("metrics.csv", -1),
               ("curves.png", -1)]


@pytest.mark.parametrize("name,k", KILL_POINTS, ids=[f"{n}[{k}]" for n, k in KILL_POINTS])
def test_a_kill_during_each_write_resumes_to_the_uninterrupted_run(
        name, k, reference, tmp_path, tiny_dataset, monkeypatch):
    ref, writes = reference
    out = tmp_path / "killed"
    _kill_at(monkeypatch, _nth(writes, name, k))
    with pytest.raises(Killed):
        _run(out, tiny_dataset)
    monkeypatch.undo()
    if not (out / "state.pt").exists():  # killed before the first checkpoint: start again
        with pytest.raises(ConfigError, match="--overwrite"):
            Trainer(_config(), out, *tiny_dataset, progress=False, log=None, resume=True)
        _run(out, tiny_dataset, overwrite=True)
    else:
        with contextlib.suppress(RunFinished):  # killed after the last checkpoint: it tidies up
            _run(out, tiny_dataset, resume=True)
    _same_run(ref, out)


@pytest.mark.parametrize("name,k", KILL_POINTS, ids=[f"{n}[{k}]" for n, k in KILL_POINTS])
def test_a_full_disk_at_each_write_names_the_file_and_keeps_the_previous_one(
        name, k, reference, tmp_path, tiny_dataset, monkeypatch):
    ref, writes = reference
    out = tmp_path / "full"
    index, count = _nth(writes, name, k), [0]
    real_fdopen = os.fdopen

    class FullDisk:  # the file object of the index-th write: its write() finds the disk full
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, attr):
            return getattr(self.f, attr)

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        count[0] += 1
        return FullDisk(f) if count[0] - 1 == index else f

    before = {}
    real_writer = ckpt.atomic_write_bytes

    def snapshot(path, data):  # what each file held just before the failing write
        if count[0] == index and os.path.exists(path):
            before[os.path.basename(path)] = ckpt.Path(path).read_bytes()
        return real_writer(path, data)

    monkeypatch.setattr(ckpt.os, "fdopen", fdopen)
    monkeypatch.setattr(ckpt, "atomic_write_bytes", snapshot)
    had_state = []
    monkeypatch.setattr(ckpt, "_raise_if_full", _recording_raise(had_state, out))
    with pytest.raises(DiskFullError) as err:
        _run(out, tiny_dataset)
    monkeypatch.undo()
    message = str(err.value)
    assert "disk is full" in message and f"{out / name}" in message
    assert "\n" not in message
    if had_state[0]:
        assert "previous checkpoint" in message and "survives" in message
    else:
        assert "no checkpoint was written yet" in message
    for file, data in before.items():  # the file being written, untouched
        assert (out / file).read_bytes() == data, file
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    if (out / "state.pt").exists():  # space freed: the run continues from what survived
        with contextlib.suppress(RunFinished):
            _run(out, tiny_dataset, resume=True)
    else:
        _run(out, tiny_dataset, overwrite=True)
    _same_run(ref, out)


def _recording_raise(had_state: list, out):
    real = ckpt._raise_if_full

    def recording(err, path):
        had_state.append((out / "state.pt").exists())
        return real(err, path)

    return recording


def _signal_at_step(monkeypatch, signum: int, at: int) -> None:
    """Send ``signum`` to this process during the ``at``-th training step (as Ctrl-C would)."""
    real, calls = Trainer.loss, [0]

    def loss(self, outputs, targets):
        calls[0] += 1
        if calls[0] == at:
            os.kill(os.getpid(), signum)
        return real(self, outputs, targets)

    monkeypatch.setattr(Trainer, "loss", loss)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_epoch_saves_the_current_step_and_resume_is_exact(
        signum, reference, tmp_path, tiny_dataset, monkeypatch):
    ref, _ = reference
    out = tmp_path / "stopped"
    _signal_at_step(monkeypatch, signum, at=7)  # epoch 2, step 2 of 5 (not a checkpoint_every one)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as stop:
        _run(out, tiny_dataset, config=_config(checkpoint_every=0))
    monkeypatch.undo()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert stop.value.signal == signum
    assert f"cnnlab train --resume {out}" in str(stop.value)
    state = torch.load(out / "state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 2)  # the step it stopped at, not the epoch's start
    _run(out, tiny_dataset, resume=True)
    _same_run(ref, out)


def test_umask_is_respected_by_every_file_the_run_writes(tmp_path, tiny_dataset):
    for mask, mode in ((0o022, 0o644), (0o077, 0o600)):
        old = os.umask(mask)
        try:
            _run(tmp_path / f"run{mask:o}", tiny_dataset, config=_config(epochs=1))
        finally:
            os.umask(old)
        files = [p for p in (tmp_path / f"run{mask:o}").iterdir() if p.is_file()]
        assert {p.name for p in files} >= {"config.json", "model.safetensors", "state.pt",
                                           "metrics.csv", "curves.png"}
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == mode, path.name


# ---- NaN and exploding losses ----------------------------------------------------------------

def test_nan_before_any_checkpoint_says_none_was_written(tmp_path, tiny_dataset):
    with pytest.raises(TrainingDiverged) as err:
        _run(tmp_path, tiny_dataset, config=_config(lr=1e30, checkpoint_every=1))
    assert "no checkpoint was written" in str(err.value) and "last good" not in str(err.value)
    assert not (tmp_path / "state.pt").exists() and not (tmp_path / "model.safetensors").exists()


def _modern(**train) -> RunConfig:
    config = _config(schedule="constant", **train)
    config.model.name = "lenet5_modern"  # BatchNorm: lr=1e6 reaches nan in a few steps (nan3)
    return config


def test_after_nan_the_kept_checkpoint_is_finite_and_resumes_with_a_smaller_lr(tmp_path, tiny_dataset):
    _run(tmp_path, tiny_dataset, config=_modern(epochs=1))
    good = torch.load(tmp_path / "state.pt", weights_only=True)
    with pytest.raises(TrainingDiverged) as err:  # campaign nan3: lr=1e6, a checkpoint every step
        _run(tmp_path, tiny_dataset, config=_modern(epochs=2, lr=1e6, checkpoint_every=1),
             resume=True)
    assert "last good checkpoint is kept" in str(err.value) and "--resume" in str(err.value)
    kept = torch.load(tmp_path / "state.pt", weights_only=True)
    for value in kept["model"].values():
        assert torch.isfinite(value).all()
    # the checkpoints written after lr=1e6 took over gave exploded losses: none was kept
    assert (kept["epoch"], kept["step"]) == (1, 0) and kept["history"] == good["history"]
    for value in load_file(tmp_path / "model.safetensors").values():
        assert torch.isfinite(value).all()
    trainer = _run(tmp_path, tiny_dataset, resume=True, config=_modern(epochs=2, lr=0.01))
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # the new lr, not 1e6
    assert len(trainer.history) == 2
    assert trainer.history[-1]["train_loss"] < 2 * trainer.history[0]["train_loss"]
    assert torch.isfinite(torch.tensor(trainer.history[-1]["test_loss"]))


def test_an_exploding_loss_is_reported(tmp_path, tiny_dataset):
    lines = []
    Trainer(_config(epochs=1, lr=1e6), tmp_path, *tiny_dataset, progress=False,
            log=lines.append).fit()
    warnings = [line for line in lines if line.startswith("warning: the training loss exploded")]
    assert len(warnings) == 1 and "train.lr" in warnings[0]
    lines.clear()
    Trainer(_config(epochs=1), tmp_path / "calm", *tiny_dataset, progress=False,
            log=lines.append).fit()
    assert not [line for line in lines if "exploded" in line]


# ---- precision: resolved once, recorded, reused ----------------------------------------------

def test_the_probe_keeps_the_minimum_of_interleaved_steps_on_a_fake_timer():
    """The decision of `precision auto` (:func:`cnnlab.device._fastest`, which
    measure_cpu_precision runs) on a fake clock: each step advances it by a scripted duration."""
    from cnnlab.device import Precision, _fastest

    cpu = torch.device("cpu")
    candidates = {"bf16": Precision(cpu, "bf16", True), "fp32": Precision(cpu, "fp32", False)}
    # Seconds of each step of each candidate, in its own order: the warm-up round (dropped), then
    # 5 timed rounds. Load hits bf16 in two rounds (3.1 s against its 0.5 s), as under a busy CPU.
    durations = {"bf16": [9.0, 3.1, 0.5, 3.1, 0.6, 0.5], "fp32": [9.0, 0.8, 0.9, 0.8, 1.0, 0.8]}
    order, clock = [], [0.0]

    def step(model, x, p):
        order.append(p.name)
        clock[0] += durations[p.name][order.count(p.name) - 1]

    model = torch.nn.Conv2d(1, 2, 3)
    chosen, times = _fastest(model, torch.randn(2, 1, 8, 8), candidates, step, 5, True,
                             timer=lambda: clock[0])
    # interleaved, and the order reversed every other round: neither always runs first
    assert order == ["bf16", "fp32", "fp32", "bf16"] * 3
    assert times == pytest.approx({"bf16": 0.5, "fp32": 0.8})  # each one's best timed step
    assert chosen == candidates["bf16"]
    durations["bf16"] = [9.0, 3.1, 0.9, 3.1, 0.95, 0.85]  # now fp32's best (0.8) is the faster
    order.clear()
    chosen, times = _fastest(model, torch.randn(2, 1, 8, 8), candidates, step, 5, True,
                             timer=lambda: clock[0])
    assert chosen == candidates["fp32"] and times == pytest.approx({"bf16": 0.85, "fp32": 0.8})


def _fake_probe(result: str, calls: list):
    from cnnlab.device import Precision

    def probe(model, images, labels, repeats=5, timer=None, candidates=None):
        calls.append(repeats)
        return Precision(torch.device("cpu"), result, result == "bf16"), {"bf16": 0.0031,
                                                                          "fp32": 0.0008}
    return probe


def test_auto_without_bf16_kernels_times_both_fp32_layouts(tmp_path, tiny_dataset, monkeypatch):
    """On a CPU without bf16 kernels `auto` still measures: fp32 NCHW against fp32 channels_last
    (the faster one depends on the network); a given train.channels_last leaves one path, which
    is then taken without a probe."""
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: False)
    seen = []

    def probe(model, images, labels, repeats=5, timer=None, candidates=None):
        seen.append(candidates)
        return None, {"fp32": 0.0030, "fp32 channels_last": 0.0021}

    monkeypatch.setattr(trainer_module, "measure_cpu_precision", probe)
    lines = []
    config = _config(epochs=1, deterministic=False, precision="auto")
    trainer = Trainer(config, tmp_path / "a", *tiny_dataset, progress=False, log=lines.append)
    assert list(seen[0]) == ["fp32", "fp32 channels_last"]
    assert (trainer.precision.name, trainer.precision.channels_last) == ("fp32", True)
    assert any(line.endswith("-> fp32 channels_last; recorded in the run, a resume keeps it")
               for line in lines), lines
    config.train.channels_last = False
    pinned = Trainer(config, tmp_path / "b", *tiny_dataset, progress=False, log=None)
    assert len(seen) == 1 and (pinned.precision.name, pinned.precision.channels_last) == ("fp32",
                                                                                         False)


def test_auto_precision_is_recorded_and_a_resume_never_probes(tmp_path, tiny_dataset, monkeypatch):
    import json

    calls, lines = [], []
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(trainer_module, "measure_cpu_precision", _fake_probe("fp32", calls))
    config = _config(epochs=1, deterministic=False, precision="auto")
    Trainer(config, tmp_path, *tiny_dataset, progress=False, log=lines.append).fit()
    assert len(calls) == 1
    assert any("bf16 3.1 ms/step, fp32 0.8 ms/step" in line and "-> fp32" in line for line in lines)
    saved = json.loads((tmp_path / "config.json").read_text())["train"]
    assert (saved["precision"], saved["channels_last"]) == ("fp32", False)
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["precision"]["name"] == "fp32"
    assert state["precision"]["probe"] == {"bf16": 0.0031, "fp32": 0.0008}

    def no_probe(*args, **kwargs):
        raise AssertionError("a resume measured the precision again")

    monkeypatch.setattr(trainer_module, "measure_cpu_precision", no_probe)
    # even a config that still says auto (e.g. --precision auto beside --resume) keeps the record
    trainer = Trainer(_config(epochs=2, deterministic=False, precision="auto"), tmp_path,
                      *tiny_dataset, progress=False, log=None, resume=True)
    assert (trainer.precision.name, trainer.precision.channels_last) == ("fp32", False)
    trainer.fit()
    with pytest.raises(RunFinished, match="is finished"):  # a finished run: no probe, no data
        Trainer(_config(epochs=2, deterministic=False, precision="auto"), tmp_path,
                *tiny_dataset, progress=False, log=None, resume=True)
