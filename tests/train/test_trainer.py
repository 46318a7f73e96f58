import json

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.errors import ConfigError
from cnnlab.train import RunConfig, Trainer, apply_overrides, load_run_model, read_metrics
from cnnlab.train.checkpoint import METRICS_COLUMNS
from cnnlab.train.trainer import lr_factor

from ..conftest import run_config


def _config(**train):
    return run_config("lenet5_modern", **{"epochs": 4, "batch_size": 32, "lr": 0.05, "plot": True,
                                          "tensorboard": True, **train})


def test_training_reduces_loss_and_writes_the_run(tmp_path, tiny_dataset):
    train_set, test_set = tiny_dataset
    trainer = Trainer(_config(), tmp_path / "run", train_set, test_set, progress=False, log=None)
    history = trainer.fit()
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["test_acc"] > 0.5  # 10 classes: chance is 0.1
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "curves.png", "metrics.csv",
                                                      "model.safetensors", "state.pt"]
    rows = read_metrics(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert (run / "metrics.csv").read_text().splitlines()[0] == ",".join(METRICS_COLUMNS)
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["name"] == "lenet5_modern" and saved["model"]["num_classes"] == 10
    config, model = load_run_model(run)
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert set(load_file(run / "model.safetensors")) == set(trainer.model.state_dict())


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, tiny_dataset):
    def weights(seed, name):
        trainer = Trainer(_config(epochs=1, seed=seed), tmp_path / name, *tiny_dataset,
                          progress=False, log=None)
        trainer.fit()
        return trainer.model.state_dict()

    a, b, c = weights(1, "a"), weights(1, "b"), weights(2, "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_adamw_and_no_decay_on_biases(tmp_path, tiny_dataset):
    trainer = Trainer(_config(epochs=1, optimizer="adamw", lr=2e-3), tmp_path, *tiny_dataset,
                      progress=False, log=None)
    decay, no_decay = trainer.optimizer.param_groups
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert all(p.ndim > 1 for p in decay["params"]) and no_decay["weight_decay"] == 0
    assert all(p.ndim == 1 for p in no_decay["params"])


def test_cosine_schedule_with_warmup():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0)
    assert lr_factor(50, 100, 0, "constant") == 1.0


def test_nan_loss_stops_with_a_clear_message(tmp_path, tiny_dataset):
    trainer = Trainer(_config(epochs=1, lr=1e12, optimizer="sgd"), tmp_path, *tiny_dataset,
                      progress=False, log=None)
    with pytest.raises(ConfigError, match="lower the learning rate"):
        trainer.fit()


def test_overrides_are_checked():
    config = RunConfig()
    apply_overrides(config, ["train.lr=0.1", "train.nesterov=true", "model.input_size=32"])
    assert (config.train.lr, config.train.nesterov, config.model.input_size) == (0.1, True, 32)
    with pytest.raises(ConfigError, match="unknown config key 'train.lrr'"):
        apply_overrides(config, ["train.lrr=1"])
    with pytest.raises(ConfigError, match="not a valid int"):
        apply_overrides(config, ["train.epochs=many"])
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides(config, ["epochs"])
    assert RunConfig.from_dict(config.to_dict()) == config


def test_side_classifiers_join_the_loss(tmp_path, tiny_dataset):
    """GoogLeNet returns (logits, aux2, aux1) in training mode: the loss adds 0.3 x each."""
    import torch.nn.functional as F

    from cnnlab.models.googlenet import googlenet_loss

    config = _config(epochs=1, batch_size=16)
    config.model.name = "googlenet"
    train_set, test_set = (d.subset(torch.arange(32)) for d in tiny_dataset)
    trainer = Trainer(config, tmp_path, train_set, test_set, progress=False, log=None)
    images, labels = next(iter(trainer.loader))
    trainer.model.train()
    outputs = trainer.model(images)
    assert len(outputs) == 3
    logits, *aux = outputs
    by_hand = F.cross_entropy(logits, labels) + 0.3 * sum(F.cross_entropy(a, labels) for a in aux)
    torch.testing.assert_close(trainer.loss(outputs, labels), by_hand)  # the model's own loss
    torch.testing.assert_close(googlenet_loss(outputs, labels), by_hand)
    assert trainer.loss.__func__ is Trainer.loss and "aux" not in Trainer.loss.__code__.co_names
    history = trainer.fit()
    assert len(history) == 1 and history[0]["train_loss"] > 0


