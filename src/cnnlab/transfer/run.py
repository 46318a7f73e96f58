"""A transfer run: new head, freeze policy, then fine-tuning or head training on cached features.

:func:`transfer` writes an ordinary run directory (``config.json``, ``metrics.csv``,
``model.safetensors`` — loadable with :func:`cnnlab.train.load_run_model`) plus
``transfer.json``: the source, the freeze policy and the :class:`TargetSpec` (class selection,
resize, channels) that evaluation and prediction must apply to their images too.

* Without a cache, the :class:`~cnnlab.train.Trainer` fine-tunes the model with discriminative
  learning rates: the head at ``lr``, the unfrozen backbone at ``lr * backbone_lr_scale``.
* With ``cache_features`` (needs ``freeze="features"``), the backbone runs once per split
  (:mod:`cnnlab.transfer.cache`) and the Trainer trains only the head, on the cache
  (:mod:`.head`): the same metrics.csv, checkpoints and resume as any run.

Either way one Trainer writes the run; ``transfer.json`` (with the cache's point and precision)
is written once, before training starts, so :func:`resume_transfer` can continue a killed run
from its run directory alone, on the same cache.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from cnnlab.data.datasets import cache_dir as user_cache_dir
from cnnlab.data.loader import normalize
from cnnlab.device import Precision, measure_cpu_inference, resolve_precision
from cnnlab.errors import ConfigError
from cnnlab.evaluate.tta import TTA_MODES
from cnnlab.models import create_model
from cnnlab.models.loading import load_checked
from cnnlab.train.checkpoint import (
    MISFIT_FIX,
    TRANSFER_FILE,
    RunFinished,
    atomic_write_text,
    finished_message,
    load_checkpoint,
    load_run_config,
    read_json,
    repair_run,
)
from cnnlab.train.config import ModelConfig, RunConfig, apply_overrides
from cnnlab.train.trainer import Trainer
from cnnlab.transfer.cache import cached_features
from cnnlab.transfer.data import TargetSpec
from cnnlab.transfer.freeze import discriminative_groups, freeze, freeze_bn_stats
from cnnlab.transfer.head import FeatureDataset, split_for_cache

_RESUME_KEYS = ("source", "source_model", "freeze", "backbone_lr_scale", "cache_features",
                "cache_views", "target")  # what transfer() writes and resume_transfer() reads


def read_record(run_dir: str | Path, keys: tuple[str, ...] = ("target",)) -> dict | None:
    """The one reader of a run's ``transfer.json``: its record (holding ``keys``, a valid target
    among them), None for an ordinary run, or one :class:`ConfigError` naming the file."""
    path = Path(run_dir) / TRANSFER_FILE
    if not path.is_file():
        return None
    record = read_json(path)
    lacking = [k for k in keys if not isinstance(record, dict) or k not in record]
    if not lacking:
        try:
            TargetSpec.from_dict(record["target"])
            return record
        except (TypeError, ValueError):
            lacking = ["target"]
    raise ConfigError(f"{path} is not the record `cnnlab transfer` writes (no valid "
                      f"{', '.join(lacking)}); restore it from a copy, or run the transfer again")


def read_target(run_dir: str | Path) -> TargetSpec | None:
    """The :class:`TargetSpec` of a transfer run directory, or None for an ordinary run."""
    record = read_record(run_dir)
    return None if record is None else TargetSpec.from_dict(record["target"])


def read_transfer(run_dir: str | Path) -> dict | None:
    """The ``transfer.json`` record of a transfer run (source, freeze policy and frozen stages,
    cache point and files, target), or None for an ordinary run."""
    path = Path(run_dir) / TRANSFER_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def freeze_as_trained(run_dir: str | Path, model: nn.Module) -> list[str]:
    """Freeze ``model`` (loaded from ``run_dir``) as its transfer run trained it, so that a
    summary counts its frozen parameters; returns the frozen stages (none for an ordinary run)."""
    record = read_transfer(run_dir)
    return freeze(model, record["freeze"]) if record else []


def run_test_spec(run_dir: str | Path, config: RunConfig, data_dir: str | None = None) -> TargetSpec:
    """How to load a run's evaluation data: its transfer target, else its config's data set
    read as training read it (the whole data section: an image folder's size, streaming,
    hold-out)."""
    target = read_target(run_dir) or TargetSpec(config.data.name, data_dir=config.data.data_dir,
                                                options=data_options(config))
    if data_dir:
        target.data_dir = data_dir
    return target


def data_options(config: RunConfig) -> dict:
    """The run's ``load_dataset`` keywords other than where the files are."""
    options = config.data.loader_kwargs()
    del options["data_dir"], options["download"]
    return options


