"""Run directories and checkpoints, always written atomically (temp file, then rename).

A run directory holds ``config.json`` (the resolved config), ``metrics.csv`` (one row per epoch),
``model.safetensors`` (weights) and ``state.pt`` (:meth:`~cnnlab.train.Trainer.state_dict`:
optimizer, schedule, progress; loaded with ``weights_only=True``).
A process killed at any moment leaves either the previous or the next complete file, never half.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ConfigError, DataError
from cnnlab.train.config import ModelConfig, RunConfig

METRICS_COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr",
                   "images_per_s", "elapsed_s")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


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


def save_checkpoint(out: str | Path, state: dict, weights: nn.Module) -> None:
    """A resumable checkpoint: ``weights``' state dict as ``model.safetensors``, then ``state``
    (:meth:`cnnlab.train.Trainer.state_dict`) as ``state.pt``, each atomically."""
    out = Path(out)
    save_weights(weights, out / "model.safetensors")
    save_state(state, out / "state.pt")


def load_checkpoint(out: str | Path) -> dict:
    """The ``state.pt`` of run directory ``out`` (tensors, dicts, lists, numbers and strings only)."""
    path = Path(out) / "state.pt"
    if not path.is_file():
        raise ConfigError(f"nothing to resume in {out}: no state.pt (the run has not written a "
                          f"checkpoint yet); start it again without --resume")
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
        raise ConfigError(f"{str(run_dir)!r} has no model.safetensors yet: the run has not "
                          f"finished an epoch (resume it with `cnnlab train --resume {run_dir}`)")
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
