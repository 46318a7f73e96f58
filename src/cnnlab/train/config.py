"""Run configuration: typed dataclasses, saved as ``config.json`` in every run directory.

Sections: ``model``, ``data``, ``train``, ``augment``; each field has a type and a one-line
comment (the comment is the help text of its command-line flag and of ``--set``). A run
directory's config is enough to resume or to rebuild the model
(``RunConfig.from_dict(json.load(...))``); a YAML or JSON file with the same sections loads with
:meth:`RunConfig.from_file`.

Every value enters through one door, :func:`apply_overrides` (``from_dict`` and ``from_file`` use
it too): typed values (from argparse, Python, YAML) are checked against the field's type, strings
(``--set train.lr=0.05``) are parsed as that type (:func:`cnnlab.train.values.coerce`) — ``ture``
is not a bool, ``2.5`` not an int, ``nan`` not a learning rate. :meth:`RunConfig.validate` then
checks every field's choices and range (:data:`CHOICES`, :data:`RANGES`), which the CLI's flags and
the lab's settings share.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import json
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.data.imagefolder import BAD_IMAGE_CHOICES, IN_MEMORY_CHOICES
from cnnlab.errors import ConfigError
from cnnlab.train.values import Range, coerce


@dataclass
class ModelConfig:
    name: str = "lenet5"  # registry name (cnnlab models)
    num_classes: int | None = None  # None: the data set's number of classes
    in_chans: int | None = None  # None: the data set's channels
    input_size: int | None = None  # None: the data set's image size
    options: dict = field(default_factory=dict)  # family options passed to create_model
    registry: bool = True  # False: a model passed to the Trainer in Python; name is then its class

    def create_kwargs(self) -> dict:
        """Keyword arguments for ``create_model`` (``name`` included)."""
        if not self.registry:
            raise ConfigError(f"{self.name} is a model that was passed to the Trainer in Python, "
                              f"not a registry model: build it in Python and load its weights "
                              f"with cnnlab.train.checkpoint.load_weights(model, RUN/model.safetensors)")
        return dict(name=self.name, num_classes=self.num_classes, in_chans=self.in_chans,
                    input_size=self.input_size, **self.options)


@dataclass
class DataConfig:
    name: str = "fashion-mnist"  # a data set of cnnlab.data.DATASET_NAMES (imagefolder: data_dir is its root)
    data_dir: str | None = None  # searched first for the data files (then CNNLAB_DATA, cache, Debian)
    download: bool = True  # try the official source when the files are nowhere on disk
    image_size: int = 64  # imagefolder: side of the square images the network gets (crops: docs/training.md)
    workers: int = 2  # imagefolder: DataLoader worker processes decoding files
    prefetch: int = 2  # batches prepared ahead by the background producer (0 = none)
    labels_per_class: int = 0  # train on a seeded, class-balanced subset of this many per class (0 = all)
    subset_seed: int = 0  # seed of that subset and of val_fraction's hold-out, apart from train.seed
    in_memory: str = "auto"  # imagefolder: true (decode once), false (stream files), auto (true if it fits)
    memory_budget_gb: float = 4.0  # imagefolder, in_memory=auto: the most a decoded split may hold
    val_fraction: float = 0.1  # imagefolder without test/: fraction of each train/ class held out
    bad_images: str = "error"  # imagefolder: error (stop at an unreadable file) or skip (leave it out)

    def loader_kwargs(self) -> dict:
        """Keyword arguments of :func:`cnnlab.data.load_dataset` for this data: the one place
        that says how a run's data is read, for training and for every reload of the run."""
        return dict(data_dir=self.data_dir, download=self.download, image_size=self.image_size,
                    workers=self.workers, in_memory=self.in_memory,
                    memory_budget_gb=self.memory_budget_gb, val_fraction=self.val_fraction,
                    split_seed=self.subset_seed, bad_images=self.bad_images)


