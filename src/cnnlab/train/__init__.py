"""Training: config, the Trainer, run directories and checkpoints."""

from cnnlab.train.checkpoint import load_run_config, load_run_model, read_metrics
from cnnlab.train.config import DataConfig, ModelConfig, RunConfig, TrainSection, apply_overrides
from cnnlab.train.trainer import Trainer, train

__all__ = ["DataConfig", "ModelConfig", "RunConfig", "TrainSection", "Trainer", "apply_overrides",
           "load_run_config", "load_run_model", "read_metrics", "train"]
