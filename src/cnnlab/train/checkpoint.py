"""Run directories and checkpoints, always written atomically (temp file, then rename).

A run directory holds ``config.json`` (the resolved config), ``metrics.csv`` (one row per epoch),
``model.safetensors`` (weights) and ``state.pt`` (:meth:`~cnnlab.train.Trainer.state_dict`:
optimizer, schedule, progress; loaded with ``weights_only=True``).
A process killed at any moment leaves either the previous or the next complete file, never half;
the temp file a kill leaves behind is removed on resume (:func:`remove_stale_temps`). The files
cnnlab may write into a run directory are listed once, in :data:`RUN_FILES`: ``--overwrite``
removes those and nothing else (:func:`clear_run`).
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CnnlabError, ConfigError, DataError
from cnnlab.train.config import ModelConfig, RunConfig

METRICS_COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr",
                   "images_per_s", "elapsed_s")
TRANSFER_FILE = "transfer.json"  # a transfer run's source, freeze policy and target (cnnlab.transfer)
# Every file cnnlab writes into a run directory (train, transfer, evaluate's documented --plot,
# report, export) and the folders it creates there: what --overwrite may remove, and nothing else.
RUN_FILES = ("config.json", "model.safetensors", "state.pt", "metrics.csv", "curves.png",
             TRANSFER_FILE, "report.html", ".report_confusion.png", "confusion.png", "model.onnx",
             "model.onnx.data", "model.pt")
RUN_FOLDERS = ("tensorboard",)


class DiskFullError(CnnlabError, OSError):
    """A run file could not be written because the disk (or the user's quota) is full."""


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc), else by setting
    and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same directory and ``os.replace``.

    The file gets the mode a plain ``open(path, "w")`` would give (0666 less the umask), not
    mkstemp's 0600. A full disk raises :class:`DiskFullError` naming the file; the temp file is
    removed and whatever ``path`` held before is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        _raise_if_full(err, path)
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            _raise_if_full(err, path)
        raise
    return path


def _raise_if_full(err: OSError, path: Path) -> None:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFullError(f"the disk is full: could not write {path} ({os.strerror(err.errno)})"
                            ) from None


def is_temp_file(name: str) -> bool:
    """True for the temp file of one of :data:`RUN_FILES` (``.model.safetensors.x1y2.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp") and any(
        name.startswith(f".{run_file}.") for run_file in RUN_FILES)


def remove_stale_temps(out: str | Path) -> list[Path]:
    """Remove the temp files that killed writes left in run directory ``out``; returns them."""
    out = Path(out)
    stale = sorted(p for p in out.iterdir() if p.is_file() and is_temp_file(p.name)) \
        if out.is_dir() else []
    for path in stale:
        path.unlink()
    return stale


def run_entries(out: str | Path) -> list[Path]:
    """The entries of ``out`` that cnnlab wrote (:data:`RUN_FILES`, :data:`RUN_FOLDERS`, their
    temp files); raise :class:`ConfigError` naming the first other entry (``--overwrite`` would
    delete it)."""
    out = Path(out)
    if not out.is_dir():
        return []
    entries = sorted(out.iterdir())
    for entry in entries:
        ours = (entry.name in RUN_FOLDERS and entry.is_dir()) or (
            entry.is_file() and (entry.name in RUN_FILES or is_temp_file(entry.name)))
        if not ours:
            raise ConfigError(f"--overwrite would delete {entry}, which cnnlab did not write: "
                              f"{out} holds more than a run; move it away or choose another --out")
    return entries


def clear_run(out: str | Path) -> None:
    """Remove the run in ``out`` — only the files cnnlab writes (see :func:`run_entries`)."""
    for entry in run_entries(out):
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def resume_command(out: str | Path) -> str:
    """The command that continues the run in ``out`` (a transfer run resumes with transfer)."""
    command = "transfer" if (Path(out) / TRANSFER_FILE).is_file() else "train"
    return f"cnnlab {command} --resume {out}"


def checkpoint_note(out: str | Path) -> str:
    """What survives in ``out`` after a failed write: the previous checkpoint, or nothing."""
    if (Path(out) / "state.pt").is_file():
        return (f"the previous checkpoint in {out} survives: free some space, then "
                f"`{resume_command(out)}`")
    return "no checkpoint was written yet: free some space and run the command again"


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """Save the state dict as safetensors, atomically (contiguous CPU copies, no pickle)."""
    from safetensors.torch import save

    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    return atomic_write_bytes(path, save(state))


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    """Load ``model.safetensors`` (or any safetensors file) into ``model``, in place: a damaged
    file or weights of another shape are one error naming the file (see :func:`read_weights`)."""
    from cnnlab.models.loading import load_checked

    path = Path(path)
    if not path.is_file():
        raise DataError(f"no weights at {str(path)!r}")
    return load_checked(model, read_weights(path), f"the weights in {str(path)!r}", strict,
                        fix=MISFIT_FIX)


MISFIT_FIX = ("config.json does not describe these weights: restore the run's own config.json, "
               "or train the run again")
STATE_KEYS = ("epoch", "step", "model", "optimizer", "scheduler", "scaler", "rng", "partial",
              "history", "best_acc", "bad_epochs", "elapsed")  # what Trainer.state_dict() holds


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The one reader of a run's ``model.safetensors``: its tensors, or one :class:`DataError`
    for an empty, truncated or foreign file."""
    from cnnlab.models.loading import read_safetensors

    return read_safetensors(path)


