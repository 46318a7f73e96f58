"""The lab's one evidence rule: near chance, within noise, or a clear effect — and every experiment
saying "inconclusive at this scale" when its networks cannot tell the classes apart."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.data import write_idx
from cnnlab.errors import ConfigError
from cnnlab.lab import get_experiment, list_experiments, run_experiment
from cnnlab.lab.bottleneck import _sentence as bottleneck_sentence
from cnnlab.lab.common import binomial_se, chance_bound, verdict

CAVEAT = "inconclusive at this scale"


def test_binomial_standard_error_and_chance_bound_by_formula():
    assert binomial_se(80.0, 400) == pytest.approx(100 * math.sqrt(0.8 * 0.2 / 400))
    assert binomial_se(100.0, 50) == 0.0
    # 10 classes on 80 images: 10% + 2 sqrt(0.1 * 0.9 / 80) = 16.7%
    assert chance_bound(80, 10) == pytest.approx(10 + 200 * math.sqrt(0.09 / 80))


def test_a_network_near_chance_decides_nothing():
    # the case: 13.8% against 10.0% on 80 test images of 10 classes
    v = verdict("bottleneck vs naive", 80, 10, trained={"bottleneck": 13.8, "naive": 10.0},
                compare=(13.8, 10.0))
    assert not v.conclusive and v.difference is None
    assert "13.8%" in v.detail and "chance" in v.detail and "10.0%" in v.detail
    assert v.says("as the notes argue") == f"{CAVEAT} ({v.detail})"
    # the same gap on 5 classes (chance 20%) is also near chance; above the bound it is not
    assert not verdict("", 80, 5, trained={"a": 25.0}).conclusive
    assert verdict("", 80, 10, trained={"a": 17.0}).conclusive


def test_a_difference_within_two_standard_errors_is_inconclusive():
    # 60% vs 55% on 80 images: 2 sqrt(2 p (1 - p) / n) with p = 57.5% is 15.6 points
    v = verdict("", 80, 10, trained={"a": 60.0, "b": 55.0}, compare=(60.0, 55.0))
    noise = 200 * math.sqrt(2 * 0.575 * 0.425 / 80)
    assert not v.conclusive and v.noise == pytest.approx(noise, abs=1e-3)
    assert v.difference == 5.0 and "+5.0 points" in v.detail and f"±{noise:.1f}" in v.detail
    assert v.says("helped").startswith(CAVEAT)


def test_the_spread_of_seeds_widens_the_noise():
    # 3 points on 5,000 images is beyond 2 s.e. (1.6) but within two seed s.d. of 2.0 (4.0)
    assert verdict("", 5000, 10, compare=(83.0, 80.0)).conclusive
    v = verdict("", 5000, 10, compare=(83.0, 80.0), seed_std=2.0)
    assert not v.conclusive and v.noise == pytest.approx(4.0) and "over seeds" in v.detail


def test_a_clear_effect_is_conclusive_in_both_directions():
    up = verdict("", 5000, 10, trained={"a": 80.0, "b": 70.0}, compare=(80.0, 70.0))
    assert up.conclusive and up.difference == 10.0
    assert up.says("bought accuracy", "cost accuracy") == "bought accuracy"
    down = verdict("", 5000, 10, compare=(70.0, 80.0))
    assert down.conclusive and down.says("bought accuracy", "cost accuracy") == "cost accuracy"
    assert up.to_dict()["conclusive"] is True


def _bottleneck_numbers(b: float, n: float, n_test: int) -> dict:
    modules = {k: dict(macs=m, params=p) for k, m, p in (
        ("five_by_five", 120_422_400, 153_632), ("five_by_five_reduced", 12_443_648, 15_920),
        ("inception_3a", 128_000_000, 164_000), ("inception_3a_naive", 303_000_000, 387_000))}
    nets = dict(bottleneck=dict(test_acc=b, width=1.0, macs=3_170_000, params=20_000),
                naive=dict(test_acc=n, width=0.52, macs=3_160_000, params=19_000))
    return dict(modules=modules, nets=nets, n_test=n_test, num_classes=10)


def test_bottleneck_sentence_reads_the_verdict():
    chance, [v] = bottleneck_sentence(_bottleneck_numbers(13.8, 10.0, 80))
    assert f"{CAVEAT} (the net with reductions at 13.8% is within 2 standard errors" in chance
    assert "as the notes argue" not in chance and not v.conclusive
    clear, _ = bottleneck_sentence(_bottleneck_numbers(82.6, 77.6, 2000))
    assert "the reductions bought accuracy for the same compute, as the notes argue (+5.0" in clear
    worse, _ = bottleneck_sentence(_bottleneck_numbers(77.6, 82.6, 2000))
    assert "the reductions cost accuracy for the same compute, contrary" in worse
    noise, _ = bottleneck_sentence(_bottleneck_numbers(80.5, 80.0, 2000))
    assert f"{CAVEAT} (+0.5 points, within the noise" in noise


@pytest.mark.parametrize("setting, value, message", [
    ("sizes", "0,-5", "data-scaling setting sizes must be at least 1, got 0"),
    ("sizes", "", "data-scaling setting sizes needs at least one value"),
    ("lr", "0", "data-scaling setting lr must be greater than 0, got 0.0"),
    ("n_test", "-1", "data-scaling setting n_test must be at least 1, got -1"),
])
def test_lab_settings_are_checked_where_they_are_parsed(setting, value, message):
    with pytest.raises(ConfigError, match=message):
        get_experiment("data-scaling").resolve("quick", {setting: value})


def test_every_numeric_setting_of_every_experiment_has_a_range_its_defaults_meet():
    for name in list_experiments():
        experiment = get_experiment(name)
        for scale in ("quick", "default", "full"):
            for key, value in experiment.resolve(scale).items():
                numeric = [v for v in (value if isinstance(value, list) else [value])
                           if isinstance(v, (int, float)) and not isinstance(v, bool)]
                if numeric:
                    assert experiment.range_of(key) is not None, f"{name}.{key} has no range"
                    experiment.check(key, value)  # the shipped settings are valid ones


def test_cli_refuses_bad_sizes_in_one_line(tmp_path, capsys):
    from cnnlab.cli import main

    out = tmp_path / "l05"
    assert main(["lab", "data-scaling", "--quick", "--set", "sizes=0,-5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sizes must be at least 1, got 0" in err[0]
    assert not (out / "results.json").exists()


@pytest.fixture
def chance_idx_dir(tmp_path):
    """Fashion-MNIST's layout where every image is the same noise image: no network can beat
    chance (it sees one input, so it predicts one class: 10% of the balanced test labels)."""
    root = tmp_path / "chance"
    root.mkdir()
    image = torch.randint(0, 255, (28, 28), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)
    for split, n in (("train", 320), ("t10k", 80)):
        write_idx(root / f"{split}-images-idx3-ubyte.gz", image.expand(n, 28, 28).contiguous())
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", (torch.arange(n) % 10).to(torch.uint8))
    return root


TINY = {  # the smallest settings that still run each experiment's whole path
    "depth": {"n_train": "60", "n_test": "40"},
    "transfer": {"n_source": "60", "n_test": "30", "labels_per_class": "1,2",
                 "imagenet_size": "32", "finetune_images": "10", "min_epoch_images": "20"},
    "data-scaling": {"sizes": "20,60", "n_test": "40"},
    "ensemble": {"members": "2", "n_train": "60", "n_test": "40"},
    "tta": {"n_train": "60", "n_test": "40"},
    "equivariance": {"n_train": "60", "n_test": "40", "n_probe": "4"},
    "bottleneck": {"n_train": "60", "n_test": "40"},
    "complexity": {"n_train": "60", "n_test": "40"},
    "explicit": {"n_train": "60", "n_test": "40"},
    "invariance": {"n_train": "60", "n_test": "40", "n_probe": "4"},
    "error-sources": {"sizes": "20,60", "n_test": "40", "min_epoch_images": "60"},
    "convergence": {"n_train": "40", "n_test": "40"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list_experiments())
def test_no_experiment_confirms_a_claim_from_networks_at_chance(name, tmp_path, chance_idx_dir):
    record = run_experiment(get_experiment(name), tmp_path / name, "quick", 0, TINY.get(name, {}),
                            str(chance_idx_dir), "cpu", log=None)
    assert CAVEAT in record["sentence"], record["sentence"]
    assert any(not v["conclusive"] for v in record["verdicts"])
    for phrase in ("as the notes say", "as the notes argue", "as AlexNet found"):
        assert phrase not in record["sentence"]


def test_the_report_shows_each_verdict_and_flags_an_inconclusive_result(tmp_path):
    import html
    import json

    from cnnlab.report.html import write_report

    checks = [verdict("bottleneck vs naive", 80, 10, trained={"naive": 10.0}, compare=(13.8, 10.0)),
              verdict("modules counted", 5000, 10, compare=(80.0, 70.0))]
    record = dict(experiment="bottleneck", claim="a claim", sentence="The sentence.",
                  verdicts=[v.to_dict() for v in checks], scale="quick", seed=0, settings={},
                  numbers={}, plots=[], environment={}, started="now", elapsed_s=1.0)
    (tmp_path / "results.json").write_text(json.dumps(record))
    text = write_report(tmp_path).read_text()
    assert "<strong>Inconclusive at this scale</strong>: 1 of 2 comparisons" in text
    assert 'class="sentence unsure"' in text
    for v in checks:
        assert html.escape(v.detail) in text
    record["verdicts"] = record["verdicts"][1:]
    (tmp_path / "results.json").write_text(json.dumps(record))
    text = write_report(tmp_path).read_text()
    assert "Inconclusive at this scale" not in text and 'class="sentence"' in text