@dataclass
class TrainSection:
    epochs: int = 8  # passes over the training set
    batch_size: int = 128  # examples per optimizer step (global: summed over DDP processes)
    optimizer: str = "sgd"  # sgd (with momentum) or adamw
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9  # SGD momentum (AdamW: beta1)
    nesterov: bool = False  # Nesterov momentum for SGD
    weight_decay: float = 5e-4  # decoupled for AdamW, L2 for SGD; never on norms and biases
    bias_lr_scale: float = 1.0  # norms and biases learn at lr times this (airbench: 64)
    schedule: str = "cosine"  # cosine, onecycle (linear up, linear down), step or constant
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr (onecycle: the rising part)
    step_epochs: list[float] = field(default_factory=list)  # step schedule: epochs where lr *= step_gamma
    step_gamma: float = 0.1  # step schedule: factor at each of step_epochs
    final_lr_fraction: float = 0.0  # cosine/onecycle end at lr * this
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    grad_clip: float = 0.0  # clip the global gradient norm to this (0 = off)
    ema_decay: float = 0.0  # exponential moving average of the weights (0 = off); evaluated and saved
    lookahead_every: int = 0  # every N steps pull the weights toward a slow copy, used at the end (0 = off)
    lookahead_decay: float = 0.7738  # lookahead: peak decay of the slow copy, reached as (step/total)^3
    early_stop_patience: int = 0  # stop after this many evaluations without a better test accuracy (0 = off)
    tta_flip: bool = False  # evaluate with flip TTA: mean probabilities of the image and its mirror
    tta_shift: bool = False  # with tta_flip: also the 1-pixel shifted views and their mirrors (flip_shift)
    seed: int = 0  # seeds init, order and augmentation: same seed, same run
    device: str = "auto"  # auto (cuda if available), cpu, cuda
    precision: str = "auto"  # auto (measured on CPU), fp32, bf16 or fp16 (autocast)
    channels_last: bool | None = None  # channels_last memory format (None: chosen with the precision)
    compile: bool = False  # torch.compile the model
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    deterministic: bool = False  # torch.use_deterministic_algorithms, fp32: bitwise repeatable
    checkpoint_every: int = 0  # also checkpoint every N optimizer steps (0 = once per epoch)
    eval_batch_size: int = 1000  # examples per evaluation batch
    eval_every: int = 1  # evaluate every N epochs and after the last (test columns empty between)
    tensorboard: bool = True  # write TensorBoard scalars when tensorboard is installed
    plot: bool = True  # draw curves.png in the run directory after each epoch

    def tta_mode(self) -> str:
        """The test-time views of the run's evaluations (:mod:`cnnlab.evaluate.tta`):
        ``flip_shift`` with ``tta_flip`` and ``tta_shift``, ``flip`` with ``tta_flip``, else ``none``."""
        return ("flip_shift" if self.tta_shift else "flip") if self.tta_flip else "none"