def save_state(state: dict, path: str | Path) -> Path:
    """Save optimizer/scheduler/progress state with torch.save, atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_state(path: str | Path) -> dict:
    """The one reader of a run's ``state.pt`` (``weights_only=True``: tensors, numbers, strings,
    lists and dicts only); a corrupt or foreign file, or one without the keys a resume needs, is
    one :class:`DataError` naming it."""
    from cnnlab.models.loading import read_torch_file

    fix = ("the run cannot be resumed from it: start it again with --overwrite (its "
           "model.safetensors still evaluates)")
    state = read_torch_file(path, "checkpoint", fix)
    lacking = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if lacking:
        named = ", ".join(map(repr, lacking[:3])) + (", ..." if len(lacking) > 3 else "")
        raise DataError(f"checkpoint {str(path)!r} lacks {len(lacking)} of the {len(STATE_KEYS)} "
                        f"entries a resume needs ({named}): it was not written by cnnlab's "
                        f"Trainer; {fix}")
    return state


def save_checkpoint(out: str | Path, state: dict, weights: nn.Module | dict) -> None:
    """A resumable checkpoint: ``weights`` (a module or its state dict) as ``model.safetensors``,
    then ``state`` (:meth:`cnnlab.train.Trainer.state_dict`) as ``state.pt``, each atomically.
    A full disk raises :class:`DiskFullError` saying whether the previous checkpoint survives."""
    from safetensors.torch import save

    out = Path(out)
    if isinstance(weights, nn.Module):
        weights = weights.state_dict()
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in weights.items()}
    try:
        atomic_write_bytes(out / "model.safetensors", save(tensors))
        save_state(state, out / "state.pt")
    except DiskFullError as err:
        noted = DiskFullError(f"{err}; {checkpoint_note(out)}")
        noted.noted = True
        raise noted from None


class RunFinished(CnnlabError):
    """``--resume`` of a run that already trained all its epochs: nothing to do (the message says
    how to train longer)."""


def finished_message(out: str | Path, state: dict, epochs: int, command: str = "train") -> str | None:
    """What to tell someone resuming the run in ``out`` (its ``state``) for ``epochs`` epochs when
    there is nothing left to train; None when there is."""
    done = int(state["epoch"])
    stopped = bool(state.get("stopped_early")) and epochs <= int(state.get("planned_epochs", epochs))
    if done < epochs and not stopped:
        return None
    history = state.get("history") or []
    accuracy = next((row["test_acc"] for row in reversed(history) if row.get("test_acc") is not None),
                    None)
    tested = f", test accuracy {accuracy:.2%}" if accuracy is not None else ""
    why = (f"early stopping ended it at epoch {done} of {epochs}" if stopped and done < epochs
           else f"it trained all {done} epochs")
    return (f"{out} is finished: {why}{tested}; to train longer, give more epochs: "
            f"`cnnlab {command} --resume {out} --epochs N` with N > {done}")


def repair_run(out: str | Path, state: dict) -> None:
    """Tidy what a kill left in run directory ``out`` before it resumes from ``state``: the temp
    files of interrupted writes go, and ``metrics.csv`` is rewritten from the checkpoint's own
    history (a kill while it was written loses no row)."""
    remove_stale_temps(out)
    write_metrics(Path(out) / "metrics.csv", state["history"])


def restart_advice(out: str | Path) -> str:
    """How to start the run in ``out`` again from its saved config (it has no checkpoint)."""
    if (Path(out) / TRANSFER_FILE).is_file():
        return f"run the same `cnnlab transfer ... --out {out}` again with --overwrite"
    return f"`cnnlab train --config {Path(out) / 'config.json'} --out {out} --overwrite`"


def no_checkpoint_message(out: str | Path) -> str:
    """Why ``out`` cannot be resumed when it has a config but no ``state.pt``, and what to do."""
    return (f"nothing to resume in {out}: no state.pt (the run stopped before its first "
            f"checkpoint); start it again from its saved config: {restart_advice(out)}")


def load_checkpoint(out: str | Path) -> dict:
    """The ``state.pt`` of run directory ``out`` (tensors, dicts, lists, numbers and strings only)."""
    path = Path(out) / "state.pt"
    if not path.is_file():
        raise ConfigError(no_checkpoint_message(out))
    return load_state(path)


def write_metrics(path: str | Path, rows: list[dict]) -> Path:
    """Rewrite ``metrics.csv`` with all rows so far (atomic; one row per epoch)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, out.getvalue())


