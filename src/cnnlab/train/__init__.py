"""Training: config, the Trainer, run directories and checkpoints."""

from cnnlab.train.checkpoint import load_run_config, load_run_model, read_metrics
from cnnlab.train.config import DataConfig, ModelConfig, RunConfig, TrainSection, apply_overrides

__all__ = ["DataConfig", "ModelConfig", "RunConfig", "TrainSection", "Trainer", "apply_overrides",
           "load_run_config", "load_run_model", "read_metrics", "train"]


def __getattr__(name: str):
    # The Trainer pulls in the data pipeline and torchvision (~1.5 s); import it on first use so
    # that `cnnlab --help` and config-only code don't pay for it.
    if name in ("Trainer", "train"):
        from cnnlab.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'cnnlab.train' has no attribute {name!r}")
