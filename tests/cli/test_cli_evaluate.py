"""One run, one accuracy: metrics.csv, `cnnlab evaluate` and the report agree, with and without
flip TTA, and flip TTA is the mean of the probabilities of the image and its mirror."""

import re

import pytest
import torch

from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.data.loader import normalize
from cnnlab.train import load_run_model, read_metrics


def _train(tiny_idx_dir, out, *extra):
    argv = ["train", "lenet5_modern", "--data-dir", str(tiny_idx_dir), "--epochs", "1",
            "--batch-size", "32", "--no-progress", "--set", "data.download=false",
            "--set", "train.plot=false", "--set", "train.eval_batch_size=30", *extra,
            "--out", str(out)]
    assert main(argv) == 0
    return out


def _printed_accuracy(text: str) -> float:
    return float(re.search(r"^test accuracy: ([\d.]+)%", text, re.M).group(1))


@pytest.mark.parametrize("tta_flip", [False, True])
def test_training_evaluate_and_report_give_the_same_accuracy(tiny_idx_dir, tmp_path, capsys, tta_flip):
    run = _train(tiny_idx_dir, tmp_path / "run", "--set", f"train.tta_flip={str(tta_flip).lower()}",
                 "--set", "augment.flip=0.5")
    trained = read_metrics(run / "metrics.csv")[-1]["test_acc"]
    assert _printed_accuracy(capsys.readouterr().out) == pytest.approx(100 * trained, abs=0.005)

    # oracle, independent of cnnlab's evaluation code: softmax of the model's logits on the
    # normalised test images, averaged with those of the mirrored images when tta_flip is on
    config, model = load_run_model(run)
    test = load_dataset("fashion-mnist", "test", str(tiny_idx_dir), download=False)
    x = normalize(test.images, test.mean, test.std)
    with torch.no_grad():
        probs = model(x).softmax(1)
        if tta_flip:
            probs = 0.5 * (probs + model(x.flip(-1)).softmax(1))
    oracle = (probs.argmax(1) == test.labels).float().mean().item()
    assert trained == pytest.approx(oracle, abs=1e-5)

    assert main(["evaluate", str(run), "--data-dir", str(tiny_idx_dir)]) == 0
    text = capsys.readouterr().out
    assert "(the run's own settings)" in text and f"TTA {'flip' if tta_flip else 'none'}" in text
    assert _printed_accuracy(text) == pytest.approx(100 * trained, abs=0.005)

    from cnnlab.report.html import write_report

    page = write_report(run, tmp_path / "r.html", str(tiny_idx_dir)).read_text()
    shown = re.search(r"<td>top-1 accuracy %</td><td class=\"num\">([\d.]+)</td>", page).group(1)
    assert float(shown) == pytest.approx(100 * trained, abs=0.005)


def test_other_settings_are_explicit_and_said(tiny_idx_dir, tmp_path, capsys):
    run = _train(tiny_idx_dir, tmp_path / "run")
    capsys.readouterr()
    assert main(["evaluate", str(run), "--tta", "flip", "--batch-size", "7",
                 "--data-dir", str(tiny_idx_dir)]) == 0
    text = capsys.readouterr().out
    assert "TTA flip · batch 7 (given options over the run's settings)" in text


def test_a_model_passed_in_python_is_described_as_such(tiny_dataset, tmp_path, capsys):
    from torch import nn

    from cnnlab.models import create_model
    from cnnlab.train import RunConfig, Trainer

    class TwoLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(28 * 28, 32), nn.Linear(32, 10)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x.flatten(1))))

    config = RunConfig()  # model.name is lenet5 by default: it must not be claimed
    config.train.epochs, config.train.precision, config.train.plot = 1, "fp32", False
    lines = []
    trainer = Trainer(config, tmp_path / "own", *tiny_dataset, progress=False, log=lines.append,
                      model=TwoLayer())
    trainer.fit()
    assert any("TwoLayer (passed in Python, not a registry model)" in line for line in lines)
    saved = trainer.config.model
    assert not saved.registry and saved.name.endswith("TwoLayer")
    code = main(["evaluate", str(tmp_path / "own")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "load_weights" in err
    # a zoo model passed in keeps its registry name: evaluate rebuilds it
    net = create_model("lenet5", num_classes=10, in_chans=1, input_size=28)
    trainer = Trainer(config, tmp_path / "zoo", *tiny_dataset, progress=False, log=None, model=net)
    trainer.fit()
    assert trainer.config.model.registry and trainer.config.model.name == "lenet5"
    assert load_run_model(tmp_path / "zoo")[1].c1.weight.shape == net.c1.weight.shape