@dataclass
class AugmentConfig:
    """Batched, per-sample augmentation on the device (:mod:`cnnlab.data.augment`)."""

    crop_pad: int = 0  # random crop after padding each side by this many pixels (0 = off)
    pad_mode: str = "zeros"  # zeros or reflect
    flip: float = 0.0  # probability of a horizontal flip
    flip_mode: str = "random"  # random (drawn every epoch) or alternate (drawn once, then every other epoch)
    rotate: float = 0.0  # max rotation in degrees, uniform in [-rotate, rotate]
    translate: float = 0.0  # max shift as a fraction of the size, uniform per axis
    scale: float = 0.0  # zoom: content scaled by a factor uniform in [1 - scale, 1 + scale]
    erase: float = 0.0  # probability of random erasing (Zhong et al. 2020)
    erase_area: list[float] = field(default_factory=lambda: [0.02, 0.25])  # erased area: [min, max] fraction
    brightness: float = 0.0  # colour jitter: factor uniform in [1 - b, 1 + b]
    contrast: float = 0.0  # colour jitter: blend with the image mean, factor in [1 - c, 1 + c]
    saturation: float = 0.0  # colour jitter (RGB): blend with the grey image, factor in [1 - s, 1 + s]
    pca_lighting: float = 0.0  # AlexNet PCA colour noise: alpha ~ N(0, this); 0.1 in the paper (RGB)
    mixup: float = 0.0  # mixup Beta(a, a) parameter (0 = off)
    cutmix: float = 0.0  # cutmix Beta(a, a) parameter (0 = off); with mixup, one of the two per batch

    def active(self) -> list[str]:
        """The augmentations that are on, as ``augment.key=value`` (the keys that only qualify
        another one, ``pad_mode``, ``erase_area`` and ``flip_mode``, are not augmentations)."""
        return [f"augment.{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                if f.name not in ("pad_mode", "erase_area", "flip_mode") and getattr(self, f.name)]

    def enabled(self) -> bool:
        return bool(self.active())


OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "onecycle", "step", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PAD_MODES = ("zeros", "reflect")
FLIP_MODES = ("random", "alternate")
# The keys whose value is one of a list: validate() checks them, the CLI's flags offer them.
CHOICES = {"train.optimizer": OPTIMIZERS, "train.schedule": SCHEDULES,
           "train.precision": PRECISIONS, "augment.pad_mode": PAD_MODES,
           "augment.flip_mode": FLIP_MODES,
           "data.in_memory": IN_MEMORY_CHOICES, "data.bad_images": BAD_IMAGE_CHOICES}


POSITIVE, NON_NEGATIVE, PROBABILITY, FRACTION = Range(0, low_open=True), Range(0), Range(0, 1), \
    Range(0, 1, high_open=True)
# The allowed range of every numeric key (None values — "use the default" — are always allowed).
RANGES = {
    "model.num_classes": Range(1), "model.in_chans": Range(1), "model.input_size": Range(1),
    "data.image_size": Range(1), "data.workers": NON_NEGATIVE, "data.prefetch": NON_NEGATIVE,
    "data.labels_per_class": NON_NEGATIVE, "data.memory_budget_gb": POSITIVE,
    "data.val_fraction": FRACTION, "train.epochs": Range(1), "train.batch_size": Range(1),
    "train.lr": POSITIVE, "train.momentum": FRACTION, "train.weight_decay": NON_NEGATIVE,
    "train.bias_lr_scale": POSITIVE,
    "train.warmup_epochs": NON_NEGATIVE, "train.step_epochs": NON_NEGATIVE,
    "train.step_gamma": POSITIVE, "train.final_lr_fraction": PROBABILITY,
    "train.label_smoothing": FRACTION, "train.grad_clip": NON_NEGATIVE, "train.ema_decay": FRACTION,
    "train.lookahead_every": NON_NEGATIVE, "train.lookahead_decay": PROBABILITY,
    "train.early_stop_patience": NON_NEGATIVE, "train.threads": Range(1),
    "train.checkpoint_every": NON_NEGATIVE, "train.eval_batch_size": Range(1),
    "train.eval_every": Range(1), "augment.crop_pad": NON_NEGATIVE, "augment.flip": PROBABILITY,
    "augment.rotate": Range(0, 180), "augment.translate": PROBABILITY, "augment.erase": PROBABILITY,
    "augment.erase_area": Range(0, 1, low_open=True), "augment.brightness": PROBABILITY,
    "augment.contrast": PROBABILITY, "augment.saturation": PROBABILITY,
    "augment.pca_lighting": NON_NEGATIVE, "augment.mixup": NON_NEGATIVE,
    "augment.cutmix": NON_NEGATIVE,
    "augment.scale": FRACTION,
}


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
        sections = ", ".join(f.name for f in dataclasses.fields(cls))
        if not isinstance(raw, dict):
            raise ConfigError(f"a config is a mapping of sections ({sections}), got {raw!r}")
        for section, values in raw.items():
            if not hasattr(config, section) or not isinstance(values, dict):
                raise ConfigError(f"unknown config section {section!r}; sections are {sections}"
                                  if not hasattr(config, section) else
                                  f"config section {section!r} must map keys to values, "
                                  f"got {values!r}")
            apply_overrides(config, {f"{section}.{key}": value for key, value in values.items()})
        return config

    @classmethod
    def from_file(cls, path: str | Path, base: RunConfig | None = None) -> RunConfig:
        """Load a YAML (``.yaml``/``.yml``) or JSON file with the same sections as config.json."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise ConfigError(f"cannot read config file {str(path)!r}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not a text file (YAML or JSON); give the config file, "
                              f"e.g. one printed by `cnnlab train ... --show`") from None
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                raw = yaml.safe_load(text) or {}
            else:
                raw = json.loads(text)
        except Exception as err:  # yaml.YAMLError or json.JSONDecodeError
            mark = getattr(err, "problem_mark", None)  # YAML: where, apart from its 4-line text
            reason = str(err).splitlines()[0] if mark is None else (
                f"{getattr(err, 'problem', None) or str(err).splitlines()[0]} "
                f"(line {mark.line + 1}, column {mark.column + 1})")
            raise ConfigError(f"{path} is not valid {path.suffix[1:].upper() or 'JSON'}: "
                              f"{reason}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of sections (model, data, train, augment)")
        return cls.from_dict(raw, base)

    def validate(self) -> RunConfig:
        """Check every key's choices and range, and the rules between keys; returns ``self``."""
        for key, value in flatten(self).items():
            check_value(key, value)
        low, high = self.augment.erase_area if len(self.augment.erase_area) == 2 else (1, 0)
        if not low <= high:
            raise ConfigError(f"augment.erase_area must be two fractions [min, max] with "
                              f"min <= max, got {self.augment.erase_area}")
        if self.train.tta_shift and not self.train.tta_flip:
            raise ConfigError("train.tta_shift adds shifted views to flip TTA: set "
                              "train.tta_flip=true too, or drop train.tta_shift")
        if self.model.registry:  # option names and types, before any data loads
            from cnnlab.models.registry import check_model_options

            check_model_options(self.model.name, self.model.options)
        return self

    def check_data(self, train_set, test_set, builds_model: bool = True) -> None:
        """The rules between this config and its data, checked once the data is loaded and before
        a model is built or a file written: both splits hold images of one size, the training
        split is not empty, and ``model.in_chans`` (when given, and the model is built from this
        config) is the data's number of channels."""
        where = f"{self.data.name}" + (f" in {self.data.data_dir!r}" if self.data.data_dir else "")
        for split, dataset in (("training", train_set), ("test", test_set)):
            if len(dataset) == 0:
                raise ConfigError(f"the {split} split of {where} has no images; give a data set "
                                  f"with images in both splits")
        train_shape, test_shape = tuple(train_set.image_shape), tuple(test_set.image_shape)
        if train_shape[1:] != test_shape[1:]:
            raise ConfigError(f"the training and test splits of {where} differ in image size: "
                              f"{'x'.join(map(str, train_shape[1:]))} against "
                              f"{'x'.join(map(str, test_shape[1:]))}; give both splits images "
                              f"of one size")
        chans, given = train_shape[0], self.model.in_chans
        if builds_model and given is not None and given != chans:
            raise ConfigError(f"model.in_chans={given} but the images of {where} have {chans} "
                              f"channel{'s' if chans != 1 else ''}; drop model.in_chans (it "
                              f"defaults to the data's) or set it to {chans}")

    def resolve(self, num_classes: int, in_chans: int, input_size: int) -> RunConfig:
        """A copy with the model's ``None`` sizes taken from the data (``self`` is unchanged)."""
        resolved = copy.deepcopy(self)
        m = resolved.model
        m.num_classes = num_classes if m.num_classes is None else m.num_classes  # 0: refused
        m.in_chans = in_chans if m.in_chans is None else m.in_chans  # by validate(), not "the
        m.input_size = input_size if m.input_size is None else m.input_size  # data's"
        return resolved


def flatten(config: RunConfig) -> dict[str, Any]:
    """``{"train.lr": 0.05, ...}``: every key of ``config`` with its value."""
    return {f"{s.name}.{f.name}": getattr(getattr(config, s.name), f.name)
            for s in dataclasses.fields(config) for f in dataclasses.fields(getattr(config, s.name))}


def check_value(key: str, value: Any) -> None:
    """Raise :class:`ConfigError` when ``value`` is not among ``key``'s choices or in its range."""
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{key} must be one of {', '.join(CHOICES[key])}, got {value!r}")
    allowed = RANGES.get(key)
    if allowed is None or value is None:
        return
    for v in value if isinstance(value, list) else [value]:
        if not allowed.contains(v):
            raise ConfigError(f"{key} must be {allowed}, got {v}")


# ---- types, comments and defaults of the fields (for the flags and help texts) ---------------

SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainSection,
            "augment": AugmentConfig}