def refuse_feature_augmentation(config: RunConfig) -> None:
    """Raise if the run config asks for training augmentation, which cached features cannot see."""
    augment = getattr(config, "augment", None)
    if augment is None or not augment.enabled():
        return
    active = ", ".join(augment.active())
    raise ConfigError(
        f"{active}: training augmentation changes the frozen features every epoch, so a feature "
        f"cache computed once cannot reproduce it. Drop the augmentation, cache fixed augmented "
        f"views instead (--cache-views flip or 10crop), or fine-tune without --cache-features")


def transfer(model: nn.Module, source: ModelConfig, target: TargetSpec, config: RunConfig,
             out: str | Path, freeze_policy: str = "features", backbone_lr_scale: float = 0.1,
             cache_features: bool = False, cache_dir: str | Path | None = None,
             cache_views: str = "none", source_name: str = "", progress: bool = True,
             log=print, resume: bool = False, bn_stats_frozen: bool = False,
             overwrite: bool = False) -> list[dict]:
    """Transfer ``model`` to ``target`` and write the run to ``out``; returns the metrics rows.

    Args:
        model: the source network (its weights are the starting point).
        source: the source's model config (name, in_chans, input_size, options).
        target: the new task's data (class selection; size and channels default to the source's).
        config: the training recipe (``train`` section; ``model``/``data`` are filled in here;
            ``data.labels_per_class`` trains on a seeded, class-balanced subset of the target).
        freeze_policy: ``none``, ``features`` or a stage name (:mod:`cnnlab.transfer.freeze`).
        backbone_lr_scale: backbone lr = ``train.lr * backbone_lr_scale`` (fine-tuning only).
        cache_features: train the head on cached backbone outputs (needs ``features``).
        cache_dir: where cache files live (default ``~/.cache/cnnlab/features``).
        cache_views: fixed augmented views to cache (``none``, ``flip``, ``5crop``, ``10crop``).
        resume: continue the interrupted run in ``out`` (see :func:`resume_transfer`).
        bn_stats_frozen: every BatchNorm keeps its running statistics while the rest trains
            (:func:`~cnnlab.transfer.freeze.freeze_bn_stats`; fine-tuning on few labels).
        overwrite: replace the run in ``out`` once the target data are loaded and the model
            built (only the files cnnlab writes: :func:`cnnlab.train.checkpoint.clear_run`).
    """
    if cache_views not in TTA_MODES:
        raise ConfigError(f"unknown --cache-views {cache_views!r}; use one of {', '.join(TTA_MODES)}")
    if cache_views != "none" and not cache_features:
        raise ConfigError("--cache-views only applies with --cache-features")
    if cache_features and freeze_policy != "features":
        raise ConfigError(f"--cache-features stores the output of the whole frozen backbone, so it "
                          f"needs --freeze features (got --freeze {freeze_policy})")
    if cache_features and config.train.tta_flip:
        raise ConfigError("train.tta_flip mirrors test images, which cached features cannot do; "
                          "drop it, or fine-tune without --cache-features")
    if not 0 <= backbone_lr_scale:
        raise ConfigError(f"--backbone-lr-scale must be >= 0, got {backbone_lr_scale}")
    if cache_features:
        refuse_feature_augmentation(config)
    target = dataclasses.replace(target, size=target.size or source.input_size,
                                 in_chans=target.in_chans or source.in_chans,
                                 options={**data_options(config), **(target.options or {})})
    if target.data_dir:  # absolute: a resume from another folder reads the same files
        target.data_dir = str(Path(target.data_dir).expanduser().resolve())
    train_set = target.load("train", labels_per_class=config.data.labels_per_class,
                            subset_seed=config.data.subset_seed)
    test_set = target.load("test")
    if cache_features and not hasattr(train_set, "images"):
        raise ConfigError("--cache-features runs the backbone once over images held in memory, but "
                          "this image folder streams from its files: set data.in_memory=true (or a "
                          "larger data.memory_budget_gb), or fine-tune without --cache-features")
    if not resume:
        torch.manual_seed(config.train.seed)  # the new head's initial weights: same seed, same run
        model.reset_classifier(train_set.num_classes)
    frozen = freeze(model, freeze_policy)
    if bn_stats_frozen:
        freeze_bn_stats(model)
    config = copy.deepcopy(config)  # the caller's config is not written to
    config.model = dataclasses.replace(source, num_classes=train_set.num_classes,
                                       in_chans=target.in_chans, input_size=target.size)
    config.data.name, config.data.data_dir = target.name, target.data_dir
    out = Path(out)
    record = dict(source=source_name, source_model=dataclasses.asdict(source),
                  freeze=freeze_policy, frozen_stages=frozen, backbone_lr_scale=backbone_lr_scale,
                  bn_stats_frozen=bn_stats_frozen, cache_features=cache_features,
                  cache_views=cache_views,
                  cache_dir=str(cache_dir) if cache_dir else None, target=target.to_dict())
    log(f"transfer {source.name} from {source_name or 'weights'} to {target.name}"
        f"{' classes ' + ','.join(map(str, target.classes)) if target.classes else ''} "
        f"({train_set.num_classes} classes, {len(train_set):,} train / {len(test_set):,} test images); "
        f"frozen: {', '.join(frozen) or 'nothing'}")
    network, groups = model, None
    if cache_features:  # the backbone runs once; the Trainer trains the network from its cache
        precision = _recorded_precision(out, config) if resume else None
        precision = precision or cache_precision(model, train_set, config, log)
        model.to(precision.device)
        point, extract, network = split_for_cache(model)
        folder = Path(cache_dir) if cache_dir else user_cache_dir() / "features"
        transform = dict(point=point, target=target.to_dict())
        datasets, files = [], []
        for ds, views in ((train_set, cache_views), (test_set, "none")):
            feats, _ = cached_features(extract, model, ds, folder, transform, views, target.size,
                                       precision=precision, log=log, progress=progress, files=files)
            datasets.append(FeatureDataset(feats, ds.labels, ds.classes, ds.name))
        model.to("cpu")
        train_set, test_set = datasets
        record.update(cache_point=point, cache_files=[str(f) for f in files], cache_precision=dict(
            name=precision.name, channels_last=precision.channels_last))
    else:  # fine-tuning: discriminative learning rates
        groups = discriminative_groups(model, config.train.lr, backbone_lr_scale,
                                       config.train.weight_decay)
    trainer = Trainer(config, out, train_set, test_set, progress=progress, log=log, model=network,
                      groups=groups, resume=resume, overwrite=overwrite)
    atomic_write_text(out / TRANSFER_FILE, json.dumps(record, indent=2) + "\n")
    return trainer.fit()


