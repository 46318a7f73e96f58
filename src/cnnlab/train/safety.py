"""What keeps a run's progress through its own failures: checkpoints that are kept only once their
weights are verified, and SIGINT/SIGTERM turned into a checkpoint at the current step.

* :class:`CheckpointKeeper` — a checkpoint due in the middle of an epoch is *held* until the next
  training step's loss, computed from exactly those weights, proves them sane (finite, and not
  exploded: under :data:`EXPLODED` times the run's reference loss); only then is it written, so
  the checkpoint on disk is always one a run can come back to. A NaN/inf loss discards the held
  one: the previous checkpoint stays.
* :class:`StopSignals` — while a run trains, SIGINT (Ctrl-C) and SIGTERM only set a flag; the
  Trainer reads it after each step, writes a checkpoint there and raises
  :class:`TrainingInterrupted` with the command that continues the run. A second signal stops at
  once.
"""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.train.checkpoint import resume_command, save_checkpoint

# A loss this many times its reference (the run's first loss, or chance level ln C if larger) has
# exploded: an epoch that does goes on with a warning, a held checkpoint that does is not kept.
EXPLODED = 100.0


class TrainingDiverged(ConfigError):
    """The loss became NaN or infinite; the run directory keeps the last good checkpoint."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped :meth:`~cnnlab.train.Trainer.fit`; a checkpoint of the current
    step was written. ``str()`` says where the run stopped and how to continue it; ``signal`` is
    the signal's number (the CLI exits with 128 + it)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signal = signum

    def __str__(self) -> str:
        return str(self.args[0])


def reference_loss(first_loss: float | None, num_classes: int | None) -> float:
    """The scale an exploded loss is measured against: the run's first training loss, or chance
    level ``ln C`` (a cross-entropy's value for uniform predictions) when that is larger."""
    return max(first_loss or 0.0, math.log(max(2, num_classes or 2)))


def all_finite(*modules: nn.Module) -> bool:
    """True when every floating-point weight and buffer of ``modules`` is finite."""
    return all(bool(torch.isfinite(v).all()) for m in modules for v in m.state_dict().values()
               if v.is_floating_point())


class CheckpointKeeper:
    """Writes the checkpoints of the run in ``out`` (on the main process only), holding back
    those not yet verified. A checkpoint is a ``(state, weights)`` pair of copies
    (:func:`~cnnlab.train.checkpoint.save_checkpoint`)."""

    def __init__(self, out: Path, is_main: bool = True) -> None:
        self.out, self.is_main = out, is_main
        self.held: tuple[dict, dict] | None = None

    def write(self, checkpoint: tuple[dict, dict] | None) -> None:
        """Write ``checkpoint`` now (it is verified); a held one is superseded. ``None``: nothing
        to write (a process other than the main one)."""
        self.held = None
        if self.is_main and checkpoint is not None:
            save_checkpoint(self.out, *checkpoint)

    def hold(self, checkpoint: tuple[dict, dict] | None) -> None:
        """Keep ``checkpoint`` until :meth:`verify` sees the loss of its weights."""
        self.held = checkpoint

    def verify(self, loss: float, reference: float) -> None:
        """The loss computed from the held checkpoint's weights: write it when sane, else drop it
        (the previous checkpoint stays)."""
        if self.held is not None:
            if math.isfinite(loss) and loss <= EXPLODED * reference:
                self.write(self.held)
            self.held = None

    def drop(self) -> None:
        self.held = None

    def flush(self) -> None:
        """Write the held checkpoint without a loss to verify it (its weights were checked)."""
        if self.held is not None:
            self.write(self.held)

    def exists(self) -> bool:
        return (self.out / "state.pt").is_file()

    def diverged(self, what: str, lr: float) -> TrainingDiverged:
        """The error of a run whose loss diverged: what happened, what to change, what is kept."""
        advice = f"lower the learning rate (train.lr={lr}) or clip gradients (train.grad_clip)"
        if self.exists():
            kept = (f"the last good checkpoint is kept in {self.out}: continue from it with a "
                    f"smaller learning rate, `{resume_command(self.out)} --lr {lr / 10:g}`")
        else:
            kept = ("no checkpoint was written (the loss diverged before the first one): start "
                    "again with a smaller learning rate and --overwrite")
        return TrainingDiverged(f"{what}; {advice} — {kept}")

    def interrupted(self, signum: int, where: str) -> TrainingInterrupted:
        """The error of a run stopped by ``signum`` at ``where``, after its checkpoint."""
        if self.exists():
            saved = f"checkpoint saved in {self.out}; continue with `{resume_command(self.out)}`"
        else:
            saved = "no checkpoint was written yet"
        return TrainingInterrupted(f"interrupted ({signal.Signals(signum).name}) at {where}: "
                                   f"{saved}", signum)


class StopSignals:
    """``with StopSignals(log):`` SIGINT and SIGTERM set :attr:`received` instead of stopping the
    process; the previous handlers come back on exit. Only in the main thread of a process that
    owns its signals (``enabled=False`` under torchrun, whose launcher does)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, log=None, enabled: bool = True) -> None:
        self.log = log or (lambda *_: None)
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.received: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.received = signum
        self.log(f"{signal.Signals(signum).name}: stopping after this step (again to stop at once)")

    def __enter__(self) -> StopSignals:
        self.received = None
        if self.enabled:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
