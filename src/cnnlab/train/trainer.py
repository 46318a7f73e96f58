"""The training loop: data, model, precision, optimizer, checkpoints, per-epoch evaluation.

One ``Trainer`` trains one model and writes the run directory described in
:mod:`cnnlab.train.checkpoint` after every epoch (and every ``train.checkpoint_every`` steps).
It is the only loop that steps an optimizer in cnnlab: runs from the zoo, transfer runs and head
training on cached features all come through it. Seeded: the same config gives the same run; with
``train.deterministic`` bitwise so, also across a kill and ``resume``. Under ``torchrun`` it trains
data-parallel (:mod:`.distributed`).

The config it is given is never written to: the Trainer works on its own resolved copy
(:attr:`config`: the model's sizes from the data, the precision it measured, the description of a
model passed in) and saves that as ``config.json``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from cnnlab.data.augment import Augmenter, rgb_eigen
from cnnlab.data.datasets import InMemoryDataset, labels_per_class, load_dataset
from cnnlab.data.loader import InMemoryLoader, normalize
from cnnlab.device import Precision, cpu_candidates, measure_cpu_precision, resolve_precision
from cnnlab.evaluate.metrics import EvalResult, evaluate_model
from cnnlab.evaluate.tta import FlipTTA  # noqa: F401  (importable from here, its former home)
from cnnlab.models import create_model, list_models
from cnnlab.models.loading import load_checked
from cnnlab.text import plural
from cnnlab.train import distributed
from cnnlab.train.checkpoint import (
    MISFIT_FIX,
    DiskFullError,
    RunFinished,
    atomic_write_text,
    checkpoint_note,
    clear_run,
    describe_model,
    finished_message,
    load_checkpoint,
    repair_run,
    resume_command,
)
from cnnlab.train.config import RunConfig
from cnnlab.train.loss import LossFn, cross_entropy_loss, default_loss
from cnnlab.train.optim import (
    EMA,
    Lookahead,
    build_optimizer,
    build_scheduler,
    lr_factor,
    lr_schedule,
    param_groups,
)
from cnnlab.train.runlog import RunLog
from cnnlab.train.safety import (
    EXPLODED,
    CheckpointKeeper,
    StopSignals,
    TrainingDiverged,
    TrainingInterrupted,
    all_finite,
    reference_loss,
)

__all__ = ["Trainer", "train", "lr_factor", "param_groups", "build_optimizer", "TrainingDiverged",
           "TrainingInterrupted",
           "cross_entropy_loss", "describe_model"]

PROBE_REPEATS = 5  # timed steps of each precision that `precision auto` keeps the best of


class Trainer:
    """Train ``config.model`` on ``config.data`` and write the run to ``out``.

    Args:
        config: the run configuration; the Trainer resolves a copy of it (:attr:`config`) and
            saves that as ``config.json``.
        out: the run directory.
        train_set / test_set: data to use instead of loading ``config.data`` (tests, the lab,
            transfer, cached features).
        model: a ready model to train instead of ``create_model(config.model)`` (transfer, a
            network of your own: see :func:`describe_model`).
        groups: optimizer parameter groups instead of the default decay / no-decay split
            (e.g. discriminative learning rates: a smaller ``lr`` for the backbone).
        loss_fn: ``loss(outputs, targets) -> scalar`` instead of :func:`default_loss`.
        progress: show a live progress bar (loss, accuracy, images/s, ETA).
        log: where to print one-line messages (None: silent).
        resume: continue from ``out/state.pt`` (written by an earlier, interrupted run), with
            the precision that run resolved (never measured again); a run with nothing left to
            train raises :class:`~cnnlab.train.checkpoint.RunFinished` before any data is loaded.
        overwrite: replace the run in ``out`` — only once everything above is validated (config,
            data, model), and only the files cnnlab writes
            (:func:`~cnnlab.train.checkpoint.clear_run`).
    """

    def __init__(self, config: RunConfig, out: str | Path, train_set: InMemoryDataset | None = None,
                 test_set: InMemoryDataset | None = None, progress: bool = True, log=print,
                 model: nn.Module | None = None, groups: list[dict] | None = None,
                 resume: bool = False, loss_fn: LossFn | None = None,
                 overwrite: bool = False) -> None:
        config = copy.deepcopy(config)
        if model is not None and config.model.name not in list_models():
            config.model.registry = False  # the caller's own network: no zoo options to check
        config = config.validate()
        t, d = config.train, config.data
        self.out = Path(out)
        device = resolve_precision(t.device, "fp32").device
        self.dist = distributed.init_distributed(device.type)
        state = self._resume_state(t.epochs) if resume else None
        self.progress = progress and self.dist.is_main
        self.log = (log if self.dist.is_main else None) or (lambda *_: None)
        if t.threads:
            torch.set_num_threads(t.threads)
        if t.deterministic:
            torch.use_deterministic_algorithms(True)
        source = dict(d.loader_kwargs(), log=self.log)
        if train_set is None:  # a given train_set is used as it is (transfer subsets its own)
            train_set = load_dataset(d.name, "train", **source)
            if d.labels_per_class:
                train_set = labels_per_class(train_set, d.labels_per_class, d.subset_seed)
        self.train_set = train_set
        self.test_set = test_set or load_dataset(d.name, "test", **source)
        config.check_data(train_set, self.test_set, builds_model=model is None)
        config = config.resolve(train_set.num_classes, train_set.image_shape[0],
                                train_set.image_shape[-1])
        if d.data_dir:  # absolute: a resume from another folder reads the same files
            config.data.data_dir = str(Path(d.data_dir).expanduser().resolve())
        torch.manual_seed(t.seed)
        if model is None:
            model = create_model(**config.model.create_kwargs())
        else:
            config.model = describe_model(model, config.model)
        if state is None and callable(getattr(model, "init_from_data", None)):
            model.init_from_data(self._init_images())  # data-dependent init (e.g. whitening)
        distributed.check_world(t.batch_size, self.dist.world_size, device.type)
        self.loader = InMemoryLoader(
            self.train_set, t.batch_size, shuffle=True, device=device, prefetch=d.prefetch,
            transform=self._augmenter(config), seed=t.seed, rank=self.dist.rank,
            world_size=self.dist.world_size)
        self.probe: dict[str, float] = {}  # seconds per step that precision auto measured
        recorded = (state or {}).get("precision")
        if recorded and t.precision == "auto":  # resuming: the path the run resolved, no probe
            self.precision = Precision(device, recorded["name"], bool(recorded["channels_last"]))
            self.probe = dict(recorded.get("probe") or {})
        else:
            self.precision = self._choose_precision(model, device, config)
        config.train = dataclasses.replace(config.train, precision=self.precision.name,
                                           channels_last=self.precision.channels_last)
        self.config = config  # resolved: what config.json holds, what a resume reads back
        self.model = self.precision.prepare(model)
        self.loss_fn = loss_fn or default_loss(model, t.label_smoothing)
        self.optimizer = build_optimizer(self.model, config, groups)
        self.lr_at = lr_schedule(config, len(self.loader))  # factor of train.lr at each step
        self.scheduler = build_scheduler(self.optimizer, config, len(self.loader))
        self.scaler = torch.amp.GradScaler(enabled=self.precision.name == "fp16")
        self.ema = EMA(self.model, t.ema_decay) if t.ema_decay > 0 else None
        self.lookahead = (Lookahead(self.model, t.lookahead_every, t.epochs * len(self.loader),
                                    t.lookahead_decay) if t.lookahead_every > 0 else None)
        self.step_model = self.model
        if self.dist.enabled:
            ids = [self.dist.local_rank] if device.type == "cuda" else None
            # a model with per-epoch hooks may stop training a parameter (the whitening bias):
            # DDP then has to look for the parameters a step did not use
            unused = callable(getattr(self.model, "set_epoch", None))
            self.step_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=unused)
        if t.compile:
            self.step_model = torch.compile(self.step_model)
        self.history: list[dict] = []
        self.best_acc, self.bad_epochs = -1.0, 0
        # where the run stands: epochs done, steps done in the next one, its running sums
        self.epoch, self.step, self.partial, self.elapsed = 0, 0, None, 0.0
        self.first_loss: float | None = None  # the run's first training loss (explosion reference)
        self.stopped_early = False
        self._t0: float | None = None  # when fit() started
        self.keeper = CheckpointKeeper(self.out, self.dist.is_main)  # writes verified checkpoints
        self.signals = StopSignals(self.log, enabled=not self.dist.enabled)  # during fit()
        if state is not None:
            self.load_state_dict(state)
        if overwrite and self.dist.is_main:  # inputs validated: only now the old run goes
            clear_run(self.out)

    def _resume_state(self, epochs: int) -> dict:
        """``out/state.pt``, after tidying what a kill left (temp files, a metrics.csv behind the
        checkpoint's history); raises :class:`RunFinished` when no epoch is left to train."""
        state = load_checkpoint(self.out)
        if self.dist.is_main:
            repair_run(self.out, state)
        command = resume_command(self.out).split()[1]
        message = finished_message(self.out, state, epochs, command)
        if message:
            raise RunFinished(message)
        return state

    def _init_images(self, count: int = 5000) -> torch.Tensor:
        """The first ``count`` training images, normalised as the network sees them (float
        (N, C, H, W)): what a model's ``init_from_data`` is fitted to (airbench: 5000)."""
        ds = self.train_set
        images = ds.take(torch.arange(min(len(ds), count)))
        return normalize(images, ds.mean, ds.std) if images.dtype == torch.uint8 else images.float()

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and saved: the EMA when on, else the model."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def eval_tta(self) -> str:
        """The test-time views of every evaluation (:meth:`TrainSection.tta_mode`)."""
        return self.config.train.tta_mode()

    def state_dict(self) -> dict:
        """Everything needed to resume exactly, even from the middle of an epoch (``state.pt``):

        * ``epoch`` — epochs completed; ``step`` — optimizer steps done in the next epoch;
        * ``model`` — the raw training weights (``model.safetensors`` holds the EMA weights when
          EMA is on); ``optimizer``, ``scheduler``, ``scaler``, ``ema``, ``lookahead`` — their
          ``state_dict()``;
        * ``rng`` — torch's CPU (and CUDA) generator state, for dropout;
        * ``partial`` — the running loss/accuracy sums of the interrupted epoch;
        * ``history``, ``best_acc``, ``bad_epochs``, ``elapsed`` — rows and early-stopping state;
          ``stopped_early``, ``planned_epochs`` — whether it is finished;
        * ``precision`` — the numeric path (name, channels_last) and what ``auto`` measured, so a
          resume runs the same path without measuring again; ``first_loss`` — the explosion
          reference.

        The data order and augmentation need no state: the loader derives them from
        (seed, epoch, batch).
        """
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and self.precision.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        state = dict(epoch=self.epoch, step=self.step,
                     model={k: v.detach().to("cpu", copy=True)
                            for k, v in self.model.state_dict().items()},
                     optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                     scaler=self.scaler.state_dict(), rng=rng, partial=self.partial,
                     history=self.history, best_acc=self.best_acc, bad_epochs=self.bad_epochs,
                     elapsed=self._elapsed(), first_loss=self.first_loss,
                     stopped_early=self.stopped_early, planned_epochs=self.config.train.epochs,
                     precision=dict(name=self.precision.name,
                                    channels_last=self.precision.channels_last, probe=self.probe))
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.lookahead is not None:
            state["lookahead"] = self.lookahead.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned; training continues where it stopped.

        The learning rate is this Trainer's config's (``train.lr``, the groups' own), not the
        checkpoint's: a run that diverged resumes with a smaller ``--lr``."""
        base_lrs = [group.get("initial_lr", group["lr"]) for group in self.optimizer.param_groups]
        load_checked(self.model, state["model"], f"the weights in {str(self.out / 'state.pt')!r}",
                     fix=MISFIT_FIX)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scheduler.base_lrs = base_lrs
        factor = self.lr_at(self.scheduler.last_epoch)
        for group, base in zip(self.optimizer.param_groups, base_lrs):
            group["initial_lr"], group["lr"] = base, base * factor
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        if self.lookahead is not None and "lookahead" in state:
            self.lookahead.load_state_dict(state["lookahead"])
        torch.set_rng_state(state["rng"]["cpu"])
        if "cuda" in state["rng"] and self.precision.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"])
        self.history = list(state["history"])
        self.best_acc, self.bad_epochs = float(state["best_acc"]), int(state["bad_epochs"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.partial, self.elapsed = state["partial"], float(state["elapsed"])
        self.first_loss = state.get("first_loss")
        self.stopped_early = bool(state.get("stopped_early", False))

    def _augmenter(self, config: RunConfig) -> Augmenter | None:
        a, ds = config.augment, self.train_set
        if not isinstance(ds, InMemoryDataset):  # streamed files: RandomResizedCrop and flip done
            unused = [f"augment.{k}={getattr(a, k)}" for k in ("crop_pad", "flip") if getattr(a, k)]
            if unused:
                self.log(f"streamed images are cropped (RandomResizedCrop) and flipped as they are "
                         f"decoded, so {' and '.join(unused)} are not applied")
            a = dataclasses.replace(a, crop_pad=0, flip=0.0)
        if not a.enabled():
            return None
        eigen = None
        if a.pca_lighting and ds.image_shape[0] == 3:  # streamed: the first 512 images' colours
            eigen = rgb_eigen(ds.images if isinstance(ds, InMemoryDataset)
                              else ds.take(torch.arange(min(len(ds), 512))))
        return Augmenter(a, ds.mean, ds.std, ds.num_classes, eigen, seed=config.train.seed)

    def _choose_precision(self, model: nn.Module, device: torch.device,
                          config: RunConfig) -> Precision:
        """``auto`` on the CPU: time its numeric paths (:func:`~cnnlab.device.cpu_candidates`, of
        ``train.channels_last``'s memory format when that is set) on a real batch, keep the
        fastest; every rank takes rank 0's choice."""
        t = config.train
        if t.deterministic:
            return Precision(device, "fp32", False)
        if t.precision != "auto" or device.type != "cpu":
            return resolve_precision(device, t.precision, t.channels_last)
        candidates = cpu_candidates(t.channels_last)
        if len(candidates) == 1:  # nothing to choose between
            return next(iter(candidates.values()))
        self.loader.set_epoch(0)
        images, labels = next(iter(InMemoryLoader(self.train_set, min(t.batch_size, 128),
                                                  prefetch=0)))
        _, times = measure_cpu_precision(model, images, labels.view(-1), PROBE_REPEATS,
                                         candidates=candidates)
        names = list(candidates)
        fastest = names[distributed.broadcast_int(names.index(min(times, key=times.get)),
                                                  self.dist)]
        self.probe = dict(times)
        self.log("precision auto: measured " + ", ".join(
            f"{k} {1e3 * v:.1f} ms/step" for k, v in times.items())
            + f" (best of {PROBE_REPEATS}, interleaved) -> {fastest}; recorded in the run, "
            f"a resume keeps it")
        return candidates[fastest]

    def loss(self, outputs, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of the model's outputs (``loss_fn``; see :func:`default_loss`)."""
        return self.loss_fn(outputs, targets)

    def train_epoch(self, epoch: int) -> tuple[float, float, float]:
        """One pass over this process's shard; returns (mean loss, accuracy, images/s), all ranks."""
        self.model.train()
        if callable(getattr(self.model, "set_epoch", None)):  # e.g. freezing a bias after N epochs
            self.model.set_epoch(epoch)
        t, dev = self.config.train, self.precision.device
        start_step = self.step if epoch == self.epoch + 1 else 0
        sums = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, seen
        if self.partial is not None and start_step:
            sums += torch.tensor([self.partial["loss"], self.partial["correct"], self.partial["seen"]],
                                 dtype=torch.float64)
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
                self.keeper.drop()  # the held checkpoint's weights gave this loss: never written
                raise self.keeper.diverged(
                    f"the training loss became {loss.item()} at epoch {epoch} step {step}", t.lr)
            if self.first_loss is None:
                self.first_loss = loss.item()
            if self.keeper.held is not None:  # the loss of its weights: written if sane
                self.keeper.verify(loss.item(), self._reference())
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if t.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.lookahead is not None:
                self.lookahead.step(self.model, self.scheduler.last_epoch)
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
                # the epoch line's order and units: loss, accuracy in %, images/s
                bar.set_postfix({"loss": f"{loss_sum / seen_now:.4f}",
                                 "acc": f"{correct / seen_now:.2%}", "img/s": f"{rate:,.0f}"})
            if t.checkpoint_every and (step + 1) % t.checkpoint_every == 0 and step + 1 < len(self.loader):
                partial = distributed.all_reduce_sum(
                    torch.tensor([*local.tolist(), seen_now], dtype=torch.float64), self.dist) + sums
                self.epoch, self.step = epoch - 1, step + 1
                self.partial = dict(zip(("loss", "correct", "seen"), partial.tolist()))
                self.keeper.hold(self._snapshot())
            if self.signals.received is not None and step + 1 < len(self.loader):
                partial = torch.tensor([*local.tolist(), seen_now], dtype=torch.float64) + sums
                self.epoch, self.step = epoch - 1, step + 1
                self.partial = dict(zip(("loss", "correct", "seen"), partial.tolist()))
                bar.close()
                self._stop_on_signal(f"epoch {epoch} step {step + 1} of {len(self.loader)}")
        bar.close()
        rate = seen_now * self.dist.world_size / (time.perf_counter() - start)
        total = distributed.all_reduce_sum(torch.tensor([*local.tolist(), seen_now],
                                                        dtype=torch.float64), self.dist) + sums
        loss_sum, correct, seen = total.tolist()
        self.epoch, self.step, self.partial = epoch, 0, None
        return loss_sum / seen, correct / seen, rate

    def _elapsed(self) -> float:
        """Seconds of training so far, across resumes."""
        return self.elapsed + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    def _snapshot(self) -> tuple[dict, dict] | None:
        """(state.pt, model.safetensors) of this moment, as copies the next steps cannot change
        (None on the processes that do not write: all but rank 0)."""
        if not self.dist.is_main:
            return None
        weights = {k: v.detach().to("cpu", copy=True) for k, v in self.eval_model.state_dict().items()}
        return copy.deepcopy(self.state_dict()), weights

    def _finite(self) -> bool:
        return all_finite(self.model, self.eval_model)

    def _reference(self) -> float:
        return reference_loss(self.first_loss, self.config.model.num_classes)

    def _stop_on_signal(self, where: str) -> None:
        """Write the checkpoint of this moment (if its weights are finite) and stop."""
        if self._finite():
            self.keeper.write(self._snapshot())
        else:
            self.keeper.drop()
        raise self.keeper.interrupted(self.signals.received, where)

    def evaluate(self) -> EvalResult:
        """Loss, accuracy and confusion of :attr:`eval_model` on the test set, with the run's own
        precision, batch size and TTA (:func:`~cnnlab.evaluate.metrics.evaluate_model`): what
        ``cnnlab evaluate`` and the report compute for this run by default."""
        t = self.config.train
        return evaluate_model(self.eval_model, self.test_set, t.eval_batch_size, self.precision,
                              self.eval_tta)

    def describe(self) -> str:
        """What is trained: the registry name, or the class of a model passed in."""
        m = self.config.model
        return m.name if m.registry else f"{m.name} (passed in Python, not a registry model)"

    def fit(self) -> list[dict]:
        """Train for ``train.epochs`` epochs, evaluating and checkpointing after each."""
        try:
            return self._fit()
        except DiskFullError as err:
            if getattr(err, "noted", False):  # save_checkpoint said what survives
                raise
            raise DiskFullError(f"{err}; {checkpoint_note(self.out)}") from None

    def _fit(self) -> list[dict]:
        t = self.config.train
        self._t0 = time.perf_counter()
        runlog = None
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.json", self.config.to_json())
            runlog = RunLog(self.out, t.tensorboard, t.plot)
            if self.history:  # resumed: metrics.csv and curves as the checkpoint knows them
                runlog.epoch_end(self.history)
        procs = f" · {self.dist.world_size} processes" if self.dist.enabled else ""
        self.log(f"training {self.describe()} on {self.config.data.name} "
                 f"({plural(len(self.train_set), 'image')}) for {plural(t.epochs, 'epoch')} · "
                 f"{self.precision.describe()}{procs} · {plural(torch.get_num_threads(), 'thread')}")
        if self.epoch or self.step:
            self.log(f"resuming at epoch {self.epoch + 1}, step {self.step}")
        try:
            with self.signals:
                for epoch in range(self.epoch + 1, t.epochs + 1):
                    stop = self._run_epoch(epoch, runlog)
                    if self.signals.received is not None and epoch < t.epochs:
                        self._stop_on_signal(f"the end of epoch {epoch}")
                    if stop:
                        self.log(f"early stop: no better test accuracy for "
                                 f"{plural(t.early_stop_patience, 'evaluation')}")
                        self.stopped_early = True
                        self.keeper.write(self._snapshot())
                        break
            if self._finite():  # an unevaluated last checkpoint: its weights are finite
                self.keeper.flush()
        finally:
            if runlog is not None:
                runlog.close()
        return self.history

    def _run_epoch(self, epoch: int, runlog: RunLog | None) -> bool:
        """Train, evaluate, checkpoint one epoch; returns True when early stopping says stop."""
        t = self.config.train
        lr = t.lr * self.lr_at((epoch - 1) * len(self.loader))  # at the epoch's first step
        train_loss, train_acc, rate = self.train_epoch(epoch)
        result = self.evaluate() if epoch % t.eval_every == 0 or epoch == t.epochs else None
        row = dict(epoch=epoch, train_loss=round(train_loss, 5), train_acc=round(train_acc, 5),
                   test_loss=None, test_acc=None, lr=float(f"{lr:.6g}"),
                   images_per_s=round(rate, 1), elapsed_s=round(self._elapsed(), 2))
        tested = ""
        if result is not None:
            row.update(test_loss=round(result.loss, 5), test_acc=round(result.accuracy, 5))
            improved = result.accuracy > self.best_acc
            self.best_acc, self.bad_epochs = (max(self.best_acc, result.accuracy),
                                              0 if improved else self.bad_epochs + 1)
            tested = f"test loss {result.loss:.4f} acc {result.accuracy:.2%}  "
        if result is not None and not math.isfinite(result.loss):
            self.keeper.drop()
            raise self.keeper.diverged(f"the test loss became {result.loss} after epoch {epoch}",
                                       t.lr)
        self.history.append(row)
        # verified by the finite test loss of finite weights; else held until the next step's loss
        verified = result is not None and self._finite()
        (self.keeper.write if verified else self.keeper.hold)(self._snapshot())
        if runlog is not None:
            runlog.epoch_end(self.history)
        self.log(f"epoch {epoch:>3}/{t.epochs}  train loss {train_loss:.4f} acc {train_acc:.2%}  "
                 f"{tested}{rate:,.0f} img/s  {row['elapsed_s']:.0f}s")
        reference = self._reference()
        if train_loss > EXPLODED * reference:
            self.log(f"warning: the training loss exploded to {train_loss:.3g} in epoch {epoch} "
                     f"(more than {EXPLODED:g}x its start, {reference:.3g}): the learning rate "
                     f"(train.lr={t.lr:g}) is likely too high; lower it or clip gradients "
                     f"(train.grad_clip)")
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
