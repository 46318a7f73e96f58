"""Schedules, EMA, clipping, early stopping, config files, recipes, the NaN stop."""

import json

import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.train import RunConfig, Trainer
from cnnlab.train.optim import EMA, lr_factor
from cnnlab.train.recipes import RECIPES, recipe_config

from ..conftest import run_config


def _config(**train):
    return run_config("lenet5_modern", **{"epochs": 2, "batch_size": 32, "tensorboard": True,
                                          **train})


def test_onecycle_and_step_schedules():
    assert lr_factor(4, 100, 10, "onecycle") == pytest.approx(0.5)  # warm-up (4 + 1) / 10
    assert lr_factor(55, 100, 10, "onecycle") == pytest.approx(0.5)  # halfway down
    assert lr_factor(100, 100, 10, "onecycle", final=0.1) == pytest.approx(0.1)
    assert [lr_factor(s, 100, 0, "step", [30, 60], 0.1) for s in (29, 30, 60)] == pytest.approx(
        [1.0, 0.1, 0.01])


def test_ema_is_the_exponential_average_of_the_weights():
    model = torch.nn.Linear(2, 1, bias=False)
    ema = EMA(model, decay=0.5)
    values = [1.0, 3.0, -2.0]
    expected = model.weight.detach().clone()
    for n, v in enumerate(values, start=1):
        with torch.no_grad():
            model.weight.fill_(v)
        ema.update(model)
        d = min(0.5, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * v
    torch.testing.assert_close(ema.module.weight, expected)


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_dataset):
    trainer = Trainer(_config(epochs=2, lr=0.05), tmp_path, *tiny_dataset, progress=False, log=None)
    trainer.fit()
    good = (tmp_path / "model.safetensors").read_bytes()
    config = _config(epochs=3, lr=0.05)
    config.train.schedule = "constant"
    trainer = Trainer(config, tmp_path, *tiny_dataset, progress=False, log=None, resume=True)
    trainer.optimizer.param_groups[0]["lr"] = 1e30
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(ConfigError, match="became nan.*last good checkpoint"):
        trainer.fit()
    assert (tmp_path / "model.safetensors").read_bytes() == good


def test_early_stopping_and_clipping_and_ema_run(tmp_path, tiny_dataset):
    config = _config(epochs=6, early_stop_patience=1, grad_clip=0.5, ema_decay=0.9, lr=1e-6)
    history = Trainer(config, tmp_path, *tiny_dataset, progress=False, log=None).fit()
    assert len(history) < 6  # a learning rate of 1e-6 cannot keep improving the test accuracy


def test_eval_every_tests_every_nth_epoch_and_the_last(tmp_path, tiny_dataset):
    from cnnlab.train import read_metrics

    config = _config(epochs=5, eval_every=2)
    config.train.plot = True
    history = Trainer(config, tmp_path, *tiny_dataset, progress=False, log=None).fit()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["test_acc"] is not None for r in rows] == [False, True, False, True, True]
    assert [r["test_acc"] is not None for r in history] == [False, True, False, True, True]
    assert all(r["train_acc"] is not None for r in rows) and (tmp_path / "curves.png").stat().st_size
    with pytest.raises(ConfigError, match="eval_every"):
        _config(eval_every=0).validate()


def test_config_file_yaml_and_precedence(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: resnet20}\ntrain: {epochs: 3, lr: 0.1}\naugment: {flip: 0.5}\n")
    assert main(["train", "--config", str(path), "--epochs", "5", "--set", "train.lr=0.2", "--show"]) == 0
    shown = capsys.readouterr().out
    assert "name: resnet20" in shown and "epochs: 5" in shown and "lr: 0.2" in shown
    assert "flip: 0.5" in shown
    json_path = tmp_path / "c.json"
    json_path.write_text(json.dumps({"train": {"epochs": "x"}}))
    with pytest.raises(ConfigError, match="not a valid int"):
        RunConfig.from_file(json_path)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipes_resolve_and_show(name, capsys):
    config = recipe_config(name).validate()
    assert config.model.name.startswith("fastnet") and config.augment.enabled()
    assert main(["train", "--recipe", name, "--show", "--set", "train.epochs=1"]) == 0
    assert "epochs: 1" in capsys.readouterr().out


def test_help_lists_every_config_key(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for section, keys in RunConfig().to_dict().items():
        for key in keys:
            assert f"{section}.{key}=" in text


def test_loader_shards_partition_each_global_batch_and_resume_at_a_batch(tiny_dataset):
    from cnnlab.data.loader import InMemoryLoader

    train, _ = tiny_dataset
    ids = train.subset(torch.arange(len(train)))
    ids.labels = torch.arange(len(train))  # label = index: batches reveal which examples they hold

    def batches(rank=0, world=1, start=0):
        loader = InMemoryLoader(ids, 32, shuffle=True, seed=3, rank=rank, world_size=world, prefetch=0)
        loader.set_epoch(2, start)
        return [labels for _, labels in loader]

    full = batches()
    halves = zip(batches(0, 2), batches(1, 2))
    for whole, (a, b) in zip(full, halves, strict=True):
        assert sorted(torch.cat([a, b]).tolist()) == sorted(whole.tolist()) and len(a) == len(b)
    assert [b.tolist() for b in batches(start=4)] == [b.tolist() for b in full[4:]]
    assert sorted(torch.cat(full).tolist()) == list(range(len(train)))  # a permutation per epoch


def test_prefetch_producer_prepares_batches_on_one_thread_and_leaves_the_default(tiny_dataset):
    import threading

    from cnnlab.data.loader import InMemoryLoader

    train, _ = tiny_dataset
    seen = []

    def transform(images, labels, generator):  # runs in the producer thread
        seen.append(torch.get_num_threads())
        return images.float(), labels

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        batches = list(InMemoryLoader(train, 32, prefetch=2, transform=transform))
        assert len(batches) == len(seen) > 1 and set(seen) == {1}
        assert torch.get_num_threads() == 2  # the training thread keeps its team
        later = []
        thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert later == [2]  # threads started afterwards get the default again
    finally:
        torch.set_num_threads(before)
