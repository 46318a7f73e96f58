"""Freezing part of a network for transfer learning, and discriminative learning rates.

The course's recipe (deeplearning.ai's CNN course, week 2): keep the early layers, which compute
generic features, and train only what is specific to the new task. A *freeze policy* names what stays fixed:

* ``"none"``      — nothing: fine-tune every layer;
* ``"features"``  — everything but ``stages()["head"]`` (the backbone is a fixed feature extractor);
* ``"stageN"`` (or any name in ``stages()``, e.g. ``"stem"``) — that stage and every stage before it.

Frozen parameters get ``requires_grad = False``. Frozen BatchNorm layers additionally keep using
their running statistics and never update them, even under ``model.train()``: a forward pre-hook
puts each frozen BN module back into eval mode right before it runs (a frozen layer whose output
moved with every batch's statistics would not be frozen). :func:`freeze_bn_stats` does the same
for BN layers whose scale and shift still train (fine-tuning on few labels).
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cnnlab.errors import ConfigError

FREEZE_POLICIES = ("none", "features")  # plus any stage name of the model


def frozen_stage_names(model: nn.Module, policy: str) -> list[str]:
    """The names in ``model.stages()`` that ``policy`` freezes, in order."""
    names = list(model.stages())
    if policy == "none":
        return []
    if policy == "features":
        return [n for n in names if n != "head"]
    if policy not in names:
        raise ConfigError(f"unknown freeze policy {policy!r}; use none, features or a stage of "
                          f"{type(model).__name__}: {', '.join(n for n in names if n != 'head')}")
    if policy == "head":
        raise ConfigError("freezing up to 'head' would freeze the whole model; use --freeze features")
    return names[: names.index(policy) + 1]


def _keep_eval(module: nn.Module, args: tuple) -> None:
    module.train(False)  # runs before every forward: model.train() cannot switch it back on


def freeze(model: nn.Module, policy: str) -> list[str]:
    """Freeze the stages that ``policy`` names (in place); returns their names.

    Every parameter of a frozen stage gets ``requires_grad = False``; every BatchNorm in it is put
    in eval mode now and, through a forward pre-hook, before each of its forwards.
    """
    names = frozen_stage_names(model, policy)
    stages = model.stages()
    for name in names:
        for param in stages[name].parameters():
            param.requires_grad_(False)
        freeze_bn_stats(stages[name])
    return names


def freeze_bn_stats(model: nn.Module) -> nn.Module:
    """Keep every BatchNorm of ``model`` on its running statistics (eval mode, even under
    ``model.train()``), its scale and shift still trainable; returns the model.

    What fine-tuning on a few labels needs: batch statistics of a handful of target images differ
    from the source's, and with a slow running average (EfficientNet's momentum 0.01) the test-time
    statistics would not follow, so the network would train on one normalisation and be tested on
    another.
    """
    for module in model.modules():
        if isinstance(module, _BatchNorm) and not getattr(module, "_cnnlab_frozen", False):
            module.eval()
            module.register_forward_pre_hook(_keep_eval)
            module._cnnlab_frozen = True
    return model


def discriminative_groups(model: nn.Module, lr: float, backbone_lr_scale: float,
                          weight_decay: float) -> list[dict]:
    """Optimizer groups: the head at ``lr``, the trainable backbone at ``lr * backbone_lr_scale``.

    Within each part, weight decay applies to weights of convolutions and linear layers only
    (``ndim > 1``), never to norms and biases — the Trainer's rule. Frozen parameters are left out.
    """
    head_ids = {id(p) for p in model.stages()["head"].parameters()}
    groups = []
    for part_lr, in_head in ((lr * backbone_lr_scale, False), (lr, True)):
        params = [p for p in model.parameters() if p.requires_grad and (id(p) in head_ids) == in_head]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups += [dict(params=decay, weight_decay=weight_decay, lr=part_lr),
                   dict(params=no_decay, weight_decay=0.0, lr=part_lr)]
    return [g for g in groups if g["params"]]
