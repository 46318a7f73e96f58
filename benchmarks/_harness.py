"""The one benchmark harness: figures that cannot flatter a loaded machine.

Every script in ``benchmarks/`` measures through :class:`Bench`:

* it records the machine (CPU model, cores, torch and its threads) and the 1-minute load average
  before and after the run;
* it times the baseline and the candidate in alternation (:meth:`Bench.alternate`: round after
  round, the order reversed every other round, so drift and a neighbour's burst hit both alike)
  and reports each as the median with its spread (:class:`Sample`: the interquartile range, and
  the range);
* a ratio is the median of the per-round ratios (:func:`ratio`), the rounds being paired;
* when the load at the start, or at the end less this process's own share, exceeds the limit
  (``--max-load``, default ``CNNLAB_BENCH_MAX_LOAD`` or 1.0), the run is *under load*: every
  figure is printed as ``12.3 UNDER LOAD (1.87)`` and no BENCHMARKS-ready (markdown) table is
  printed.

Why the own share: the load average counts this benchmark's threads too. Linux updates it every
5 s as ``load <- load e + n (1 - e)``, ``e = exp(-5/60)``; a process that kept k threads running for
T seconds adds about ``k (1 - exp(-T/60))`` to it. k is measured, not assumed: CPU seconds of this
process and its children over the wall time.

    bench = Bench.from_args(args)          # after harness.add_arguments(parser)
    samples = bench.alternate({"native": f, "explicit": g}, rounds=15, warmup=3)
    table = bench.table("layer", "native ms", "explicit ms", "explicit/native")
    table.row("conv1", ms(samples["native"]), ms(samples["explicit"]), times(ratio(...)))
    bench.finish()                         # prints the machine, the load and the table(s)
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

DEFAULT_MAX_LOAD = 1.0
LOAD_ENV = "CNNLAB_BENCH_MAX_LOAD"
LOAD_WINDOW_S = 60.0  # the 1-minute load average's time constant


def cpu_model() -> str:
    """The CPU's model name: lscpu's "Model name", else /proc/cpuinfo's, else the platform's."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have finished."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass(frozen=True)
