"""Optimizers, learning-rate schedules and the weight EMA.

Weight decay is applied to convolution and linear weights only, never to norms and biases
("Bag of Tricks", He et al. 2019, Sec. 3.1). Schedules are one small function of the step.
"""

from __future__ import annotations

import bisect
import copy
import math

import torch
from torch import nn

from cnnlab.train.config import RunConfig


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str,
              milestones: list[int] | tuple[int, ...] = (), gamma: float = 0.1,
              final: float = 0.0) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based).

    * warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps;
    * cosine: ``final + (1 - final) * (1 + cos(pi * p)) / 2`` with p the progress after warm-up;
    * onecycle: linear from 1 down to ``final`` after the (linear) warm-up (Smith 2018);
    * step: ``gamma ** (number of milestones <= step)``;
    * constant: 1.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return final + (1 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "onecycle":
        return final + (1 - final) * (1.0 - progress)
    if schedule == "step":
        return gamma ** bisect.bisect_right(sorted(milestones), step)
    return 1.0


def lr_schedule(config: RunConfig, steps_per_epoch: int):
    """``factor(step)``: :func:`lr_factor` with the run's schedule over
    ``epochs * steps_per_epoch`` optimizer steps (the peak lr is ``train.lr``)."""
    t = config.train
    total = t.epochs * steps_per_epoch
    warmup = round(t.warmup_epochs * steps_per_epoch)
    milestones = [round(e * steps_per_epoch) for e in t.step_epochs]
    return lambda step: lr_factor(step, total, warmup, t.schedule, milestones, t.step_gamma,
                                  t.final_lr_fraction)


def build_scheduler(optimizer: torch.optim.Optimizer, config: RunConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following :func:`lr_schedule` (each group's lr times the same factor)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(config, steps_per_epoch))


def param_groups(model: nn.Module, weight_decay: float,
                 no_decay_lr: float | None = None) -> list[dict]:
    """Weight decay on weights of convolutions and linear layers only — not on norms and biases;
    ``no_decay_lr``: the norms' and biases' own learning rate (default: the optimizer's)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    own = {} if no_decay_lr is None else dict(lr=no_decay_lr)
    return [dict(params=decay, weight_decay=weight_decay),
            dict(params=no_decay, weight_decay=0.0, **own)]


def build_optimizer(model: nn.Module, config: RunConfig,
                    groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """SGD or AdamW over ``groups`` (default: :func:`param_groups`, the norms and biases at
    ``train.lr * train.bias_lr_scale``: airbench's ``bias_scaler`` of 64, Jordan 2024); a group's
    own ``lr`` wins."""
    t = config.train
    bias_lr = t.lr * t.bias_lr_scale if t.bias_lr_scale != 1 else None
    groups = groups if groups is not None else param_groups(model, t.weight_decay, bias_lr)
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov)
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.momentum, 0.999))


class EMA:
    """Exponential moving average of the weights: ``ema = d * ema + (1 - d) * w`` after each step.

    The decay is warmed up as ``min(d, (1 + n) / (10 + n))`` after n updates (as in TensorFlow's
    ExponentialMovingAverage with num_updates) so the average is not stuck at the initial weights.
    Buffers (BatchNorm running statistics) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for ema_b, b in zip(self.module.buffers(), model.buffers()):
            ema_b.copy_(b)

    def state_dict(self) -> dict:
        return dict(updates=self.updates, weights=self.module.state_dict())

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["weights"])


def lookahead_decay(step: int, total_steps: int, peak: float) -> float:
    """airbench's decay of the slow weights at optimizer step ``step`` (1-based):
    ``peak * (step / total_steps) ** 3`` — near 0 early (the slow copy follows the model), rising
    to ``peak`` at the end (airbench94: ``0.95 ** 5``, per update every 5 steps)."""
    return peak * (min(step, total_steps) / total_steps) ** 3


class Lookahead:
    """Lookahead-style weight averaging as in airbench (Jordan 2024, after hlb-CIFAR10 and Zhang
    et al. 2019, "Lookahead Optimizer"): every ``every`` optimizer steps

        slow = d * slow + (1 - d) * w;   w = slow       (d = :func:`lookahead_decay`)

    over every floating entry of the state dict (weights and BatchNorm running statistics), and
    after the last step ``w = slow``. Unlike :class:`EMA`, which keeps its average beside the
    model, the average is written back into the model, so training continues from it.
    """

    def __init__(self, model: nn.Module, every: int, total_steps: int, peak: float) -> None:
        self.every, self.total_steps, self.peak = every, total_steps, peak
        self.slow = {k: v.detach().clone() for k, v in model.state_dict().items()
                     if v.is_floating_point()}

    @torch.no_grad()
    def step(self, model: nn.Module, step: int) -> None:
        """After optimizer step ``step`` (1-based): update every ``every`` steps; at the last step
        copy the slow weights into the model."""
        if step >= self.total_steps:
            self._pull(model, 1.0)
        elif step % self.every == 0:
            self._pull(model, lookahead_decay(step, self.total_steps, self.peak))

    def _pull(self, model: nn.Module, decay: float) -> None:
        current = model.state_dict()
        for name, slow in self.slow.items():
            slow.lerp_(current[name].detach().to(slow.dtype), 1.0 - decay)
            current[name].copy_(slow)

    def state_dict(self) -> dict:
        return dict(slow={k: v.detach().to("cpu", copy=True) for k, v in self.slow.items()})

    def load_state_dict(self, state: dict) -> None:
        for name, value in state["slow"].items():
            self.slow[name].copy_(value)
