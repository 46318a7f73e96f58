"""A run directory evaluated the way its training evaluated it: `cnnlab evaluate` and the report.

The Trainer evaluates after each epoch with the run's own settings — its device, the precision and
memory format it resolved (saved in ``config.json``), ``train.eval_batch_size`` and the views of
``TrainSection.tta_mode`` (``flip`` with ``train.tta_flip``, ``flip_shift`` with
``train.tta_shift`` too). :class:`EvalSettings` reads those settings back, and
:func:`evaluate_run` evaluates a run directory with them (or with the ones given), through the same
:func:`~cnnlab.evaluate.metrics.evaluate_model`: the accuracy of the last row of metrics.csv,
``cnnlab evaluate`` and the report's are then one number. The test split is the run's own: a
transfer run's class selection and image transform (:func:`cnnlab.transfer.run_test_spec`).

(A head trained on cached features was evaluated on the cache, whose backbone ran at the cache's
precision; ``evaluate_run`` runs the whole network at the run's precision, which agrees to
rounding.)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from cnnlab.data.datasets import InMemoryDataset
from cnnlab.device import Precision, resolve_precision
from cnnlab.errors import ConfigError
from cnnlab.evaluate.metrics import EvalResult, evaluate_model
from cnnlab.evaluate.tta import TTA_MODES
from cnnlab.train.checkpoint import load_run_model
from cnnlab.train.config import RunConfig
from cnnlab.transfer.data import TargetSpec
from cnnlab.transfer.run import run_test_spec


@dataclass(frozen=True)
class EvalSettings:
    """How a run is evaluated: where, at what precision, in what batches, with what views."""

    device: str  # auto, cpu, cuda
    precision: str  # fp32, bf16, fp16 (auto: resolved now)
    channels_last: bool | None  # None: chosen with the precision
    tta: str  # test-time views (cnnlab.evaluate.tta)
    batch_size: int  # inputs per forward pass

    @classmethod
    def of_run(cls, config: RunConfig) -> EvalSettings:
        """The settings the Trainer evaluated ``config``'s run with after each epoch."""
        t = config.train
        return cls(t.device, t.precision, t.channels_last, t.tta_mode(),
                   t.eval_batch_size)

    def override(self, tta: str | None = None, precision: str | None = None,
                 device: str | None = None, batch_size: int | None = None) -> EvalSettings:
        """These settings with the given ones instead; a new device or precision lets the
        memory format be chosen again."""
        if tta is not None and tta not in TTA_MODES:
            raise ConfigError(f"unknown TTA mode {tta!r}; choose one of {', '.join(TTA_MODES)}")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"the batch size must be at least 1, got {batch_size}")
        layout = None if (precision or device) else self.channels_last
        return replace(self, tta=tta or self.tta, precision=precision or self.precision,
                       device=device or self.device, batch_size=batch_size or self.batch_size,
                       channels_last=layout)

    def precision_path(self) -> Precision:
        return resolve_precision(self.device, self.precision, self.channels_last)

    def describe(self) -> str:
        """``cpu · bf16 autocast · channels_last · TTA flip · batch 1000``."""
        return f"{self.precision_path().describe()} · TTA {self.tta} · batch {self.batch_size}"


@dataclass
class RunEvaluation:
    """What :func:`evaluate_run` found: the result and everything it was computed from."""

    config: RunConfig
    model: nn.Module
    spec: TargetSpec  # the test split's data set and transform
    test_set: InMemoryDataset
    settings: EvalSettings
    own_settings: bool  # True: exactly the run's own evaluation settings
    result: EvalResult


def evaluate_run(run_dir: str | Path, tta: str | None = None, precision: str | None = None,
                 device: str | None = None, batch_size: int | None = None,
                 data_dir: str | None = None, progress: str | None = None) -> RunEvaluation:
    """Evaluate the model of ``run_dir`` on its test split, with the run's own settings except
    those given (see the module docstring); ``progress`` labels a bar over the test images."""
    config, model = load_run_model(run_dir)
    own = EvalSettings.of_run(config)
    settings = own.override(tta, precision, device, batch_size)
    path = settings.precision_path()
    model = path.prepare(model)
    spec = run_test_spec(run_dir, config, data_dir)
    test_set = spec.load("test", config.data.download)
    size = test_set.image_shape[-1]
    crop = min(config.model.input_size or size, size)  # crops the size the model was built for
    result = evaluate_model(model, test_set, settings.batch_size, path, settings.tta, crop, progress)
    return RunEvaluation(config, model, spec, test_set, settings, settings == own, result)
