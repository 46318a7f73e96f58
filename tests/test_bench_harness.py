"""benchmarks/_harness.py: the load gate, the alternation and the statistics, on a fake clock and
a fake load average (no timing is measured here)."""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "_harness.py"
_spec = importlib.util.spec_from_file_location("bench_harness", _PATH)
harness = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = harness  # dataclasses look their module up while the class is made
_spec.loader.exec_module(harness)


class Fake:
    """A clock, a load average and this process's CPU seconds, all set by the test."""

    def __init__(self, loads, cpu=(0.0, 0.0), wall=(0.0, 0.0)):
        self.loads, self.cpu, self.wall = list(loads), list(cpu), list(wall)
        self.lines: list[str] = []

    def bench(self, max_load=1.0, clock=None):
        return harness.Bench(max_load, clock=clock or (lambda: 0.0),
                             loadavg=lambda: (self.loads.pop(0), 0.0, 0.0),
                             cpu_seconds=lambda: self.cpu.pop(0), wall=lambda: self.wall.pop(0),
                             cpu=lambda: "Test CPU", print_fn=self.lines.append)


def _fill(bench):
    table = bench.table("layer", "native ms", "ratio")
    table.row("conv1", harness.ms(harness.Sample((0.010, 0.012, 0.011))),
              harness.times(harness.Sample((2.0, 2.5, 2.2))))
    bench.note("spread: ", harness.figure(harness.Sample((1.0,)), ".1f", " s"))
    return bench


def test_idle_run_prints_the_markdown_table_unmarked():
    fake = Fake([0.40, 0.80])
    assert _fill(fake.bench()).finish() is True
    text = "\n".join(fake.lines)
    assert "| layer | native ms | ratio |" in text
    assert "|---|---:|---:|" in text
    assert "| conv1 | 11.00 (IQR 10.50-11.50, n=3) | 2.20x (IQR 2.10-2.35, n=3) |" in text
    assert "UNDER LOAD" not in text
    assert "Test CPU" in fake.lines[0] and "0.40 at start, 0.80 at end" in fake.lines[0]
    assert fake.lines[-1] == "spread: 1.0 s"


@pytest.mark.parametrize("loads, worst", [([1.50, 0.20], 1.50), ([0.20, 1.75], 1.75)])
def test_load_at_start_or_end_marks_every_figure_and_prints_no_table(loads, worst):
    fake = Fake(loads)
    assert _fill(fake.bench()).finish() is False
    text = "\n".join(fake.lines)
    mark = f"UNDER LOAD ({worst:.2f})"
    assert "|" not in text  # no markdown table at all
    assert text.count(mark) == 2 + 1  # the row's two figures and the note's
    assert f"native ms: 11.00 (IQR 10.50-11.50, n=3) {mark}" in text
    assert "layer: conv1;" in text  # a plain cell is not a figure: not marked
    assert fake.lines[-1] == f"spread: 1.0 s {mark}"


def test_own_threads_are_not_counted_as_load():
    # Two busy threads for 60 s add 2 (1 - e^-1) = 1.264 to the 1-minute load average.
    share = 2 * (1 - math.exp(-1))
    fake = Fake([0.30, 2.0], cpu=[0.0, 120.0], wall=[0.0, 60.0])
    bench = _fill(fake.bench())
    assert bench.finish() is True
    assert bench.own_share == pytest.approx(share)
    assert bench.worst_load() == pytest.approx(2.0 - share)
    fake = Fake([0.30, 2.5], cpu=[0.0, 120.0], wall=[0.0, 60.0])
    bench = _fill(fake.bench())
    assert bench.finish() is False and bench.worst_load() == pytest.approx(2.5 - share)


def test_the_limit_is_a_flag_whose_default_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(harness.LOAD_ENV, "2.5")
    parser = argparse.ArgumentParser()
    harness.add_arguments(parser)
    assert parser.parse_args([]).max_load == 2.5
    assert parser.parse_args(["--max-load", "0.5"]).max_load == 0.5
    fake = Fake([2.0, 2.0])
    assert _fill(fake.bench(max_load=2.5)).finish() is True


def test_alternate_reverses_the_order_every_other_round_and_times_each_call():
    now = [0.0]
    calls = []
    durations = {"a": [9.0, 1.0, 2.0, 3.0], "b": [9.0, 10.0, 30.0, 20.0]}  # warm-up first

    def case(name):
        def run():
            calls.append(name)
            now[0] += durations[name].pop(0)
        return run

    fake = Fake([0.0])
    bench = fake.bench(clock=lambda: now[0])
    samples = bench.alternate({"a": case("a"), "b": case("b")}, rounds=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert samples["a"].values == (1.0, 2.0, 3.0) and samples["b"].values == (10.0, 30.0, 20.0)
    assert samples["a"].median == 2.0 and samples["b"].median == 20.0
    assert harness.ratio(samples["b"], samples["a"]).values == (10.0, 15.0, 20.0 / 3)


def test_a_number_returned_by_the_case_is_its_measurement():
    fake = Fake([0.0])
    bench = fake.bench()
    rates = iter([500.0, 700.0, 600.0])
    assert bench.alternate({"img/s": lambda: next(rates)}, rounds=3, warmup=0)[
        "img/s"].values == (500.0, 700.0, 600.0)


def test_sample_statistics_against_numpy():
    values = (3.0, 1.0, 4.0, 1.5, 9.0, 2.6)
    sample = harness.Sample(values)
    assert sample.median == np.median(values)
    assert sample.iqr == pytest.approx(tuple(np.percentile(values, [25, 75])))
    assert sample.range == (1.0, 9.0)
    other = harness.Sample((1.0, 2.0, 4.0, 8.0, 16.0, 32.0))
    gm = harness.geometric_mean([sample, other])
    assert gm.values == pytest.approx(tuple(np.sqrt(np.array(values) * np.array(other.values))))
    with pytest.raises(ValueError, match="as many rounds"):
        harness.ratio(sample, harness.Sample((1.0,)))
