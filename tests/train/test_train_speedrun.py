"""The Trainer's speed-run mechanisms: lookahead, data-dependent init, per-epoch model hooks,
alternating flips and flip_shift TTA through the run (airbench, Jordan 2024)."""

import pytest
import torch
from torch import nn

from cnnlab.data.loader import normalize
from cnnlab.errors import ConfigError
from cnnlab.models.fastnet import WhiteningConv
from cnnlab.train import RunConfig, Trainer
from cnnlab.train.optim import Lookahead, lookahead_decay

from ..conftest import run_config


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0]))
        self.register_buffer("stat", torch.tensor([10.0]))
        self.register_buffer("count", torch.tensor(0))  # integer: never averaged

    def forward(self, x):
        return x * self.w


def test_lookahead_matches_the_hand_computation():
    model = _Tiny()
    la = Lookahead(model, every=2, total_steps=6, peak=0.5)
    slow_w, slow_s = 1.0, 10.0
    for step, (w, s) in enumerate([(2.0, 11.0), (3.0, 12.0), (4.0, 13.0), (5.0, 14.0),
                                   (6.0, 15.0), (7.0, 16.0)], start=1):
        with torch.no_grad():  # what an optimizer step (and BatchNorm) left in the model
            model.w.fill_(w)
            model.stat.fill_(s)
            model.count.fill_(step)
        la.step(model, step)
        if step == 6:  # the end: the model takes the slow weights, which do not move
            expect_w, expect_s = slow_w, slow_s
        elif step % 2 == 0:
            d = 0.5 * (step / 6) ** 3
            slow_w, slow_s = d * slow_w + (1 - d) * w, d * slow_s + (1 - d) * s
            expect_w, expect_s = slow_w, slow_s
        else:
            expect_w, expect_s = w, s
        assert model.w.item() == pytest.approx(expect_w, rel=1e-6)
        assert model.stat.item() == pytest.approx(expect_s, rel=1e-6)
        assert model.count.item() == step
    assert lookahead_decay(3, 6, 0.5) == pytest.approx(0.5 / 8)


def _config(**train):
    return run_config("fastnet_s", **{"epochs": 2, "batch_size": 64, "lr": 0.05, **train})


def test_trainer_lookahead_leaves_the_slow_weights_in_the_model_and_resumes(tmp_path, tiny_dataset):
    train_set, test_set = tiny_dataset
    trainer = Trainer(_config(epochs=1, lookahead_every=2), tmp_path / "run", train_set, test_set,
                      progress=False, log=None)
    trainer.fit()
    slow = trainer.lookahead.slow
    for name, value in trainer.model.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(value, slow[name]), name
    state = trainer.state_dict()
    assert set(state["lookahead"]["slow"]) == set(slow)


def test_whitening_stem_is_fitted_on_a_fresh_run_and_its_bias_frozen_after_n_epochs(
        tmp_path, tiny_dataset, monkeypatch):
    train_set, test_set = tiny_dataset
    config = _config(epochs=2)
    config.model.options = dict(whiten=True, whiten_bias_epochs=1)
    biases = []
    original = WhiteningConv.init_from_data
    calls = []
    monkeypatch.setattr(WhiteningConv, "init_from_data",
                        lambda self, images: (calls.append(images.shape), original(self, images)))
    trainer = Trainer(config, tmp_path / "run", train_set, test_set, progress=False, log=None)
    stem = trainer.model.stem[0]
    expected = WhiteningConv(1)
    original(expected, normalize(train_set.images, train_set.mean, train_set.std))
    torch.testing.assert_close(stem.weight, expected.weight)  # all 320 images (< 5000)
    fitted = stem.weight.detach().clone()
    real_set_epoch = trainer.model.set_epoch

    def record(epoch):
        biases.append(stem.bias.detach().clone())
        real_set_epoch(epoch)
    monkeypatch.setattr(trainer.model, "set_epoch", record)
    trainer.fit()
    assert calls == [(320, 1, 28, 28)]
    assert torch.equal(biases[0], torch.zeros(8))  # epoch 1 starts from zero
    assert not torch.equal(biases[1], biases[0])  # trained in epoch 1
    assert torch.equal(stem.bias, biases[1])  # frozen after epoch 1
    assert torch.equal(stem.weight, fitted)  # the filters never train
    config.train.epochs = 3
    resumed = Trainer(config, tmp_path / "run", train_set, test_set, progress=False,
                      log=None, resume=True)
    assert len(calls) == 1  # a resume takes the weights from the checkpoint
    torch.testing.assert_close(resumed.model.stem[0].weight, fitted)


def test_flip_shift_needs_flip_and_is_the_runs_evaluation(tmp_path, tiny_dataset):
    config = _config(epochs=1, tta_shift=True)
    with pytest.raises(ConfigError, match="tta_flip"):
        config.validate()
    config.train.tta_flip = True
    config.augment.flip, config.augment.flip_mode = 0.5, "alternate"
    trainer = Trainer(config, tmp_path / "run", *tiny_dataset, progress=False, log=None)
    assert trainer.eval_tta == "flip_shift" and trainer.loader.transform.needs_index
    from cnnlab.evaluate.metrics import evaluate_model

    history = trainer.fit()
    direct = evaluate_model(trainer.eval_model, tiny_dataset[1], tta="flip_shift")
    assert history[-1]["test_acc"] == pytest.approx(direct.accuracy, abs=1e-5)


def test_bias_lr_scale_gives_norms_and_biases_their_own_learning_rate():
    from cnnlab.train.optim import build_optimizer

    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    config = RunConfig()
    config.train.lr, config.train.momentum, config.train.bias_lr_scale = 0.1, 0.0, 64.0
    optimizer = build_optimizer(model, config)
    decay, no_decay = optimizer.param_groups
    assert decay["params"] == [model[0].weight] and decay["lr"] == pytest.approx(0.1)
    assert len(no_decay["params"]) == 3 and no_decay["lr"] == pytest.approx(6.4)
    before = model[0].bias.detach().clone()
    model(torch.randn(4, 3)).sum().backward()
    grad = model[0].bias.grad.clone()
    optimizer.step()
    torch.testing.assert_close(model[0].bias, before - 6.4 * grad)  # SGD, no momentum, no decay