def _recorded_precision(out: Path, config: RunConfig) -> Precision | None:
    """The feature cache's precision recorded in ``out/transfer.json`` (resuming: the same cache)."""
    record = read_record(out)
    recorded = record.get("cache_precision") if record else None
    if not recorded:
        return None
    device = resolve_precision(config.train.device, "fp32").device
    return Precision(device, recorded["name"], bool(recorded["channels_last"]))


def cache_precision(model: nn.Module, dataset, config: RunConfig, log=print) -> Precision:
    """The numeric path of the frozen backbone: ``train.precision`` as given, or for ``auto`` on a
    CPU the fastest forward pass measured on a batch of the target's images (fp32 NCHW, fp32
    channels_last, bf16 where oneDNN has it: :func:`~cnnlab.device.measure_cpu_inference`)."""
    t = config.train
    precision = resolve_precision(t.device, "fp32" if t.deterministic else t.precision,
                                  t.channels_last)
    if t.precision != "auto" or t.deterministic or t.channels_last is not None \
            or precision.device.type != "cpu":
        return precision
    images = normalize(dataset.images[:16], dataset.mean, dataset.std)
    chosen, times = measure_cpu_inference(model, images)
    log("feature cache precision auto: " + ", ".join(f"{k} {1e3 * v / len(images):.0f} ms/image"
                                                      for k, v in times.items())
        + f" -> {chosen.describe()}")
    return chosen


def resume_transfer(run_dir: str | Path, progress: bool = True, log=print,
                    overrides=()) -> list[dict]:
    """Continue an interrupted transfer run from its last checkpoint (``state.pt``).

    The network is rebuilt from the run's ``config.json`` and takes the checkpoint's weights, so the
    source is not needed again; a feature cache is found by the same key (the frozen weights did
    not change) and the Trainer resumes at the step where the run stopped. ``overrides``: config
    changes (each a mapping or ``--set`` strings, :func:`~cnnlab.train.apply_overrides`), e.g.
    more epochs or a smaller learning rate. A finished run raises
    :class:`~cnnlab.train.checkpoint.RunFinished` before any data is loaded.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    for changes in overrides:
        apply_overrides(config, changes)
    config.validate()
    record_path = run_dir / TRANSFER_FILE
    if not record_path.is_file():
        raise ConfigError(f"{run_dir} is not a transfer run (no {TRANSFER_FILE}); resume an "
                          f"ordinary run with `cnnlab train --resume {run_dir}`")
    state = load_checkpoint(run_dir)
    repair_run(run_dir, state)
    message = finished_message(run_dir, state, config.train.epochs, "transfer")
    if message:
        raise RunFinished(message)
    record = read_record(run_dir, _RESUME_KEYS)
    model = create_model(**config.model.create_kwargs())
    load_checked(model, state["model"], f"the weights in {str(run_dir / 'state.pt')!r}",
                 fix=MISFIT_FIX)  # the frozen weights the cache key saw
    return transfer(model, ModelConfig(**record["source_model"]),
                    TargetSpec.from_dict(record["target"]), config, run_dir, record["freeze"],
                    record["backbone_lr_scale"], record["cache_features"], record.get("cache_dir"),
                    record["cache_views"], record["source"], progress, log, resume=True,
                    bn_stats_frozen=record.get("bn_stats_frozen", False))
