"""The training loop: data, model, precision, optimizer, checkpoints, per-epoch evaluation.

One ``Trainer`` trains one model and writes the run directory described in
:mod:`cnnlab.train.checkpoint` after every epoch (and every ``train.checkpoint_every`` steps).
Seeded: the same config gives the same run; with ``train.deterministic`` bitwise so, also
across a kill and ``resume``. Under ``torchrun`` it trains data-parallel (:mod:`.distributed`).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from cnnlab.data.augment import Augmenter, rgb_eigen
from cnnlab.data.datasets import InMemoryDataset, labels_per_class, load_dataset
from cnnlab.data.loader import InMemoryLoader
from cnnlab.device import Precision, cpu_supports_bf16, measure_cpu_precision, resolve_precision
from cnnlab.errors import ConfigError
from cnnlab.evaluate.metrics import evaluate_model
from cnnlab.models import create_model
from cnnlab.train import distributed
from cnnlab.train import resume as checkpointing
from cnnlab.train.callbacks import RunLog
from cnnlab.train.checkpoint import atomic_write_text
from cnnlab.train.config import RunConfig
from cnnlab.train.optim import EMA, build_optimizer, build_scheduler, lr_factor, param_groups

__all__ = ["Trainer", "train", "lr_factor", "param_groups", "build_optimizer", "TrainingDiverged"]


# Weight of each auxiliary classifier's loss ("weighted by 0.3", Szegedy et al. 2015, Sec. 5).
AUX_LOSS_WEIGHT = 0.3


class TrainingDiverged(ConfigError):
    """The loss became NaN or infinite; the run directory keeps the last good checkpoint."""


class FlipTTA(nn.Module):
    """Test-time augmentation: the mean logits of an image and its horizontal mirror."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.model(x) + self.model(x.flip(-1)))


