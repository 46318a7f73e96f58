"""The convergence experiment: epochs-to-final by hand, a tiny run checked against its runs'
metrics.csv, and the sentence on made-up curves."""

from __future__ import annotations

import pytest

from cnnlab.lab import get_experiment, run_experiment
from cnnlab.lab.convergence import _sentence, epochs_to_within
from cnnlab.train import read_metrics


def test_epochs_to_within_is_the_first_epoch_near_the_final():
    assert epochs_to_within([50.0, 80.0, 84.5, 85.0], 1.0) == 3
    assert epochs_to_within([86.0, 70.0, 85.0], 1.0) == 1  # first reach counts
    assert epochs_to_within([10.0], 1.0) == 1


@pytest.mark.slow
def test_tiny_run_records_both_curves_as_the_runs_did(tmp_path, tiny_idx_dir, monkeypatch):
    from torch import nn

    from cnnlab.lab.common import LabContext

    momenta, train = [], LabContext.train

    def spy(self, model, *args, **kwargs):  # what the Trainer is given
        momenta.append({m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)})
        return train(self, model, *args, **kwargs)

    monkeypatch.setattr(LabContext, "train", spy)
    out = tmp_path / "conv"
    record = run_experiment(get_experiment("convergence"), out, "quick", 0,
                            {"n_train": "40", "n_test": "20", "epochs": "2"}, str(tiny_idx_dir),
                            "cpu", log=None)
    runs = record["numbers"]["runs"]
    assert list(runs) == ["imagenet", "scratch"]
    assert momenta == [{0.1}, {0.1}]  # both runs' BatchNorm statistics follow bn_momentum
    for init, run in runs.items():
        rows = read_metrics(out / "runs" / init / "metrics.csv")
        assert run["test_acc"] == [round(100 * r["test_acc"], 2) for r in rows]
        assert run["final"] == run["test_acc"][-1] and len(rows) == 2
        assert run["epochs_to_within"] == epochs_to_within(run["test_acc"], 1.0)
    config = (out / "runs" / "imagenet" / "config.json").read_text()
    assert '"optimizer": "adamw"' in config
    assert (out / "convergence.png").read_bytes()[:4] == b"\x89PNG"


def _numbers(pre: list[float], scratch: list[float], n_test: int = 2000) -> dict:
    def run(acc: list[float]) -> dict:
        return dict(test_acc=acc, final=acc[-1], epochs_to_within=epochs_to_within(acc, 1.0))
    return dict(runs=dict(imagenet=run(pre), scratch=run(scratch)), within=1.0, n_test=n_test,
                num_classes=10, n_train=10000, image_size=32, model="efficientnet_lite0")


def test_sentence_reads_speed_and_finals_through_the_noise():
    text, checks = _sentence(_numbers([85.0, 88.0, 89.0], [70.0, 84.0, 88.6]))
    assert "came within 1 point of its final 89.0% after 2 epochs (85.0% after the first)" in text
    assert "from scratch within 1 point of 88.6% after 3 epochs (70.0% after the first)" in text
    assert "pre-training sped up convergence (+15.0 points, beyond" in text
    assert "the finals agree within noise (+0.4 points, within" in text and "as He et al. found" in text
    assert [c.conclusive for c in checks] == [True, False]
    higher, _ = _sentence(_numbers([85.0, 88.0, 89.0], [70.0, 80.0, 82.0]))
    assert "and also ended higher (+7.0 points" in higher
    unclear, _ = _sentence(_numbers([70.5, 80.0, 82.0], [70.0, 80.0, 82.0]))
    assert "whether pre-training sped up convergence is inconclusive at this scale (+0.5" in unclear
    chance, _ = _sentence(_numbers([12.0, 13.0], [10.0, 11.0], n_test=80))
    assert "inconclusive at this scale (the fine-tuned net at 13.0% is within 2 standard errors" in chance
