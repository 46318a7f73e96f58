"""Named training recipes: a documented config (model + augmentation + schedule) per goal.

``cnnlab train --recipe NAME --show`` prints the resolved config; any flag, ``--config`` file or
``--set`` given with the recipe overrides it. The network and budget follow the CIFAR speed-run
literature (Page 2018, "How to train your ResNet"; Jordan 2024, airbench): a shallow, wide,
batch-normalised net (``fastnet_*``), bf16 + channels_last on CPUs that have it, large batches with
Nesterov SGD and a one-cycle (linear warm-up, linear decay) schedule, and airbench's techniques,
each an option of the model, the Trainer or the augmenter (:data:`AIRBENCH_MODEL`; docs/training.md,
"Speed-run techniques"); ``benchmarks/bench_time_to_accuracy.py --ablate`` removes them in turn.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.errors import ConfigError
from cnnlab.train.config import RunConfig


@dataclass(frozen=True)
class Recipe:
    name: str
    goal: str  # what the recipe is for, with the target it was designed to meet
    settings: dict  # {section: {key: value}} applied on top of the defaults


# airbench's techniques as cnnlab options (Jordan 2024, arXiv:2404.00498; docs/training.md):
# frozen 2x2 whitening stem with its bias trained for the first epochs, dirac init, BatchNorm
# with only the bias trained and torch momentum 0.4 (airbench's 0.6), logits scaled by 1/9,
# label smoothing 0.2, lookahead every 5 steps, alternating flips, mirror + shift TTA.
AIRBENCH_MODEL = dict(whiten=True, whiten_bias_epochs=3, dirac=True, bn_weight=False,
                      bn_momentum=0.4, logit_scale=1 / 9)

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("fmnist-fast", "Fashion-MNIST >= 94% test accuracy in <= 60 s on a 2-core CPU", dict(
        model=dict(name="fastnet_s", options=dict(AIRBENCH_MODEL)),
        data=dict(name="fashion-mnist"),
        # one epoch: the budget's size on a 2-core AVX2 CPU in fp32 (900-1,350 training img/s).
        # Measured there (1 epoch, 2026-12-01, load < 2): batch 512 89.98% in 79 s, batch 256
        # 90.97% in 81 s, batch 128 91.20% in 83 s, lr 0.4 at 256 90.65%; without the airbench
        # model options 88.37% in 131 s (the 24-channel 3x3 stem at 28x28 costs more than the
        # whitening's 8 channels at 27x27); 4 epochs with shift TTA 93.17% in 301 s. Without the
        # 1-pixel crop: 91.55% (seeds 0, 1, 2: 91.55, 91.55, 91.31%); with `auto` taking fp32
        # channels_last, 91.47% in 63 s (idle)
        train=dict(epochs=1, batch_size=256, optimizer="sgd", lr=0.8, momentum=0.85,
                   nesterov=True, weight_decay=5e-4, bias_lr_scale=32.0, schedule="onecycle",
                   warmup_epochs=0.5, label_smoothing=0.2, lookahead_every=5, tta_flip=True,
                   eval_batch_size=256),  # fastnet_s evaluates 1.5x faster at 256 than at 2,000
        augment=dict(flip=0.5, flip_mode="alternate"),  # crop_pad=1 cost 0.58 points (ablation)
    )),
    Recipe("fmnist-best", "Fashion-MNIST >= 95.5% test accuracy in <= 15 minutes on a 2-core CPU",
           dict(
        model=dict(name="fastnet_s", options=dict(AIRBENCH_MODEL)),
        data=dict(name="fashion-mnist"),
        # twelve epochs of fastnet_s: what 15 minutes hold on a 2-core AVX2 CPU in fp32 (fastnet_m
        # trains at a quarter of the speed: 4 epochs). Measured there (2026-12-01, idle, fp32
        # channels_last): 94.39% in 704 s (92.31% at epoch 8); the old recipe (fastnet_m, 14
        # epochs, no airbench options) scored 95.02% in 23 min on a faster CPU
        train=dict(epochs=12, batch_size=256, optimizer="sgd", lr=0.8, momentum=0.85,
                   nesterov=True, weight_decay=5e-4, bias_lr_scale=32.0, schedule="onecycle",
                   warmup_epochs=1.0, label_smoothing=0.2, lookahead_every=5, tta_flip=True,
                   tta_shift=True, eval_batch_size=256, eval_every=4),
        augment=dict(crop_pad=2, flip=0.5, flip_mode="alternate"),
    )),
)}


def recipe_config(name: str) -> RunConfig:
    """The :class:`RunConfig` of recipe ``name``."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; recipes: {', '.join(RECIPES)}")
    return RunConfig.from_dict(RECIPES[name].settings)