class Trainer:
    """Train ``config.model`` on ``config.data`` and write the run to ``out``.

    Args:
        config: the run configuration (saved as ``config.json``).
        out: the run directory.
        train_set / test_set: data to use instead of loading ``config.data`` (tests, the lab).
        model: a ready model to train instead of ``create_model(config.model)`` (transfer).
        groups: optimizer parameter groups instead of the default decay / no-decay split
            (e.g. discriminative learning rates: a smaller ``lr`` for the backbone).
        progress: show a live progress bar (loss, accuracy, images/s, ETA).
        log: where to print one-line messages (None: silent).
        resume: continue from ``out/state.pt`` (written by an earlier, interrupted run).
    """

    def __init__(self, config: RunConfig, out: str | Path, train_set: InMemoryDataset | None = None,
                 test_set: InMemoryDataset | None = None, progress: bool = True, log=print,
                 model: nn.Module | None = None, groups: list[dict] | None = None,
                 resume: bool = False) -> None:
        self.config = config.validate()
        t, d, m = config.train, config.data, config.model
        self.out = Path(out)
        device = resolve_precision(t.device, "fp32").device
        self.dist = distributed.init_distributed(device.type)
        self.progress = progress and self.dist.is_main
        self.log = (log if self.dist.is_main else None) or (lambda *_: None)
        if t.threads:
            torch.set_num_threads(t.threads)
        if t.deterministic:
            torch.use_deterministic_algorithms(True)
        source = (d.data_dir, d.download, d.image_size, d.workers)
        if train_set is None:  # a given train_set is used as it is (transfer subsets its own)
            train_set = load_dataset(d.name, "train", *source)
            if d.labels_per_class:
                train_set = labels_per_class(train_set, d.labels_per_class, d.subset_seed)
        self.train_set = train_set
        self.test_set = test_set or load_dataset(d.name, "test", *source)
        m.num_classes = m.num_classes or self.train_set.num_classes
        m.in_chans = m.in_chans or self.train_set.image_shape[0]
        m.input_size = m.input_size or self.train_set.image_shape[-1]
        torch.manual_seed(t.seed)
        model = model if model is not None else create_model(**m.create_kwargs())
        if t.batch_size % self.dist.world_size:
            raise ConfigError(f"train.batch_size={t.batch_size} must be divisible by the "
                              f"{self.dist.world_size} processes")
        self.loader = InMemoryLoader(
            self.train_set, t.batch_size, shuffle=True, device=device, prefetch=d.prefetch,
            transform=self._augmenter(), seed=t.seed, rank=self.dist.rank,
            world_size=self.dist.world_size)
        self.precision = self._choose_precision(model, device)
        self.model = model.to(self.precision.device)
        if self.precision.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, config, groups)
        self.scheduler = build_scheduler(self.optimizer, config, len(self.loader))
        self.scaler = torch.amp.GradScaler(enabled=self.precision.name == "fp16")
        self.ema = EMA(self.model, t.ema_decay) if t.ema_decay > 0 else None
        self.step_model = self.model
        if self.dist.enabled:
            ids = [self.dist.local_rank] if device.type == "cuda" else None
            self.step_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if t.compile:
            self.step_model = torch.compile(self.step_model)
        self.history: list[dict] = []
        self.best_acc, self.bad_epochs = -1.0, 0
        self.start_epoch, self.start_step, self.partial, self.elapsed0 = 1, 0, None, 0.0
        if resume:
            path = self.out / "state.pt"
            if not path.is_file():
                raise ConfigError(f"nothing to resume in {self.out}: no state.pt (the run has not "
                                  f"written a checkpoint yet); start it again without --resume")
            state = checkpointing.load_checkpoint(self, path)
            self.start_epoch, self.start_step = state["epoch"] + 1, state["step"]
            self.partial, self.elapsed0 = state["partial"], float(state["elapsed"])

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and saved: the EMA when on, else the model."""
        return self.ema.module if self.ema is not None else self.model

    def _augmenter(self) -> Augmenter | None:
        a, ds = self.config.augment, self.train_set
        if not a.enabled():
            return None
        eigen = rgb_eigen(ds.images) if a.pca_lighting and ds.image_shape[0] == 3 else None
        return Augmenter(a, ds.mean, ds.std, ds.num_classes, eigen)

    def _choose_precision(self, model: nn.Module, device: torch.device) -> Precision:
        """``auto`` on a CPU with bf16 kernels: time both paths on a real batch, keep the faster."""
        t = self.config.train
        if t.deterministic:
            return Precision(device, "fp32", False)
        if t.precision != "auto" or device.type != "cpu" or not cpu_supports_bf16():
            return resolve_precision(device, t.precision, t.channels_last)
        self.loader.set_epoch(0)
        images, labels = next(iter(InMemoryLoader(self.train_set, min(t.batch_size, 128),
                                                  prefetch=0)))
        chosen, times = measure_cpu_precision(model, images, labels.view(-1))
        if distributed.broadcast_flag(chosen.name == "bf16", self.dist) != (chosen.name == "bf16"):
            chosen = resolve_precision(device, "fp32" if chosen.name == "bf16" else "bf16")  # rank 0's
        self.log("precision auto: " + ", ".join(f"{k} {1e3 * v:.0f} ms/step" for k, v in times.items())
                 + f" -> {chosen.name}")
        return chosen

    def loss(self, outputs, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the logits; with side classifiers (GoogLeNet in training mode returns
        (logits, aux2, aux1)) plus AUX_LOSS_WEIGHT times the cross-entropy of each."""
        smoothing = self.config.train.label_smoothing
        logits, *aux = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=smoothing)
        for side in (a for a in aux if a is not None):
            loss = loss + AUX_LOSS_WEIGHT * F.cross_entropy(side.float(), targets,
                                                            label_smoothing=smoothing)
        return loss

    def train_epoch(self, epoch: int) -> tuple[float, float, float]:
        """One pass over this process's shard; returns (mean loss, accuracy, images/s), all ranks."""
        self.model.train()
        t, dev = self.config.train, self.precision.device
        start_step, self.start_step = (self.start_step, 0) if epoch == self.start_epoch else (0, 0)
        sums = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, seen
        if self.partial is not None and start_step:
            sums += torch.tensor([self.partial["loss"], self.partial["correct"], self.partial["seen"]],
                                 dtype=torch.float64)
        self.partial = None
        local = torch.zeros(2, device=dev, dtype=torch.float64)
        seen_now, start = 0, time.perf_counter()
        self.loader.set_epoch(epoch, start_step)
        bar = tqdm(total=len(self.loader), initial=start_step, desc=f"epoch {epoch}/{t.epochs}",
                   unit="batch", leave=False, dynamic_ncols=True,
                   disable=None if self.progress else True)  # None: off when not a terminal
        for step, (images, targets) in enumerate(self.loader, start=start_step):
            images = self.precision.format(images)
            with self.precision.autocast():
                outputs = self.step_model(images)
            logits = outputs if isinstance(outputs, torch.Tensor) else outputs[0]
            loss = self.loss(outputs, targets)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"the training loss became {loss.item()} at epoch {epoch} step {step}; lower the "
                    f"learning rate (train.lr={t.lr}) or clip gradients (train.grad_clip) — the last "
                    f"good checkpoint is kept in {self.out}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if t.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            labels = targets.argmax(1) if targets.ndim == 2 else targets
            local += torch.stack([loss.detach().double() * len(labels),
                                  (logits.argmax(1) == labels).sum().double()])
            seen_now += len(labels)
            bar.update()
            if self.progress and step % 10 == 0:
                loss_sum, correct = local.tolist()
                rate = seen_now * self.dist.world_size / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{loss_sum / seen_now:.3f}", acc=f"{correct / seen_now:.3f}",
                                img_s=f"{rate:,.0f}")
            if t.checkpoint_every and (step + 1) % t.checkpoint_every == 0 and step + 1 < len(self.loader):
                partial = distributed.all_reduce_sum(
                    torch.tensor([*local.tolist(), seen_now], dtype=torch.float64), self.dist) + sums
                checkpointing.save_checkpoint(self, epoch - 1, step + 1, dict(zip(
                    ("loss", "correct", "seen"), partial.tolist())), self._elapsed())
        bar.close()
        rate = seen_now * self.dist.world_size / (time.perf_counter() - start)
        total = distributed.all_reduce_sum(torch.tensor([*local.tolist(), seen_now],
                                                        dtype=torch.float64), self.dist) + sums
        loss_sum, correct, seen = total.tolist()
        return loss_sum / seen, correct / seen, rate

    def _elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self._t0

    def evaluate(self):
        """Loss, accuracy and confusion of :attr:`eval_model` on the test set (flip TTA if asked)."""
        model = FlipTTA(self.eval_model) if self.config.train.tta_flip else self.eval_model
        return evaluate_model(model, self.test_set, self.config.train.eval_batch_size, self.precision)

    def fit(self) -> list[dict]:
        """Train for ``train.epochs`` epochs, evaluating and checkpointing after each."""
        t = self.config.train
        self._t0 = time.perf_counter()
        runlog = None
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.json", self.config.to_json())
            runlog = RunLog(self.out, t.tensorboard, t.plot)
        procs = f" · {self.dist.world_size} processes" if self.dist.enabled else ""
        self.log(f"training {self.config.model.name} on {self.config.data.name} "
                 f"({len(self.train_set):,} images) for {t.epochs} epochs · "
                 f"{self.precision.describe()}{procs} · {torch.get_num_threads()} threads")
        if self.start_epoch > 1 or self.start_step:
            self.log(f"resuming at epoch {self.start_epoch}, step {self.start_step}")
        try:
            for epoch in range(self.start_epoch, t.epochs + 1):
                if self._run_epoch(epoch, runlog):
                    self.log(f"early stop: no better test accuracy for {t.early_stop_patience} epochs")
                    break
        finally:
            if runlog is not None:
                runlog.close()
        return self.history

    def _run_epoch(self, epoch: int, runlog: RunLog | None) -> bool:
        """Train, evaluate, checkpoint one epoch; returns True when early stopping says stop."""
        t = self.config.train
        group = self.optimizer.param_groups[0]  # the lr at the epoch's first step, even if resumed
        lr = group["initial_lr"] * self.scheduler.lr_lambdas[0]((epoch - 1) * len(self.loader))
        train_loss, train_acc, rate = self.train_epoch(epoch)
        result = self.evaluate() if epoch % t.eval_every == 0 or epoch == t.epochs else None
        row = dict(epoch=epoch, train_loss=round(train_loss, 5), train_acc=round(train_acc, 5),
                   test_loss=None, test_acc=None, lr=f"{lr:.6g}", images_per_s=round(rate, 1),
                   elapsed_s=round(self._elapsed(), 2))
        tested = ""
        if result is not None:
            row.update(test_loss=round(result.loss, 5), test_acc=round(result.accuracy, 5))
            improved = result.accuracy > self.best_acc
            self.best_acc, self.bad_epochs = (max(self.best_acc, result.accuracy),
                                              0 if improved else self.bad_epochs + 1)
            tested = f"test loss {result.loss:.4f} acc {result.accuracy:.2%}  "
        self.history.append(row)
        checkpointing.save_checkpoint(self, epoch, 0, None, self._elapsed())
        if runlog is not None:
            runlog.epoch_end(self.history)
        self.log(f"epoch {epoch:>3}/{t.epochs}  train loss {train_loss:.4f} acc {train_acc:.2%}  "
                 f"{tested}{rate:,.0f} img/s  {row['elapsed_s']:.0f}s")
        stop = (result is not None and bool(t.early_stop_patience)
                and self.bad_epochs >= t.early_stop_patience)
        return distributed.broadcast_flag(stop, self.dist)


def train(config: RunConfig, out: str | Path, **kwargs) -> Trainer:
    """Build a :class:`Trainer` and run it; returns the trainer (model, history)."""
    trainer = Trainer(config, out, **kwargs)
    try:
        trainer.fit()
    finally:
        distributed.cleanup(trainer.dist)
    return trainer