def read_metrics(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: int(v) if k == "epoch" else float(v) if v != "" else None for k, v in row.items()}
                for row in csv.DictReader(f)]  # "": not evaluated that epoch (train.eval_every)


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The :class:`RunConfig` saved in a run directory."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a cnnlab run directory (no config.json); "
                          f"pass the --out directory of a `cnnlab train` run")
    raw = read_json(path)
    fix = "restore it from a copy, or train the run again"
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (model, data, train, augment), "
                          f"not a {type(raw).__name__}; {fix}")
    if not isinstance(raw.get("model"), dict) or "name" not in raw["model"]:
        raise ConfigError(f"{path} has no model section with a name: it was not written by "
                          f"cnnlab; {fix}")
    try:
        return RunConfig.from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def read_json(path: str | Path):
    """The one reader of a run's JSON files (``config.json``, ``transfer.json``): the parsed
    value, or one :class:`ConfigError` naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); restore it from a copy, or write "
                          f"the run again") from None


def load_run_model(run_dir: str | Path, map_location: str = "cpu") -> tuple[RunConfig, nn.Module]:
    """Rebuild the model of a run directory from its config and load ``model.safetensors``."""
    from cnnlab.models import create_model

    config = load_run_config(run_dir)
    weights = Path(run_dir) / "model.safetensors"
    if not config.model.registry:
        raise ConfigError(f"{str(run_dir)!r} holds the weights of {config.model.name}, a model "
                          f"that was passed to the Trainer in Python, not a registry model: build "
                          f"it in Python, then cnnlab.train.checkpoint.load_weights(model, "
                          f"{str(weights)!r})")
    if not weights.is_file():
        advice = (f"resume it with `{resume_command(run_dir)}`"
                  if (Path(run_dir) / "state.pt").is_file() else
                  f"it stopped before its first checkpoint; start it again: {restart_advice(run_dir)}")
        raise ConfigError(f"{str(run_dir)!r} has no model.safetensors yet: the run has not "
                          f"written its weights ({advice})")
    model = create_model(**config.model.create_kwargs())
    load_weights(model, weights)
    return config, model.to(map_location).eval()


def describe_model(model: nn.Module, described: ModelConfig) -> ModelConfig:
    """The :class:`ModelConfig` that says what a model passed to the Trainer is.

    ``described`` is kept when ``create_model(**described.create_kwargs())`` builds a network with
    the same state-dict keys and shapes (a zoo model, possibly with a new head: transfer), so that
    ``cnnlab evaluate`` can rebuild it. Anything else is named by its class and marked
    ``registry=False``: its weights load only into the class built in Python.
    """
    from cnnlab.models import create_model, list_models

    if described.registry and described.name in list_models():
        try:
            with torch.device("meta"):
                reference = create_model(**described.create_kwargs()).state_dict()
        except (ConfigError, TypeError, ValueError, RuntimeError):
            reference = None
        state = model.state_dict()
        if reference is not None and reference.keys() == state.keys() and all(
                reference[k].shape == state[k].shape for k in state):
            return described
    cls = type(model)
    return dataclasses.replace(described, name=f"{cls.__module__}.{cls.__qualname__}",
                               options={}, registry=False)
