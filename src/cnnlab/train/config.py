"""Run configuration: typed dataclasses, saved as ``config.json`` in every run directory.

Sections: ``model``, ``data``, ``train``, ``augment``. A run directory's config is enough to
resume or to rebuild the model (``RunConfig.from_dict(json.load(...))``). Dotted overrides such
as ``train.lr=0.05`` are checked against the field types (:func:`apply_overrides`); a YAML or
JSON file with the same sections loads with :meth:`RunConfig.from_file`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
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
    name: str = "fashion-mnist"  # fashion-mnist, mnist, digits, or imagefolder (data_dir: root)
    data_dir: str | None = None  # where to look first (else CNNLAB_DATA, cache, Debian)
    download: bool = True  # try the official source when the files are nowhere on disk
    image_size: int = 64  # imagefolder: images are resized (short side) and centre-cropped to this
    workers: int = 2  # imagefolder: DataLoader worker processes decoding files
    prefetch: int = 2  # batches prepared ahead by the background producer (0 = none)
    labels_per_class: int = 0  # train on a seeded, class-balanced subset of this many per class (0 = all)
    subset_seed: int = 0  # seed of that subset, apart from train.seed: every run sees the same images


@dataclass
class TrainSection:
    epochs: int = 8  # passes over the training set
    batch_size: int = 128  # examples per optimizer step (global: summed over DDP processes)
    optimizer: str = "sgd"  # sgd (with momentum) or adamw
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9  # SGD momentum (AdamW: beta1)
    nesterov: bool = False  # Nesterov momentum for SGD
    weight_decay: float = 5e-4  # decoupled for AdamW, L2 for SGD; never on norms and biases
    schedule: str = "cosine"  # cosine, onecycle (linear up, linear down), step or constant
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr (onecycle: the rising part)
    step_epochs: list = field(default_factory=list)  # step schedule: epochs where lr *= step_gamma
    step_gamma: float = 0.1  # step schedule: factor at each of step_epochs
    final_lr_fraction: float = 0.0  # cosine/onecycle end at lr * this
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    grad_clip: float = 0.0  # clip the global gradient norm to this (0 = off)
    ema_decay: float = 0.0  # exponential moving average of the weights (0 = off); evaluated and saved
    early_stop_patience: int = 0  # stop after this many evaluations without a better test accuracy (0 = off)
    tta_flip: bool = False  # evaluate on the mean logits of the image and its mirror
    seed: int = 0  # seeds init, order and augmentation: same seed, same run
    device: str = "auto"  # auto (cuda if available), cpu, cuda
    precision: str = "auto"  # auto (measured on CPU), fp32, bf16 or fp16 (autocast)
    channels_last: bool | None = None  # None: chosen with the precision
    compile: bool = False  # torch.compile the model
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    deterministic: bool = False  # torch.use_deterministic_algorithms, fp32: bitwise repeatable
    checkpoint_every: int = 0  # also checkpoint every N optimizer steps (0 = once per epoch)
    eval_batch_size: int = 1000  # examples per evaluation batch
    eval_every: int = 1  # evaluate every N epochs and after the last (test columns empty between)
    tensorboard: bool = True  # write TensorBoard scalars when tensorboard is installed
    plot: bool = True  # draw curves.png in the run directory after each epoch


@dataclass
class AugmentConfig:
    """Batched, per-sample augmentation on the device (:mod:`cnnlab.data.augment`)."""

    crop_pad: int = 0  # random crop after padding each side by this many pixels (0 = off)
    pad_mode: str = "zeros"  # zeros or reflect
    flip: float = 0.0  # probability of a horizontal flip
    rotate: float = 0.0  # max rotation in degrees, uniform in [-rotate, rotate]
    translate: float = 0.0  # max shift as a fraction of the size, uniform per axis
    erase: float = 0.0  # probability of random erasing (Zhong et al. 2020)
    erase_area: list = field(default_factory=lambda: [0.02, 0.25])  # erased fraction of the area
    brightness: float = 0.0  # colour jitter: factor uniform in [1 - b, 1 + b]
    contrast: float = 0.0  # colour jitter: blend with the image mean, factor in [1 - c, 1 + c]
    saturation: float = 0.0  # colour jitter (RGB): blend with the grey image, factor in [1 - s, 1 + s]
    pca_lighting: float = 0.0  # AlexNet PCA colour noise: alpha ~ N(0, this); 0.1 in the paper (RGB)
    mixup: float = 0.0  # mixup Beta(a, a) parameter (0 = off)
    cutmix: float = 0.0  # cutmix Beta(a, a) parameter (0 = off); with mixup, one of the two per batch

    def enabled(self) -> bool:
        return any(getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name not in ("pad_mode", "erase_area"))


SCHEDULES = ("cosine", "onecycle", "step", "constant")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSection = field(default_factory=TrainSection)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, raw: dict, base: RunConfig | None = None) -> RunConfig:
        """A config from nested ``{section: {key: value}}``; missing keys keep their defaults."""
        config = base or cls()
        for section, values in raw.items():
            if not hasattr(config, section) or not isinstance(values, dict):
                raise ConfigError(f"unknown config section {section!r}; sections are "
                                  f"{', '.join(f.name for f in dataclasses.fields(cls))}")
            for key, value in values.items():
                _set(config, f"{section}.{key}", value)
        return config

    @classmethod
    def from_file(cls, path: str | Path, base: RunConfig | None = None) -> RunConfig:
        """Load a YAML (``.yaml``/``.yml``) or JSON file with the same sections as config.json."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise ConfigError(f"cannot read config file {str(path)!r}: {err.strerror}") from None
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                raw = yaml.safe_load(text) or {}
            else:
                raw = json.loads(text)
        except Exception as err:  # yaml.YAMLError or json.JSONDecodeError
            raise ConfigError(f"{path} is not valid {path.suffix[1:].upper() or 'JSON'}: {err}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of sections (model, data, train, augment)")
        return cls.from_dict(raw, base)

    def validate(self) -> RunConfig:
        t, a = self.train, self.augment
        if t.epochs < 1:
            raise ConfigError(f"train.epochs must be at least 1, got {t.epochs}")
        if t.batch_size < 1:
            raise ConfigError(f"train.batch_size must be at least 1, got {t.batch_size}")
        if self.data.labels_per_class < 0:
            raise ConfigError(f"data.labels_per_class must be 0 (all) or a positive number, got "
                              f"{self.data.labels_per_class}")
        if t.eval_every < 1:
            raise ConfigError(f"train.eval_every must be at least 1 (1: every epoch), got {t.eval_every}")
        if t.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {t.lr}")
        if not 0 <= t.ema_decay < 1:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
        _choice("train.optimizer", t.optimizer, ("sgd", "adamw"))
        _choice("train.schedule", t.schedule, SCHEDULES)
        _choice("train.precision", t.precision, ("auto", "fp32", "bf16", "fp16"))
        _choice("augment.pad_mode", a.pad_mode, ("zeros", "reflect"))
        for key in ("flip", "erase"):
            if not 0 <= getattr(a, key) <= 1:
                raise ConfigError(f"augment.{key} is a probability in [0, 1], got {getattr(a, key)}")
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
        if isinstance(value, int) and not isinstance(value, bool) and annotation.startswith("float"):
            return float(value)
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
        if annotation.startswith("list"):
            text = value if value.startswith("[") else f"[{value}]"
            return json.loads(text)
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
