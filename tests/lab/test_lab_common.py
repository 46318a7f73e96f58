"""The lab's runner: balanced nested subsets, settings, results.json, reproducibility."""

from __future__ import annotations

import json

import pytest
import torch

import cnnlab
from cnnlab.errors import ConfigError
from cnnlab.lab import get_experiment, list_experiments, run_experiment
from cnnlab.lab.common import balanced_order, repeat_to

ISSUE_EXPERIMENTS = ["depth", "transfer", "data-scaling", "ensemble", "tta", "equivariance",
                     "bottleneck", "complexity", "explicit", "invariance", "error-sources",
                     "convergence"]


def test_registry_lists_the_experiments_of_the_issues():
    assert list_experiments() == ISSUE_EXPERIMENTS
    for name in ISSUE_EXPERIMENTS:
        experiment = get_experiment(name)
        assert experiment.name == name and experiment.claim
        for scale in ("quick", "default", "full"):
            assert experiment.resolve(scale)  # every scale resolves to complete settings


def test_balanced_order_prefixes_hold_k_of_each_class():
    labels = torch.arange(10).repeat_interleave(torch.arange(20, 30))  # unequal class sizes
    order = balanced_order(labels, seed=3)
    assert sorted(order.tolist()) == list(range(len(labels)))  # a permutation
    for k in (1, 2, 7, 20):
        counts = torch.bincount(labels[order[: 10 * k]], minlength=10)
        assert counts.tolist() == [k] * 10
    assert torch.equal(order, balanced_order(labels, seed=3))
    assert not torch.equal(order, balanced_order(labels, seed=4))


def test_repeat_to_repeats_whole_copies(tiny_dataset):
    train, _ = tiny_dataset
    small = train.subset(torch.arange(7))
    longer = repeat_to(small, 30)
    assert len(longer) == 35  # ceil(30 / 7) = 5 copies
    assert torch.equal(longer.images[14:21], small.images)
    assert repeat_to(train, 10) is train


def test_settings_overrides_are_checked_and_typed():
    experiment = get_experiment("depth")
    settings = experiment.resolve("quick", {"depths": "8,20", "epochs": "2", "lr": "0.1"})
    assert settings["depths"] == [8, 20] and settings["epochs"] == 2 and settings["lr"] == 0.1
    with pytest.raises(ConfigError, match="no setting 'epoch'"):
        experiment.resolve("quick", {"epoch": "2"})
    with pytest.raises(ConfigError, match="not a valid int"):
        experiment.resolve("quick", {"epochs": "two"})
    with pytest.raises(ConfigError, match="unknown experiment"):
        get_experiment("depht")


@pytest.mark.slow
def test_same_seed_same_numbers_and_a_complete_record(tmp_path, tiny_idx_dir):
    experiment = get_experiment("equivariance")
    tiny = {"n_train": "60", "n_test": "40", "n_probe": "4", "shifts": "0,1,2"}
    first = run_experiment(experiment, tmp_path / "a", "quick", 5, tiny, str(tiny_idx_dir), "cpu",
                           log=None)
    second = run_experiment(experiment, tmp_path / "b", "quick", 5, tiny, str(tiny_idx_dir), "cpu",
                            log=None)
    assert first["numbers"] == second["numbers"] and first["sentence"] == second["sentence"]
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["sentence"] == first["sentence"] and saved["seed"] == 5
    assert saved["settings"]["n_train"] == 60 and saved["scale"] == "quick"
    env = saved["environment"]
    assert env["torch"] == torch.__version__ and env["cnnlab"] == cnnlab.__version__
    assert env["torch_threads"] == torch.get_num_threads()
    for plot in saved["plots"]:
        assert (tmp_path / "a" / plot["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "a" / "runs").iterdir()) == ["flatten", "gap", "maxpool"]


class _Bar:
    """Stands in for tqdm: records what run_experiment's progress bar was told."""

    made: list[_Bar] = []

    def __init__(self, total=None, desc="", disable=None, **kwargs):
        self.total, self.desc, self.disable, self.n, self.postfixes = total, desc, disable, 0, []
        _Bar.made.append(self)

    def update(self, n=1):
        self.n += n

    def set_postfix_str(self, text):
        self.postfixes.append(text)

    def close(self):
        self.closed = True


@pytest.mark.slow
def test_progress_counts_the_networks_trained_and_names_each(tmp_path, tiny_idx_dir, monkeypatch):
    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", _Bar)
    _Bar.made.clear()
    lines = []
    experiment = get_experiment("data-scaling")
    run_experiment(experiment, tmp_path / "a", "quick", 0, {"sizes": "20,40", "n_test": "40"},
                   str(tiny_idx_dir), "cpu", log=lines.append)
    bar = next(b for b in _Bar.made if (b.desc or "").startswith("lab"))  # (the Trainer's bars: off)
    assert bar.total == 2 and bar.n == 2 and bar.closed and bar.disable is None
    assert bar.desc == "lab data-scaling" and bar.postfixes == ["training n20", "training n40"]
    min_images = experiment.resolve("quick")["min_epoch_images"]
    assert lines[1].startswith(f"  n20: 20 images (repeated to {min_images:,} per epoch) x 1 epoch ·")
    run_experiment(experiment, tmp_path / "b", "quick", 0, {"sizes": "20"}, str(tiny_idx_dir),
                   "cpu", log=None, progress=False)
    assert [b.disable for b in _Bar.made if (b.desc or "").startswith("lab")][-1] is True
