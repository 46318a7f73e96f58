"""The transfer experiment: a tiny run over both sources and targets, and the sentence read off
numbers made up here (so each branch of the claim is checked against what the numbers say)."""

from __future__ import annotations

import pytest

from cnnlab.lab import get_experiment, run_experiment
from cnnlab.lab.transfer import METHODS, _sentence


@pytest.mark.slow
def test_tiny_run_measures_every_method_for_both_targets(tmp_path, tiny_idx_dir):
    tiny = {"n_source": "60", "n_test": "30", "labels_per_class": "1,2", "imagenet_size": "32",
            "finetune_images": "10", "min_epoch_images": "20"}
    record = run_experiment(get_experiment("transfer"), tmp_path / "t", "quick", 0, tiny,
                            str(tiny_idx_dir), "cpu", log=None)
    accuracy = record["numbers"]["accuracy"]
    assert list(accuracy) == ["fashion 5-9", "digits"]
    for target in accuracy.values():
        assert list(target) == list(METHODS)
        for method in METHODS:
            assert list(target[method]) == [1, 2] and all(0 <= v <= 100 for v in target[method].values())
    assert record["sentence"].startswith("With 2 labels per class, frozen ImageNet features")  # nearest 10
    assert (tmp_path / "t" / "transfer.png").is_file()
    runs = {p.name for p in (tmp_path / "t" / "runs").iterdir()}
    assert {"source", "digits-k2-imagenet-frozen", "fashion-k1-imagenet-finetune"} <= runs


def _numbers(**overrides) -> dict:
    base = {"scratch": 60.0, "pixels": 55.0, "fashion frozen": 62.0, "fashion finetune": 65.0,
            "imagenet frozen": 80.0, "imagenet finetune": 84.0}
    digits = dict(base, **{"fashion frozen": 58.0, "fashion finetune": 59.0})
    accuracy = {"fashion 5-9": {m: {10: v, 100: v + 5} for m, v in dict(base, **overrides).items()},
                "digits": {m: {10: v, 100: v + 5} for m, v in digits.items()}}
    return dict(accuracy=accuracy, n_test={"fashion 5-9": 2000, "digits": 449},
                num_classes={"fashion 5-9": 5, "digits": 10}, imagenet="efficientnet_lite0")


def test_sentence_follows_the_numbers():
    text, verdicts = _sentence(_numbers())
    assert len(verdicts) == 5 and all(v.conclusive for v in verdicts[:2])
    assert text.startswith("With 10 labels per class, frozen ImageNet features (efficientnet_lite0) "
                           "reached 80.0% on fashion 5-9 (scratch 60.0%, pixels 55.0%")
    assert "served both new tasks better than training from scratch or pixels, as the notes say" in text
    assert "helped its similar target more (+5.0 points against scratch on fashion 5-9, -1.0 on digits)" \
        in text
    assert ("fine-tuning ImageNet's network beat freezing it (+4.0 points, beyond the noise of ±2.1 "
            "(2 s.e. on 2,000 images))") in text
    # ImageNet features no better than scratch: the sentence says the claim failed here
    worse, _ = _sentence(_numbers(**{"imagenet frozen": 60.5, "imagenet finetune": 60.5}))
    assert ("they beat both baselines on digits (+20.0 points, beyond the noise of ±6.1 (2 s.e. on "
            "449 images)); on the other target the comparison is inconclusive at this scale "
            "(+0.5 points, within the noise") in worse
    lost, _ = _sentence(_numbers(**{"imagenet frozen": 50.0}))
    assert "they beat both baselines on one target only" in lost
    # the small source hurting both targets is said as it is
    hurt, _ = _sentence(_numbers(**{"fashion frozen": 50.0, "fashion finetune": 52.0}))
    assert ("helped neither target beyond the test sets' noise (-8.0 points against scratch on "
            "fashion 5-9, -1.0 on digits): inconclusive at this scale (-1.0 points") in hurt
    # a gain within noise is not called help
    small, _ = _sentence(_numbers(**{"fashion frozen": 61.0, "fashion finetune": 61.5}))
    assert "helped neither target beyond the test sets' noise" in small
    # a difference within two standard errors of the test set is not called a win
    close, _ = _sentence(_numbers(**{"imagenet finetune": 80.5}))
    assert "matched freezing it: inconclusive at this scale (+0.5 points, within the noise" in close
    # ImageNet features at chance (20% for five classes) confirm nothing
    chance, _ = _sentence(_numbers(**{"imagenet frozen": 21.0}))
    assert "inconclusive at this scale (frozen ImageNet at 21.0% is within 2 standard errors" in chance
