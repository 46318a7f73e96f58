"""The lab's runner: one experiment, one seed, one run directory, one sentence.

Every experiment writes to its ``--out`` directory:

* ``results.json`` — the experiment's name and the claim it tests, the scale (``quick``,
  ``default`` or ``full``), the seed, the resolved settings, the environment (torch version,
  CPU, threads, git commit), every number measured, the plots and the one-sentence result;
* one PNG per plot (matplotlib, Agg backend: no display needed);
* ``runs/<name>/`` — the ordinary run directory of every network it trained.

The sentence is computed from the numbers, never written in advance: where the result at CPU
scale contradicts the notes, the sentence says so, and where the numbers cannot decide — a network
near chance, a difference within the test set's binomial error or the spread of seeds — it says
"inconclusive at this scale" with the number (:func:`verdict`, the one rule every experiment uses).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cnnlab.data.datasets import InMemoryDataset, balanced_order, load_dataset
from cnnlab.errors import ConfigError
from cnnlab.text import plural
from cnnlab.train.checkpoint import atomic_write_text
from cnnlab.train.values import Range, coerce

SCALES = ("quick", "default", "full")
RESULTS_FILE = "results.json"
HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")  # no timings
COUNT, POSITIVE, NON_NEGATIVE = Range(1), Range(0, low_open=True), Range(0)
# The allowed values of the numeric settings the experiments share (lists element by element); an
# experiment's own settings have theirs in Experiment.ranges. Every numeric setting has one.
SETTING_RANGES = {
    "n_train": COUNT, "n_test": COUNT, "epochs": COUNT, "batch_size": COUNT, "lr": POSITIVE,
    "weight_decay": NON_NEGATIVE, "min_epoch_images": COUNT, "sizes": COUNT,
}


@dataclass(frozen=True)
class Verdict:
    """Whether the numbers behind one conclusion can carry it (:func:`verdict`)."""

    claim: str  # what was checked, e.g. "bottleneck vs naive test accuracy"
    conclusive: bool  # every network above chance, and the difference (if any) beyond the noise
    detail: str  # the numbers that decided it, for the sentence and the report
    difference: float | None = None  # a - b in points, when two accuracies were compared
    noise: float | None = None  # the half-width a difference had to exceed, in points

    def says(self, more: str, less: str | None = None) -> str:
        """What the numbers allow: when conclusive, ``more`` (or ``less`` when given and the
        compared difference is negative); otherwise "inconclusive at this scale (<detail>)"."""
        if not self.conclusive:
            return self.caveat
        return less if less is not None and (self.difference or 0) < 0 else more

    @property
    def caveat(self) -> str:
        return f"inconclusive at this scale ({self.detail})"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error, in points, of an accuracy measured on ``n`` images: 100 sqrt(p (1 - p) / n)
    with p the accuracy as a fraction (the spread of a binomial proportion)."""
    p = min(max(accuracy / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1 - p) / max(n, 1))


def chance_bound(n: int, num_classes: int, z: float = 2.0) -> float:
    """The accuracy (points) a network must exceed to be told from guessing: chance, 100 / K, plus
    ``z`` binomial standard errors of chance on ``n`` images."""
    chance = 100.0 / num_classes
    return chance + z * binomial_se(chance, n)


