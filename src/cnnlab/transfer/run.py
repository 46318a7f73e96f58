"""A transfer run: new head, freeze policy, then fine-tuning or head training on cached features.

:func:`transfer` writes an ordinary run directory (``config.json``, ``metrics.csv``,
``model.safetensors`` — loadable with :func:`cnnlab.train.load_run_model`) plus
``transfer.json``: the source, the freeze policy and the :class:`TargetSpec` (class selection,
resize, channels) that evaluation and prediction must apply to their images too.

* Without a cache, the :class:`~cnnlab.train.Trainer` fine-tunes the model with discriminative
  learning rates: the head at ``lr``, the unfrozen backbone at ``lr * backbone_lr_scale``.
* With ``cache_features`` (needs ``freeze="features"``), the backbone runs once per split
  (:mod:`cnnlab.transfer.cache`) and only the head trains, on the cache (:mod:`.head`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from cnnlab.data.datasets import cache_dir as user_cache_dir
from cnnlab.device import resolve_precision
from cnnlab.errors import ConfigError
from cnnlab.evaluate.tta import TTA_MODES
from cnnlab.train.checkpoint import atomic_write_text, save_weights, write_metrics
from cnnlab.train.config import ModelConfig, RunConfig
from cnnlab.train.trainer import Trainer
from cnnlab.transfer.cache import cached_features
from cnnlab.transfer.data import TargetSpec
from cnnlab.transfer.freeze import discriminative_groups, freeze
from cnnlab.transfer.head import split_for_cache, train_head

TRANSFER_FILE = "transfer.json"


def read_target(run_dir: str | Path) -> TargetSpec | None:
    """The :class:`TargetSpec` of a transfer run directory, or None for an ordinary run."""
    path = Path(run_dir) / TRANSFER_FILE
    if not path.is_file():
        return None
    return TargetSpec.from_dict(json.loads(path.read_text())["target"])


def run_test_spec(run_dir: str | Path, config: RunConfig, data_dir: str | None = None) -> TargetSpec:
    """How to load a run's evaluation data: its transfer target, else its config's data set."""
    target = read_target(run_dir) or TargetSpec(config.data.name, data_dir=config.data.data_dir)
    if data_dir:
        target.data_dir = data_dir
    return target


def refuse_feature_augmentation(config: RunConfig) -> None:
    """Raise if the run config asks for training augmentation, which cached features cannot see."""
    augment = getattr(config, "augment", None)
    if augment is None or not augment.enabled():
        return
    active = ", ".join(f"augment.{f.name}={getattr(augment, f.name)}"
                       for f in dataclasses.fields(augment)
                       if f.name not in ("pad_mode", "erase_area") and getattr(augment, f.name))
    raise ConfigError(
        f"{active}: training augmentation changes the frozen features every epoch, so a feature "
        f"cache computed once cannot reproduce it. Drop the augmentation, cache fixed augmented "
        f"views instead (--cache-views flip or 10crop), or fine-tune without --cache-features")


def transfer(model: nn.Module, source: ModelConfig, target: TargetSpec, config: RunConfig,
             out: str | Path, freeze_policy: str = "features", backbone_lr_scale: float = 0.1,
             cache_features: bool = False, cache_dir: str | Path | None = None,
             cache_views: str = "none", source_name: str = "", progress: bool = True,
             log=print) -> list[dict]:
    """Transfer ``model`` to ``target`` and write the run to ``out``; returns the metrics rows.

    Args:
        model: the source network (its weights are the starting point).
        source: the source's model config (name, in_chans, input_size, options).
        target: the new task's data (class selection; size and channels default to the source's).
        config: the training recipe (``train`` section; ``model``/``data`` are filled in here).
        freeze_policy: ``none``, ``features`` or a stage name (:mod:`cnnlab.transfer.freeze`).
        backbone_lr_scale: backbone lr = ``train.lr * backbone_lr_scale`` (fine-tuning only).
        cache_features: train the head on cached backbone outputs (needs ``features``).
        cache_dir: where cache files live (default ``~/.cache/cnnlab/features``).
        cache_views: fixed augmented views to cache (``none``, ``flip``, ``5crop``, ``10crop``).
    """
    if cache_views not in TTA_MODES:
        raise ConfigError(f"unknown --cache-views {cache_views!r}; use one of {', '.join(TTA_MODES)}")
    if cache_views != "none" and not cache_features:
        raise ConfigError("--cache-views only applies with --cache-features")
    if cache_features and freeze_policy != "features":
        raise ConfigError(f"--cache-features stores the output of the whole frozen backbone, so it "
                          f"needs --freeze features (got --freeze {freeze_policy})")
    if not 0 <= backbone_lr_scale:
        raise ConfigError(f"--backbone-lr-scale must be >= 0, got {backbone_lr_scale}")
    target = dataclasses.replace(target, size=target.size or source.input_size,
                                 in_chans=target.in_chans or source.in_chans)
    train_set, test_set = target.load("train"), target.load("test")
    torch.manual_seed(config.train.seed)  # the new head's initial weights: same seed, same run
    model.reset_classifier(train_set.num_classes)
    frozen = freeze(model, freeze_policy)
    config.model = dataclasses.replace(source, num_classes=train_set.num_classes,
                                       in_chans=target.in_chans, input_size=target.size)
    config.data.name, config.data.data_dir = target.name, target.data_dir
    out = Path(out)
    record = dict(source=source_name, source_model=dataclasses.asdict(source),
                  freeze=freeze_policy, frozen_stages=frozen, backbone_lr_scale=backbone_lr_scale,
                  cache_features=cache_features, cache_views=cache_views, target=target.to_dict())
    log(f"transfer {source.name} from {source_name or 'weights'} to {target.name}"
        f"{' classes ' + ','.join(map(str, target.classes)) if target.classes else ''} "
        f"({train_set.num_classes} classes, {len(train_set):,} train / {len(test_set):,} test images); "
        f"frozen: {', '.join(frozen) or 'nothing'}")
    if not cache_features:
        groups = discriminative_groups(model, config.train.lr, backbone_lr_scale,
                                       config.train.weight_decay)
        trainer = Trainer(config, out, train_set, test_set, progress=progress, log=log,
                          model=model, groups=groups)
        history = trainer.fit()
        atomic_write_text(out / TRANSFER_FILE, json.dumps(record, indent=2) + "\n")
        return history
    refuse_feature_augmentation(config)
    t = config.train
    precision = resolve_precision(t.device, t.precision, t.channels_last)
    model.to(precision.device)
    point, extract, head = split_for_cache(model)
    folder = Path(cache_dir) if cache_dir else user_cache_dir() / "features"
    transform = dict(point=point, target=target.to_dict())
    feats = {}
    for split, ds, views in (("train", train_set, cache_views), ("test", test_set, "none")):
        feats[split], _ = cached_features(extract, model, ds, folder, transform, views,
                                          target.size, precision=precision, log=log)
    model.to("cpu")
    history = train_head(model, head, feats["train"], train_set.labels, feats["test"],
                         test_set.labels, config, log=log)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", config.to_json())
    save_weights(model, out / "model.safetensors")
    write_metrics(out / "metrics.csv", history)
    atomic_write_text(out / TRANSFER_FILE, json.dumps(dict(record, cache_point=point), indent=2) + "\n")
    return history