def test_precision_probe_takes_models_with_side_classifiers():
    """`auto` precision times a training step; GoogLeNet-style (logits, aux...) outputs work."""
    from torch import nn

    from cnnlab.device import cpu_candidates, measure_cpu_precision

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc, self.aux = nn.Linear(4, 10), nn.Linear(4, 10)

        def forward(self, x):
            h = self.conv(x).mean((2, 3))
            return (self.fc(h), self.aux(h)) if self.training else self.fc(h)

    chosen, times = measure_cpu_precision(TwoHeads(), torch.randn(4, 1, 8, 8), torch.arange(4))
    assert chosen in cpu_candidates().values() and set(times) == set(cpu_candidates())


def test_the_callers_config_is_not_written_and_the_saved_one_is_resolved(tmp_path, tiny_dataset):
    config = _config(epochs=1)
    before = config.to_dict()
    trainer = Trainer(config, tmp_path, *tiny_dataset, progress=False, log=None)
    trainer.fit()
    assert config.to_dict() == before  # model sizes, precision: still as the caller left them
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved == trainer.config.to_dict()
    assert (saved["model"]["num_classes"], saved["model"]["in_chans"], saved["model"]["input_size"]) \
        == (10, 1, 28)  # from the data: 10 classes of 1x28x28 images
    assert saved["train"]["precision"] == trainer.precision.name
    assert saved["train"]["channels_last"] == trainer.precision.channels_last


def test_history_rows_are_typed_and_lr_follows_the_schedule(tmp_path, tiny_dataset):
    history = Trainer(_config(epochs=2), tmp_path, *tiny_dataset, progress=False, log=None).fit()
    for row in history:
        assert isinstance(row["epoch"], int)
        assert all(isinstance(row[k], float) for k in ("train_loss", "lr", "images_per_s"))
    # cosine without warm-up, 10 steps per epoch: factor 1 at step 0, (1 + cos(pi/2)) / 2 at step 10
    assert [row["lr"] for row in history] == pytest.approx([0.05, 0.025])
    assert [row["lr"] for row in read_metrics(tmp_path / "metrics.csv")] == pytest.approx([0.05, 0.025])


def test_state_dict_round_trip_continues_the_same_run(tmp_path, tiny_dataset):
    straight = Trainer(_config(epochs=2), tmp_path / "a", *tiny_dataset, progress=False, log=None)
    straight.fit()
    class Stop(Exception):
        pass

    def stop_after_epoch_1(line):
        if line.startswith("epoch   1/"):
            raise Stop

    first = Trainer(_config(epochs=2), tmp_path / "b", *tiny_dataset, progress=False,
                    log=stop_after_epoch_1)
    with pytest.raises(Stop):
        first.fit()
    state = first.state_dict()
    second = Trainer(_config(epochs=2), tmp_path / "c", *tiny_dataset, progress=False, log=None)
    second.load_state_dict(state)
    assert (second.epoch, second.step) == (1, 0) and len(second.history) == 1
    second.fit()
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[key], value)


def test_a_given_loss_fn_is_the_one_minimised(tmp_path, tiny_dataset):
    import torch.nn.functional as F

    calls = []

    def loss_fn(outputs, targets):
        calls.append(len(targets))
        return F.cross_entropy(outputs, targets) * 0.0 + outputs.pow(2).mean()  # pull logits to 0

    trainer = Trainer(_config(epochs=2, lr=0.1), tmp_path, *tiny_dataset, progress=False, log=None,
                      loss_fn=loss_fn)
    history = trainer.fit()
    assert sum(calls) == 2 * len(tiny_dataset[0])
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_a_network_of_ones_own_under_a_name_the_zoo_does_not_know(tmp_path, tiny_dataset):
    train_set, test_set = tiny_dataset
    config = _config(epochs=1)
    config.model.name = "pixels"  # not a zoo name: the model passed in is what trains
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    history = Trainer(config, tmp_path / "run", train_set, test_set, progress=False, log=None,
                      model=model).fit()
    assert len(history) == 1
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["registry"] is False and saved["model"]["name"].endswith("Sequential")
