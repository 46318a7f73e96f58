"""What a checkpoint holds to resume a run exactly, even from the middle of an epoch.

``state.pt`` (loaded with ``weights_only=True``: only tensors, dicts, lists, numbers, strings):

* ``epoch`` — epochs completed; ``step`` — optimizer steps done in the next epoch (0 at a boundary);
* ``model`` — the raw training weights (``model.safetensors`` holds the EMA weights when EMA is on);
* ``optimizer``, ``scheduler``, ``scaler``, ``ema`` — their ``state_dict()``;
* ``rng`` — torch's CPU (and CUDA) generator state, for dropout;
* ``partial`` — the running loss/accuracy sums of the interrupted epoch;
* ``history``, ``best_acc``, ``bad_epochs``, ``elapsed`` — the rows and early-stopping state.

The data order and augmentation need no state: the loader derives them from (seed, epoch, batch).
"""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.train.checkpoint import load_state, save_state, save_weights


def save_checkpoint(trainer, epoch: int, step: int, partial: dict, elapsed: float) -> None:
    """Write ``model.safetensors`` then ``state.pt`` atomically (rank 0 only)."""
    if not trainer.dist.is_main:
        return
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and trainer.precision.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state()
    state = dict(epoch=epoch, step=step, model=_cpu(trainer.model.state_dict()),
                 optimizer=trainer.optimizer.state_dict(), scheduler=trainer.scheduler.state_dict(),
                 scaler=trainer.scaler.state_dict(), rng=rng, partial=partial,
                 history=trainer.history, best_acc=trainer.best_acc, bad_epochs=trainer.bad_epochs,
                 elapsed=elapsed)
    if trainer.ema is not None:
        state["ema"] = trainer.ema.state_dict()
    save_weights(trainer.eval_model, trainer.out / "model.safetensors")
    save_state(state, trainer.out / "state.pt")


def load_checkpoint(trainer, path: str | Path) -> dict:
    """Restore everything :func:`save_checkpoint` wrote; returns the state (epoch, step, ...)."""
    state = load_state(path)
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.scaler.load_state_dict(state["scaler"])
    if trainer.ema is not None and "ema" in state:
        trainer.ema.load_state_dict(state["ema"])
    torch.set_rng_state(state["rng"]["cpu"])
    if "cuda" in state["rng"] and trainer.precision.device.type == "cuda":
        torch.cuda.set_rng_state(state["rng"]["cuda"])
    trainer.history = list(state["history"])
    trainer.best_acc, trainer.bad_epochs = float(state["best_acc"]), int(state["bad_epochs"])
    return state


def _cpu(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