@functools.cache
def field_types(section: str) -> dict[str, Any]:
    """The resolved type annotation of each field of ``section``."""
    return typing.get_type_hints(SECTIONS[section])


@functools.cache
def field_comments(section: str) -> dict[str, str]:
    """The one-line comment after each field of ``section``, read from the source."""
    comments = {}
    for line in inspect.getsource(SECTIONS[section]).splitlines():
        name, _, rest = line.strip().partition(":")
        if "#" in rest and name.isidentifier():
            comments[name] = rest.split("#", 1)[1].strip()
    return comments


def field_type(key: str) -> Any:
    """The type of the dotted ``key`` (``"train.lr"`` -> ``float``); unknown keys are refused."""
    section, _, name = key.partition(".")
    if section not in SECTIONS:
        raise ConfigError(f"unknown config key {key!r}: sections are {', '.join(SECTIONS)} "
                          f"(e.g. train.lr=0.05)")
    types_ = field_types(section)
    if not name:
        raise ConfigError(f"{section} is a config section: set one of its keys, e.g. "
                          f"{section}.{next(iter(types_))}=...")
    if name not in types_:
        raise ConfigError(f"unknown config key {key!r}; {section} keys: {', '.join(types_)}")
    return types_[name]


def apply_overrides(config: RunConfig, overrides: Mapping[str, Any] | Iterable[str]) -> RunConfig:
    """Set dotted keys of ``config`` (in place; returns it), checking keys and types.

    ``overrides`` is a mapping ``{"train.lr": 0.05}`` of typed values (flags, Python, a parsed
    file) or strings, or ``section.key=value`` strings as ``--set`` gives them. Values are
    converted by :func:`coerce`; choices and ranges are checked by :meth:`RunConfig.validate`.
    """
    if not isinstance(overrides, Mapping):
        pairs = {}
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like section.key=value "
                                  f"(e.g. train.lr=0.05)")
            key, value = item.split("=", 1)
            pairs[key.strip()] = value
        overrides = pairs
    for key, value in overrides.items():
        kind = field_type(key)
        section, _, name = key.partition(".")
        setattr(getattr(config, section), name, coerce(key, value, kind))
    return config