def verdict(claim: str, n: int, num_classes: int, trained: dict[str, float] | None = None,
            compare: tuple[float, float] | None = None, seed_std: float = 0.0,
            z: float = 2.0) -> Verdict:
    """The lab's one rule for when numbers decide a claim.

    ``trained`` names accuracies (points, measured on ``n`` images) that must lie above
    :func:`chance_bound`: a network near chance has learned nothing a comparison could rest on.
    ``compare = (a, b)`` is a difference of two accuracies (points) on the same ``n`` images; it
    counts only when ``|a - b|`` exceeds ``z`` standard errors of a difference of two binomial
    proportions, ``z 100 sqrt(2 p (1 - p) / n)`` with p their mean, or ``z`` times ``seed_std``, the
    standard deviation of the same measurement over seeds, whichever is larger.
    """
    for name, accuracy in (trained or {}).items():
        bound = chance_bound(n, num_classes, z)
        if accuracy <= bound:
            return Verdict(claim, False, f"{name} at {accuracy:.1f}% is within {z:g} standard "
                           f"errors of chance, {100 / num_classes:.1f}% + "
                           f"{bound - 100 / num_classes:.1f} on {n:,} images")
    if compare is None:
        return Verdict(claim, True, f"above chance: beyond {chance_bound(n, num_classes, z):.1f}% "
                                    f"on {n:,} images")
    a, b = compare
    binomial = z * math.sqrt(2) * binomial_se((a + b) / 2, n)
    noise, source = max((binomial, f"{z:g} s.e. on {n:,} images"),
                        (z * seed_std, f"{z:g} s.d. over seeds"))
    difference = a - b
    conclusive = abs(difference) > noise
    word = "beyond" if conclusive else "within"
    return Verdict(claim, conclusive, f"{difference:+.1f} points, {word} the noise of "
                   f"±{noise:.1f} ({source})", round(difference, 4), round(noise, 4))


@dataclass
class Outcome:
    """What an experiment found: its numbers (JSON-ready), the sentence computed from them, and
    the verdicts the sentence rests on (shown by the report)."""

    numbers: dict
    sentence: str
    verdicts: list[Verdict] = field(default_factory=list)


@dataclass
class Experiment:
    """A registered experiment: ``run(ctx)`` reads ``ctx.settings`` and returns an Outcome."""

    name: str  # what users type: cnnlab lab NAME
    claim: str  # the notes' claim it tests, one line
    settings: dict[str, dict]  # scale -> settings; "quick" and "full" override "default"
    run: Callable[[LabContext], Outcome]
    runs: Callable[[dict], int] | None = None  # networks it trains, from its settings (progress)
    ranges: dict[str, Range] = field(default_factory=dict)  # its own settings' allowed values
    choices: dict[str, tuple] = field(default_factory=dict)  # the allowed values of text settings

    def range_of(self, key: str) -> Range | None:
        """The allowed values of setting ``key`` (its own, else the shared SETTING_RANGES)."""
        return self.ranges.get(key, SETTING_RANGES.get(key))

    def resolve(self, scale: str, overrides: dict | None = None) -> dict:
        """The settings at ``scale`` (quick/full on top of default), then checked overrides: each
        is converted to the type of the setting it replaces by the run config's own parser
        (:func:`cnnlab.train.values.coerce`; lists as ``a,b,c``)."""
        if scale not in SCALES:
            raise ConfigError(f"unknown scale {scale!r}; use one of {', '.join(SCALES)}")
        resolved = dict(self.settings["default"])
        resolved.update(self.settings.get(scale, {}) if scale != "default" else {})
        for key, value in (overrides or {}).items():
            if key not in resolved:
                raise ConfigError(f"{self.name} has no setting {key!r}; its settings: "
                                  f"{', '.join(sorted(resolved))}")
            resolved[key] = coerce(key, value, setting_type(resolved[key]))
            self.check(key, resolved[key])
        return resolved

    def check(self, key: str, value) -> None:
        """Refuse a value outside the setting's range or choices, or an empty list, in one line."""
        if isinstance(value, list) and not value:
            raise ConfigError(f"{self.name} setting {key} needs at least one value, got none")
        if key in self.choices and value not in self.choices[key]:
            raise ConfigError(f"{self.name} setting {key} must be one of "
                              f"{', '.join(self.choices[key])}, got {value!r}")
        allowed = self.range_of(key)
        if allowed is None or isinstance(value, (bool, str)):
            return
        for v in value if isinstance(value, list) else [value]:
            if not allowed.contains(v):
                raise ConfigError(f"{self.name} setting {key} must be {allowed}, got {v}")


def setting_type(current) -> type:
    """The type a setting's override must have: that of its value (``list[int]`` for [8, 14])."""
    if isinstance(current, (list, tuple)):
        return list[type(current[0])] if current else list[str]
    return type(current)


