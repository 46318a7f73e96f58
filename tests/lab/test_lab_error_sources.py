"""The error-sources experiment: a tiny grid checked against the family's parameter formula and
errors recomputed here from the saved weights, and its sentence on made-up numbers."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.datasets import balanced_order, load_dataset
from cnnlab.data.loader import normalize
from cnnlab.lab import get_experiment, run_experiment
from cnnlab.lab.error_sources import _sentence, family
from cnnlab.models.fastnet import _param_count
from cnnlab.train.checkpoint import load_weights


@pytest.mark.slow
def test_tiny_grid_measures_every_width_and_size(tmp_path, tiny_idx_dir):
    out = tmp_path / "err"
    settings = {"widths": "2,3", "sizes": "20,60", "n_test": "40", "min_epoch_images": "60"}
    lines = []
    record = run_experiment(get_experiment("error-sources"), out, "quick", 0, settings,
                            str(tiny_idx_dir), "cpu", log=lines.append)
    # the log counts distinct images, not the repeats that fill an epoch
    assert any(line.startswith("  w2-n20: 20 images (repeated to 60 per epoch) x 1 epoch")
               for line in lines), lines
    assert any(line.startswith("  w2-n60: 60 images x 1 epoch") for line in lines), lines
    n = record["numbers"]
    assert [(c["width"], c["n_train"]) for c in n["cells"]] == [(2, 20), (2, 60), (3, 20), (3, 60)]
    assert n["long_size"] == 60 and [c["epochs"] for c in n["long"]] == [2, 2]  # 1 epoch x 2
    full = load_dataset("fashion-mnist", "train", str(tiny_idx_dir))
    test = load_dataset("fashion-mnist", "test", str(tiny_idx_dir))
    test = test.subset(balanced_order(test.labels, 0)[:40])
    for cell in n["cells"]:
        w = cell["width"]
        assert cell["params"] == _param_count(w, (w, 2 * w, 4 * w))  # the family's own formula
        model = load_weights(family(w, 1, 10), out / "runs" / f"w{w}-n{cell['n_train']}" /
                             "model.safetensors").eval()
        seen = full.subset(balanced_order(full.labels, 0)[:cell["n_train"]])  # the nested subset
        with torch.no_grad():
            for images, labels, key in ((seen.images, seen.labels, "train_error"),
                                        (test.images, test.labels, "test_error")):
                wrong = (model(normalize(images, full.mean, full.std)).argmax(1) != labels)
                assert cell[key] == pytest.approx(100 * wrong.float().mean().item(), abs=0.01)
        assert cell["gap"] == pytest.approx(cell["test_error"] - cell["train_error"], abs=0.011)
    assert (out / "error_sources.png").is_file()


def _cell(width: int, n: int, train: float, test: float, epochs: int = 3) -> dict:
    params = _param_count(width, (width, 2 * width, 4 * width))
    return dict(width=width, params=params, n_train=n, epochs=epochs, n_eval_train=min(n, 2000),
                train_error=train, test_error=test, gap=round(test - train, 2))


def _numbers(cells: dict, long: dict) -> dict:
    return dict(cells=[_cell(w, n, *errors) for (w, n), errors in cells.items()],
                long=[_cell(w, 4000, e, 20.0, epochs=12) for w, e in long.items()],
                long_size=4000, long_factor=4, sizes=[1000, 4000, 16000], widths=[2, 16],
                n_test=2000, num_classes=10)


def test_sentence_names_the_dominant_error_in_each_corner():
    cells = {(2, 1000): (30.0, 32.0), (2, 4000): (29.0, 30.0), (2, 16000): (28.0, 29.0),
             (16, 1000): (2.0, 20.0), (16, 4000): (6.0, 14.0), (16, 16000): (9.0, 11.0)}
    text, checks = _sentence(_numbers(cells, {2: 27.5, 16: 1.0}))
    assert ("the widest net (74,992 parameters) on 1,000 images ended with 2.0% training and "
            "20.0% test error: a train-test gap of +18.0 points, beyond the noise") in text
    assert "so estimation error (the train-test gap) dominated there;" in text
    assert ("the narrowest (1,310) on 16,000 images kept 28.0% training error against a gap of "
            "+1.0 points: more training error than the widest net's 9.0% (+19.0 points, "
            "beyond") in text
    assert "so modelling and optimisation error (the training error) dominated there;" in text
    assert "lowered the training error by at most 5.0 points (width 16): optimisation error was " \
           "the larger part of that net's training error" in text
    assert [c.conclusive for c in checks] == [True, True, True]
    # a gap within the test set's noise decides nothing
    cells[(16, 1000)] = (19.0, 20.0)
    close, _ = _sentence(_numbers(cells, {2: 27.5, 16: 5.5}))
    assert "test error: inconclusive at this scale (+1.0 points, within the noise" in close
