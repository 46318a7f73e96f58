"""Transfer learning: load a trained network, replace its head, freeze, cache frozen features."""

from cnnlab.transfer.cache import cache_key, cached_features, frozen_weights_hash, load_features
from cnnlab.transfer.data import TargetSpec, parse_classes, resize_images, select_classes, to_channels
from cnnlab.transfer.freeze import (
    FREEZE_POLICIES,
    discriminative_groups,
    freeze,
    freeze_bn_stats,
    frozen_stage_names,
)
from cnnlab.transfer.head import CachedHead, FeatureDataset, split_for_cache
from cnnlab.transfer.run import (
    freeze_as_trained,
    read_target,
    read_transfer,
    resume_transfer,
    run_test_spec,
    transfer,
)
from cnnlab.transfer.source import load_source, pretrained_source

__all__ = ["CachedHead", "FREEZE_POLICIES", "FeatureDataset", "TargetSpec", "cache_key",
           "cached_features", "discriminative_groups", "freeze", "freeze_as_trained",
           "freeze_bn_stats", "frozen_stage_names", "frozen_weights_hash", "load_features",
           "load_source", "parse_classes", "pretrained_source", "read_target", "read_transfer",
           "resize_images", "resume_transfer", "run_test_spec", "select_classes",
           "split_for_cache", "to_channels", "transfer"]