def environment() -> dict:
    """Where a result was measured: versions, CPU, threads, GPU and the git commit."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from cnnlab import __version__

    return dict(cnnlab=__version__, torch=torch.__version__, python=platform.python_version(),
                platform=platform.platform(), cpu=cpu, cpu_count=os.cpu_count(),
                torch_threads=torch.get_num_threads(),
                cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                git_commit=git_commit())


def git_commit() -> str | None:
    """The commit of the source tree cnnlab runs from (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def repeat_to(dataset: InMemoryDataset, min_images: int) -> InMemoryDataset:
    """``dataset`` repeated whole until it holds at least ``min_images`` examples.

    Tiny training sets would otherwise get a handful of optimizer steps per epoch (and one
    evaluation per step); repeating them gives every size the same number of steps per epoch.
    """
    times = max(1, -(-min_images // len(dataset)))
    return dataset if times == 1 else dataset.subset(torch.arange(len(dataset)).repeat(times))


@dataclass
class LabContext:
    """What an experiment gets: settings, seed, data access, training and plotting helpers."""

    out: Path
    settings: dict
    seed: int = 0
    scale: str = "default"
    data_dir: str | None = None
    device: str = "auto"
    log: Callable[[str], None] = print
    plots: list[dict] = field(default_factory=list)
    bar: object = None  # a tqdm bar over the networks trained (run_experiment's), or None

    def seed_all(self, offset: int = 0) -> None:
        """Seed torch's global RNG with ``seed + offset`` (model initialisation)."""
        torch.manual_seed(self.seed + offset)

    def data(self, name: str, split: str, n: int | None = None, seed_offset: int = 0,
             dataset: InMemoryDataset | None = None) -> InMemoryDataset:
        """``n`` class-balanced examples of a split (all when ``n`` is None or too large)."""
        ds = dataset if dataset is not None else load_dataset(name, split, self.data_dir)
        if n is None or n >= len(ds):
            return ds
        return ds.subset(balanced_order(ds.labels, self.seed + seed_offset)[:n])

    def train(self, model: nn.Module, run_name: str, train_set: InMemoryDataset,
              test_set: InMemoryDataset, epochs: int, lr: float, batch_size: int = 128, *,
              groups: list[dict] | None = None, model_name: str | None = None,
              seed_offset: int = 0, augment: dict | None = None, distinct: int | None = None,
              **train) -> list[dict]:
        """Train ``model`` with the Trainer into ``out/runs/<run_name>``; returns its history
        (epoch, train/test loss and accuracy per epoch; timings stay in the run's metrics.csv).

        ``train`` sets other keys of the run's ``train`` section (``optimizer="adamw"``,
        ``weight_decay=0.05``, ``precision="fp32"``, ...), ``augment`` keys of its ``augment``
        section (``crop_pad=2, flip=0.5``): both go through the run config's typed, validated
        overrides. ``model_name`` is the registry name the model was built from, if any;
        ``distinct`` the number of different images of a ``train_set`` repeated by
        :func:`repeat_to` (for the log line).
        """
        from cnnlab.train import RunConfig, Trainer, apply_overrides

        settings = {"model.name": model_name or run_name, "data.name": train_set.name,
                    "data.data_dir": self.data_dir, "train.epochs": epochs, "train.lr": lr,
                    "train.batch_size": batch_size, "train.seed": self.seed + seed_offset,
                    "train.device": self.device, "train.plot": False, "train.tensorboard": False}
        if model_name is None:  # a model built here, named by its run: not a registry name
            settings["model.registry"] = False
        settings.update({f"train.{k}": v for k, v in train.items()})
        settings.update({f"augment.{k}": v for k, v in (augment or {}).items()})
        config = apply_overrides(RunConfig(), settings).validate()
        start = time.perf_counter()
        if self.bar is not None:
            self.bar.set_postfix_str(f"training {run_name}")
        trainer = Trainer(config, self.out / "runs" / run_name, train_set, test_set, progress=False,
                          log=None, model=model, groups=groups)
        history = trainer.fit()
        last = history[-1]
        images = plural(distinct or len(train_set), "image")
        if distinct and distinct != len(train_set):
            images += f" (repeated to {len(train_set):,} per epoch)"
        if self.bar is not None:
            self.bar.update()
        self.log(f"  {run_name}: {images} x {plural(epochs, 'epoch')} · train acc "
                 f"{last['train_acc']:.2%} · test acc {last['test_acc']:.2%} · "
                 f"{time.perf_counter() - start:.0f}s")
        # timings stay in the run's metrics.csv; the numbers of a result must repeat exactly
        return [{k: v for k, v in row.items() if k in HISTORY_KEYS} for row in history]

    def figure(self, ncols: int = 1, size: tuple[float, float] = (6.4, 4.2)):
        """A matplotlib (figure, axes) on the Agg backend."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt.subplots(1, ncols, figsize=(size[0] * ncols, size[1]))

    def save(self, fig, name: str, caption: str) -> str:
        """Save ``fig`` as ``out/<name>.png`` and record it (with its caption) for the report.
        An axis labelled ``epoch`` gets whole-number ticks (a 2-epoch run: 1, 2; never 1.5)."""
        import matplotlib.pyplot as plt

        from cnnlab.train.runlog import whole_number_ticks

        for ax in fig.axes:
            if ax.get_xlabel() == "epoch":
                whole_number_ticks(ax, [x for line in ax.get_lines() for x in line.get_xdata()])

        file = f"{name}.png"
        fig.tight_layout()
        fig.savefig(self.out / file, dpi=110)
        plt.close(fig)
        self.plots.append(dict(file=file, caption=caption))
        return file


def run_experiment(experiment: Experiment, out: str | Path, scale: str = "default", seed: int = 0,
                   overrides: dict | None = None, data_dir: str | None = None,
                   device: str = "auto", log: Callable[[str], None] | None = print,
                   progress: bool = True) -> dict:
    """Run ``experiment`` and write ``out/results.json``; returns the results record.

    ``progress``: a bar over the networks it trains (which one, of how many) on a terminal.
    """
    settings = experiment.resolve(scale, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda *_: None)
    ctx = LabContext(out, settings, seed, scale, data_dir, device, log)
    log(f"lab {experiment.name} ({scale}, seed {seed}): {experiment.claim}")
    start = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    ctx.seed_all()
    from tqdm.auto import tqdm

    total = experiment.runs(settings) if experiment.runs else None
    ctx.bar = tqdm(total=total, desc=f"lab {experiment.name}", unit="run", leave=False,
                   dynamic_ncols=True, disable=None if progress else True)  # None: a terminal only
    try:
        outcome = experiment.run(ctx)
    finally:
        ctx.bar.close()
        ctx.bar = None
    record = dict(experiment=experiment.name, claim=experiment.claim, sentence=outcome.sentence,
                  verdicts=[v.to_dict() for v in outcome.verdicts],
                  scale=scale, seed=seed, settings=settings, numbers=outcome.numbers,
                  plots=ctx.plots, environment=environment(), started=started,
                  elapsed_s=round(time.perf_counter() - start, 1))
    atomic_write_text(out / RESULTS_FILE, json.dumps(record, indent=2, default=_jsonable) + "\n")
    return record


def _jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to results.json")


def read_results(run_dir: str | Path) -> dict:
    """The ``results.json`` of a lab run directory."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} holds no {RESULTS_FILE}; pass the --out of "
                          f"`cnnlab lab`")
    from cnnlab.train.checkpoint import read_json

    results = read_json(path)  # one line naming the file when it is not valid JSON
    if not isinstance(results, dict):
        raise ConfigError(f"{path} must hold the mapping `cnnlab lab` writes, not a "
                          f"{type(results).__name__}; run the experiment again")
    return results


def points(fraction: float) -> float:
    """A fraction in [0, 1] as percentage points, rounded for sentences and JSON."""
    return round(100.0 * fraction, 2)
