"""The training loop: optimizer, schedule, mixed precision, per-epoch evaluation, run directory.

One ``Trainer`` trains one model on an in-memory data set and writes the run directory described
in :mod:`cnnlab.train.checkpoint` after every epoch. Seeded: the same config gives the same run.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from cnnlab.data.datasets import InMemoryDataset, load_dataset
from cnnlab.data.loader import InMemoryLoader
from cnnlab.device import resolve_precision
from cnnlab.errors import ConfigError
from cnnlab.evaluate.metrics import evaluate_model
from cnnlab.models import create_model
from cnnlab.train.checkpoint import atomic_write_text, save_state, save_weights, write_metrics
from cnnlab.train.config import RunConfig


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the peak lr: linear warm-up, then cosine from 1 to 0 (or constant 1)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights of convolutions and linear layers only — not on norms and biases."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


def build_optimizer(model: nn.Module, config: RunConfig,
                    groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """SGD or AdamW over ``groups`` (default: :func:`param_groups`); a group's own ``lr`` wins."""
    t = config.train
    groups = groups if groups is not None else param_groups(model, t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov)
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.momentum, 0.999))


class Trainer:
    """Train ``config.model`` on ``config.data`` and write the run to ``out``.

    Args:
        config: the run configuration (saved as ``config.json``).
        out: the run directory.
        train_set / test_set: data to use instead of loading ``config.data`` (tests, the lab).
        model: a ready model to train instead of ``create_model(config.model)`` (transfer).
        groups: optimizer parameter groups instead of the default decay / no-decay split
            (e.g. discriminative learning rates: a smaller ``lr`` for the backbone).
        progress: show a live progress bar.
        log: where to print one-line messages (None: silent).
    """

    def __init__(self, config: RunConfig, out: str | Path, train_set: InMemoryDataset | None = None,
                 test_set: InMemoryDataset | None = None, progress: bool = True, log=print,
                 model: nn.Module | None = None, groups: list[dict] | None = None) -> None:
        self.config = config.validate()
        self.out = Path(out)
        self.progress = progress
        self.log = log or (lambda *_: None)
        d = config.data
        self.train_set = train_set or load_dataset(d.name, "train", d.data_dir, d.download)
        self.test_set = test_set or load_dataset(d.name, "test", d.data_dir, d.download)
        m = config.model
        m.num_classes = m.num_classes or self.train_set.num_classes
        m.in_chans = m.in_chans or self.train_set.image_shape[0]
        m.input_size = m.input_size or self.train_set.image_shape[-1]
        t = config.train
        self.precision = resolve_precision(t.device, t.precision, t.channels_last)
        torch.manual_seed(t.seed)
        model = model if model is not None else create_model(**m.create_kwargs())
        self.model = model.to(self.precision.device)
        if self.precision.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, config, groups)
        self.generator = torch.Generator().manual_seed(t.seed)
        self.loader = InMemoryLoader(self.train_set, t.batch_size, shuffle=True,
                                     generator=self.generator, device=self.precision.device)
        total = t.epochs * len(self.loader)
        warmup = round(t.warmup_epochs * len(self.loader))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, total, warmup, t.schedule))
        self.scaler = torch.amp.GradScaler(enabled=self.precision.name == "fp16")
        self.history: list[dict] = []

    def train_epoch(self, epoch: int) -> tuple[float, float, float]:
        """One pass over the training set; returns (mean loss, accuracy, images/s)."""
        self.model.train()
        t = self.config.train
        loss_sum = torch.zeros((), device=self.precision.device)
        correct = torch.zeros((), device=self.precision.device, dtype=torch.long)
        seen = 0
        start = time.perf_counter()
        bar = tqdm(self.loader, desc=f"epoch {epoch}/{t.epochs}", unit="batch", leave=False,
                   disable=not self.progress, dynamic_ncols=True)
        for step, (images, labels) in enumerate(bar):
            if self.precision.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with self.precision.autocast():
                logits = self.model(images)
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=t.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            loss_sum += loss.detach() * len(labels)
            correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
            if self.progress and step % 20 == 0:
                rate = seen / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}",
                                acc=f"{correct.item() / seen:.3f}", img_s=f"{rate:,.0f}")
        bar.close()
        mean_loss = loss_sum.item() / seen
        if not math.isfinite(mean_loss):
            raise ConfigError(f"the training loss became {mean_loss} in epoch {epoch}; lower the "
                              f"learning rate (train.lr={t.lr}) — the last good weights are in {self.out}")
        return mean_loss, correct.item() / seen, seen / (time.perf_counter() - start)

    def fit(self) -> list[dict]:
        """Train for ``train.epochs`` epochs, evaluating and checkpointing after each."""
        t = self.config.train
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "config.json", self.config.to_json())
        self.log(f"training {self.config.model.name} on {self.config.data.name} "
                 f"({len(self.train_set):,} images) for {t.epochs} epochs · {self.precision.describe()}")
        start = time.perf_counter()
        for epoch in range(1, t.epochs + 1):
            lr = self.optimizer.param_groups[0]["lr"]
            train_loss, train_acc, rate = self.train_epoch(epoch)
            result = evaluate_model(self.model, self.test_set, t.eval_batch_size, self.precision)
            row = dict(epoch=epoch, train_loss=round(train_loss, 5), train_acc=round(train_acc, 5),
                       test_loss=round(result.loss, 5), test_acc=round(result.accuracy, 5),
                       lr=f"{lr:.6g}", images_per_s=round(rate, 1),
                       elapsed_s=round(time.perf_counter() - start, 2))
            self.history.append(row)
            save_weights(self.model, self.out / "model.safetensors")
            save_state(dict(epoch=epoch, optimizer=self.optimizer.state_dict(),
                            scheduler=self.scheduler.state_dict()), self.out / "state.pt")
            write_metrics(self.out / "metrics.csv", self.history)
            self.log(f"epoch {epoch:>3}/{t.epochs}  train loss {train_loss:.4f} acc {train_acc:.2%}  "
                     f"test loss {result.loss:.4f} acc {result.accuracy:.2%}  "
                     f"{rate:,.0f} img/s  {row['elapsed_s']:.0f}s")
        return self.history


def train(config: RunConfig, out: str | Path, **kwargs) -> Trainer:
    """Build a :class:`Trainer` and run it; returns the trainer (model, history)."""
    trainer = Trainer(config, out, **kwargs)
    trainer.fit()
    return trainer
