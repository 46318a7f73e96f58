"""Run configuration: typed dataclasses, saved as ``config.json`` in every run directory.

Sections: ``model``, ``data``, ``train``. A run directory's config is enough to resume or to
rebuild the model (``RunConfig.from_dict(json.load(...))``). Dotted overrides such as
``train.lr=0.05`` are checked against the field types (:func:`apply_overrides`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import ConfigError


@dataclass
class ModelConfig:
    name: str = "lenet5"  # registry name (cnnlab models)
    num_classes: int | None = None  # None: the data set's number of classes
    in_chans: int | None = None  # None: the data set's channels
    input_size: int | None = None  # None: the data set's image size
    options: dict = field(default_factory=dict)  # family options passed to create_model

    def create_kwargs(self) -> dict:
        """Keyword arguments for ``create_model`` (``name`` included)."""
        return dict(name=self.name, num_classes=self.num_classes, in_chans=self.in_chans,
                    input_size=self.input_size, **self.options)


@dataclass
class DataConfig:
    name: str = "fashion-mnist"  # fashion-mnist, mnist or digits
    data_dir: str | None = None  # where to look first (else CNNLAB_DATA, cache, Debian)
    download: bool = True  # try the official source when the files are nowhere on disk


@dataclass
class TrainSection:
    epochs: int = 8  # passes over the training set
    batch_size: int = 128  # examples per optimizer step
    optimizer: str = "sgd"  # sgd (with momentum) or adamw
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9  # SGD momentum (AdamW: beta1)
    nesterov: bool = False  # Nesterov momentum for SGD
    weight_decay: float = 5e-4  # decoupled for AdamW, L2 for SGD; never on norms and biases
    schedule: str = "cosine"  # cosine or constant
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    seed: int = 0  # seeds init, order and augmentation: same seed, same run
    device: str = "auto"  # auto (cuda if available), cpu, cuda
    precision: str = "auto"  # auto, fp32, bf16 or fp16 (autocast)
    channels_last: bool | None = None  # None: chosen with the precision
    eval_batch_size: int = 1000  # examples per evaluation batch


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSection = field(default_factory=TrainSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, raw: dict) -> RunConfig:
        config = cls()
        for section, values in raw.items():
            if not hasattr(config, section):
                raise ConfigError(f"unknown config section {section!r}")
            for key, value in values.items():
                _set(config, f"{section}.{key}", value)
        return config

    def validate(self) -> RunConfig:
        t = self.train
        if t.epochs < 1:
            raise ConfigError(f"train.epochs must be at least 1, got {t.epochs}")
        if t.batch_size < 1:
            raise ConfigError(f"train.batch_size must be at least 1, got {t.batch_size}")
        if t.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {t.lr}")
        _choice("train.optimizer", t.optimizer, ("sgd", "adamw"))
        _choice("train.schedule", t.schedule, ("cosine", "constant"))
        _choice("train.precision", t.precision, ("auto", "fp32", "bf16", "fp16"))
        return self


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")


def _set(config: Any, dotted: str, value: Any) -> None:
    *path, key = dotted.split(".")
    target = config
    for part in path:
        if not dataclasses.is_dataclass(target) or not hasattr(target, part):
            raise ConfigError(f"unknown config key {dotted!r}")
        target = getattr(target, part)
    fields = {f.name: f for f in dataclasses.fields(target)} if dataclasses.is_dataclass(target) else {}
    if key not in fields:
        known = ", ".join(f"{'.'.join(path)}.{k}" for k in fields)
        raise ConfigError(f"unknown config key {dotted!r}; known keys: {known}")
    setattr(target, key, _coerce(dotted, value, getattr(target, key), str(fields[key].type)))


def _coerce(key: str, value: Any, current: Any, annotation: str) -> Any:
    """Convert ``value`` (often a string from the command line) to the field's type."""
    if not isinstance(value, str) or annotation == "str":
        return value
    if value.lower() in ("none", "null") and "None" in annotation:
        return None
    try:
        if "bool" in annotation:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return value.lower() in ("true", "1", "yes")
        if annotation.startswith("int"):
            return int(value)
        if annotation.startswith("float"):
            return float(value)
        if annotation.startswith("dict"):
            return json.loads(value)
    except ValueError:
        raise ConfigError(f"{key}={value!r} is not a valid {annotation}") from None
    return value


def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.key=value`` strings, checking keys and types."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. train.lr=0.05)")
        key, value = item.split("=", 1)
        _set(config, key.strip(), value.strip())
    return config