class Sample:
    """Repeated measurements of one figure: median and spread."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def iqr(self) -> tuple[float, float]:
        """(first quartile, third quartile); both the value itself for fewer than two values."""
        if len(self.values) < 2:
            return self.values[0], self.values[0]
        q1, _, q3 = statistics.quantiles(self.values, n=4, method="inclusive")
        return q1, q3

    @property
    def range(self) -> tuple[float, float]:
        return min(self.values), max(self.values)

    def scaled(self, factor: float) -> Sample:
        return Sample(tuple(v * factor for v in self.values))

    def describe(self, fmt: str = ".2f", unit: str = "") -> str:
        """``12.30 ms (IQR 12.10-12.90, n=15)``; one value alone has no spread."""
        if len(self.values) == 1:
            return f"{self.median:{fmt}}{unit}"
        q1, q3 = self.iqr
        return f"{self.median:{fmt}}{unit} (IQR {q1:{fmt}}-{q3:{fmt}}, n={len(self.values)})"


def ratio(numerator: Sample, denominator: Sample) -> Sample:
    """Per-round ratios of two samples measured in the same alternating rounds."""
    if len(numerator.values) != len(denominator.values):
        raise ValueError(f"paired samples need as many rounds: {len(numerator.values)} vs "
                         f"{len(denominator.values)}")
    return Sample(tuple(a / b for a, b in zip(numerator.values, denominator.values, strict=True)))


def geometric_mean(samples: Sequence[Sample]) -> Sample:
    """Per-round geometric mean over several samples of the same rounds (e.g. over models)."""
    rounds = {len(s.values) for s in samples}
    if len(rounds) != 1:
        raise ValueError(f"samples of unequal rounds: {sorted(rounds)}")
    return Sample(tuple(statistics.geometric_mean(vals)
                        for vals in zip(*(s.values for s in samples), strict=True)))


@dataclass(frozen=True)
class Figure:
    """A measured figure in a table cell: printed as it is, or marked when the run is loaded."""

    text: str


def ms(sample: Sample) -> Figure:
    """Seconds shown as milliseconds, with spread."""
    return Figure(sample.scaled(1e3).describe(".2f"))


def seconds(sample: Sample, fmt: str = ".3f") -> Figure:
    return Figure(sample.describe(fmt, " s"))


def times(sample: Sample, fmt: str = ".2f") -> Figure:
    """A ratio: ``2.31x (IQR 2.20-2.40, n=15)``."""
    return Figure(sample.describe(fmt, "x"))


def figure(sample: Sample, fmt: str = ".1f", unit: str = "") -> Figure:
    return Figure(sample.describe(fmt, unit))


@dataclass
class Table:
    columns: tuple[str, ...]
    title: str = ""
    rows: list[tuple] = field(default_factory=list)

    def row(self, *cells) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(cells)


class Bench:
    """One benchmark run: machine, load before/after, alternating timings, gated tables."""

    def __init__(self, max_load: float = DEFAULT_MAX_LOAD, *,
                 clock: Callable[[], float] = time.perf_counter,
                 loadavg: Callable[[], tuple[float, float, float]] = os.getloadavg,
                 cpu_seconds: Callable[[], float] = own_cpu_seconds,
                 wall: Callable[[], float] = time.perf_counter,
                 cpu: Callable[[], str] = cpu_model, print_fn: Callable[[str], None] = print,
                 sync: Callable[[], None] | None = None) -> None:
        self.max_load = max_load
        self.clock, self.wall, self.loadavg, self.cpu_seconds = clock, wall, loadavg, cpu_seconds
        self.cpu_fn, self.print = cpu, print_fn
        self.sync = sync  # e.g. torch.cuda.synchronize, called around each timed call
        self.clock_name = "wall" if clock is time.perf_counter else "custom"
        self.tables: list[Table] = []
        self.notes: list[str] = []
        self.load_end: float | None = None
        self.own_share = 0.0
        self.cpu_start = cpu()
        self.cpu_end: str | None = None
        self.load_start = loadavg()[0]
        self.wall_start, self.cpu_s_start = wall(), cpu_seconds()

    @classmethod
    def from_args(cls, args: argparse.Namespace, **kw) -> Bench:
        bench = cls(args.max_load, clock=CLOCKS[args.clock], **kw)
        bench.clock_name = args.clock
        return bench

    # -- measuring ------------------------------------------------------------------------
    def time_call(self, fn: Callable[[], object]) -> float:
        """Seconds of one call of ``fn``; a number ``fn`` returns is taken as the measurement."""
        if self.sync is not None:
            self.sync()
        start = self.clock()
        value = fn()
        if self.sync is not None:
            self.sync()
        elapsed = self.clock() - start
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else elapsed

    def alternate(self, cases: dict[str, Callable[[], object]], rounds: int,
                  warmup: int = 1) -> dict[str, Sample]:
        """Run every case once per round, in order on even rounds and reversed on odd ones.

        ``warmup`` untimed rounds first. Each case is measured by :meth:`time_call`: its seconds,
        or the number it returns (e.g. images/s it measured itself). Returns one Sample per case.
        """
        if rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {rounds}")
        names = list(cases)
        for _ in range(warmup):
            for name in names:
                cases[name]()
        values: dict[str, list[float]] = {name: [] for name in names}
        for rnd in range(rounds):
            for name in (names if rnd % 2 == 0 else names[::-1]):
                values[name].append(self.time_call(cases[name]))
        return {name: Sample(tuple(v)) for name, v in values.items()}

    # -- reporting ------------------------------------------------------------------------
    def table(self, *columns: str, title: str = "") -> Table:
        self.tables.append(Table(tuple(columns), title))
        return self.tables[-1]

    def note(self, *parts) -> None:
        """A line printed after the tables; its :class:`Figure` parts are marked like cells."""
        self.notes.append(parts)

    def worst_load(self) -> float:
        """The larger of the load at the start and the load at the end less this run's share."""
        end = self.load_end if self.load_end is not None else self.load_start
        return max(self.load_start, end - self.own_share)

    @property
    def under_load(self) -> bool:
        return self.worst_load() > self.max_load

    def _cell(self, cell) -> str:
        if isinstance(cell, Figure):
            return f"{cell.text} UNDER LOAD ({self.worst_load():.2f})" if self.under_load \
                else cell.text
        return str(cell)

    def finish(self) -> bool:
        """Record the end load and print the machine line and every table; True when clean."""
        self.load_end = self.loadavg()[0]
        self.cpu_end = self.cpu_fn()
        wall = max(self.wall() - self.wall_start, 1e-9)
        threads = max(self.cpu_seconds() - self.cpu_s_start, 0.0) / wall
        self.own_share = threads * (1 - math.exp(-wall / LOAD_WINDOW_S))
        cpu = self.cpu_start if self.cpu_end == self.cpu_start else \
            f"{self.cpu_start} -> {self.cpu_end} (changed during the run)"
        self.print(f"machine: {cpu}, {os.cpu_count()} cores; 1-min load {self.load_start:.2f} at "
                   f"start, {self.load_end:.2f} at end (this run's own share ~{self.own_share:.2f}: "
                   f"{threads:.2f} busy threads for {wall:.0f} s); limit {self.max_load:.2f}"
                   + ("" if self.clock_name == "wall" else f"; clock: {self.clock_name}"))
        clean = not self.under_load
        if not clean:
            self.print(f"UNDER LOAD ({self.worst_load():.2f} > {self.max_load:.2f}): not "
                       "BENCHMARKS-ready; every figure is marked. Re-run on an idle machine.")
        for table in self.tables:
            if table.title:
                self.print(f"\n{table.title}")
            if clean:
                self.print("| " + " | ".join(table.columns) + " |")
                numeric = [any(isinstance(cells[i], Figure) for cells in table.rows)
                           for i in range(len(table.columns))]  # figures right-aligned
                self.print("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
                for cells in table.rows:
                    self.print("| " + " | ".join(self._cell(c) for c in cells) + " |")
            else:
                for cells in table.rows:
                    self.print("  " + "; ".join(f"{name}: {self._cell(c)}" for name, c in
                                                zip(table.columns, cells, strict=True)))
        for parts in self.notes:
            self.print("".join(self._cell(p) for p in parts))
        return clean


def textbook_loop(model, loader) -> float:
    """The baseline of the training benchmarks: one epoch of the plain PyTorch loop (SGD 0.01,
    momentum 0.9, fp32, cross-entropy) over ``loader``; returns training images per second."""
    import torch
    import torch.nn.functional as F

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
    return seen / (time.perf_counter() - start)


def default_max_load() -> float:
    raw = os.environ.get(LOAD_ENV)
    if raw is None:
        return DEFAULT_MAX_LOAD
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{LOAD_ENV}={raw!r} is not a number; set it to a load such as 1.0") \
            from None


# "cpu": CPU seconds of this process (all threads), for comparing two versions of the code on a
# loaded machine during development; the figures for BENCHMARKS.md are wall-clock seconds.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The harness's flags: the load above which figures are marked and no table printed, and
    the clock."""
    parser.add_argument("--max-load", type=float, default=default_max_load(),
                        help=f"1-minute load average above which every figure is marked UNDER "
                             f"LOAD and no BENCHMARKS-ready table is printed (default "
                             f"${LOAD_ENV} or {DEFAULT_MAX_LOAD}; %(default)s now)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="what a timing measures: wall seconds (the figures to publish) or "
                             "this process's CPU seconds (to compare code versions on a busy "
                             "machine; with --threads 1); default %(default)s")
