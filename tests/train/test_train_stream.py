"""Streamed image folders through the one Trainer: training, exact resume after an interruption,
a run reloaded with its own data section, pretrained preprocessing, and two DDP processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from torchvision.transforms import v2

from cnnlab.data.stream import FileImageDataset
from cnnlab.models.weights import Preprocessing
from cnnlab.runs import evaluate_run
from cnnlab.train import RunConfig, Trainer
from cnnlab.train.config import apply_overrides
from cnnlab.train.safety import CheckpointKeeper
from cnnlab.transfer.data import TargetSpec

from ..data.test_data_stream import _pil_rgb, noise_folder


def _config(folder, **extra) -> RunConfig:
    config = RunConfig()
    apply_overrides(config, {
        "model.name": "lenet5", "data.name": "imagefolder", "data.data_dir": str(folder),
        "data.image_size": 28, "data.in_memory": "false", "data.workers": 0, "train.epochs": 2,
        "train.batch_size": 4, "train.precision": "fp32", "train.deterministic": True,
        "train.checkpoint_every": 2, "train.plot": False, "train.tensorboard": False, **extra})
    return config


class _Stop(Exception):
    pass


def test_streamed_run_trains_resumes_exactly_and_evaluates_as_it_trained(tmp_path, monkeypatch):
    folder = noise_folder(tmp_path / "imgs")
    lines = []
    full = Trainer(_config(folder, **{"data.workers": 2}), tmp_path / "full", progress=False,
                   log=lines.append)
    assert isinstance(full.train_set, FileImageDataset)
    assert any("streaming (2 worker processes)" in line for line in lines)
    history = full.fit()
    assert len(history) == 2 and 0 <= history[-1]["test_acc"] <= 1

    saved = CheckpointKeeper.write

    def stop_mid_epoch_2(self, checkpoint):  # the interruption: after epoch 2's first checkpoint
        saved(self, checkpoint)
        if checkpoint is not None and (checkpoint[0]["epoch"], checkpoint[0]["step"]) == (1, 2):
            raise _Stop

    monkeypatch.setattr(CheckpointKeeper, "write", stop_mid_epoch_2)
    with pytest.raises(_Stop):
        Trainer(_config(folder), tmp_path / "cut", progress=False, log=None).fit()
    monkeypatch.setattr(CheckpointKeeper, "write", saved)
    resumed = Trainer(_config(folder), tmp_path / "cut", progress=False, log=None, resume=True)
    assert (resumed.epoch, resumed.step) == (1, 2)
    resumed.fit()
    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model.safetensors")
    for key in a:  # workers=2 uninterrupted, workers=0 cut and resumed: the same weights
        assert torch.equal(a[key], b[key]), key

    run = evaluate_run(tmp_path / "full")  # reloaded streamed, at 28 px: the run's last row
    assert isinstance(run.test_set, FileImageDataset) and run.test_set.size == 28
    assert run.result.accuracy == pytest.approx(history[-1]["test_acc"], abs=1e-5)


@pytest.mark.parametrize("in_memory", ["true", "false"])
def test_pretrained_preprocessing_is_what_an_image_folder_gets(tmp_path, in_memory):
    folder = noise_folder(tmp_path / "imgs")
    pre = Preprocessing(resize=20, crop=16, interpolation="bicubic", mean=(0.4, 0.5, 0.6),
                        std=(0.2, 0.25, 0.3))
    target = TargetSpec("imagefolder", data_dir=str(folder), in_chans=3,
                        options={"in_memory": in_memory, "workers": 0})
    target.use_preprocessing(pre)
    test = target.load("test")
    assert test.image_shape == (3, 16, 16) and test.mean == pre.mean and test.std == pre.std
    oracle = v2.Compose([v2.Resize(20, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
                         v2.CenterCrop(16)])
    files = sorted((folder / "test").rglob("*.png"))
    images = test.take(torch.arange(len(test)))
    for got, path in zip(images, files):
        assert torch.equal(got, oracle(_pil_rgb(path)))


def _cli(*args, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return [sys.executable, "-m", "cnnlab.cli", "train", *args], env


@pytest.mark.slow
def test_two_streaming_processes_match_one(tmp_path):
    """Each rank decodes its half of every global batch; the crops are seeded per image, so two
    processes take the steps of one (LeNet-5: no BatchNorm statistics per process)."""
    folder = noise_folder(tmp_path / "imgs", per_class=(8, 2))
    common = ["lenet5", "--data", "imagefolder", "--data-dir", str(folder), "--epochs", "1",
              "--batch-size", "8", "--precision", "fp32", "--no-progress", "--set",
              "data.image_size=28", "--set", "data.in_memory=false", "--set", "train.plot=false"]
    for out, extra in (("one", []), ("two", ["--nproc", "2"])):
        command, env = _cli(*common, *extra, "--out", str(tmp_path / out))
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    assert "2 processes" in done.stdout and done.stdout.count("test accuracy:") == 1  # rank 0
    a = load_file(tmp_path / "one" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_streaming(tmp_path):
    folder = noise_folder(tmp_path / "imgs", per_class=(8, 2))
    args = ["lenet5", "--data", "imagefolder", "--data-dir", str(folder), "--epochs", "2",
            "--batch-size", "4", "--deterministic", "--checkpoint-every", "1", "--no-progress",
            "--set", "data.image_size=28", "--set", "data.in_memory=false", "--set",
            "train.plot=false", "--set", "train.threads=1"]
    command, env = _cli(*args, "--out", str(tmp_path / "full"))
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    command, env = _cli(*args, "--out", str(tmp_path / "killed"))
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state, seen = tmp_path / "killed" / "state.pt", None
    try:
        while proc.poll() is None and seen is None:
            if state.exists():
                try:
                    saved = torch.load(state, weights_only=True)
                except (EOFError, RuntimeError, OSError):
                    saved = None
                if saved is not None and saved["epoch"] >= 1 and saved["step"] > 0:
                    proc.send_signal(signal.SIGKILL)
                    seen = (saved["epoch"], saved["step"])
            time.sleep(0.002)
    finally:
        proc.wait()
    assert seen is not None, "the run finished before a mid-epoch checkpoint of epoch 2"
    command, env = _cli("--resume", str(tmp_path / "killed"), "--no-progress")
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model.safetensors")
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after kill + resume"


def test_a_feature_cache_asks_for_images_in_memory(tmp_path):
    from cnnlab.errors import ConfigError
    from cnnlab.models import create_model
    from cnnlab.train.config import ModelConfig
    from cnnlab.transfer.run import transfer

    folder = noise_folder(tmp_path / "imgs")
    source = ModelConfig(name="lenet5", num_classes=10, in_chans=3, input_size=28)
    model = create_model("lenet5", num_classes=10, in_chans=3, input_size=28)
    target = TargetSpec("imagefolder", data_dir=str(folder), options={"in_memory": "false",
                                                                      "workers": 0})
    with pytest.raises(ConfigError, match="data.in_memory=true"):
        transfer(model, source, target, RunConfig(), tmp_path / "run", cache_features=True, log=None)
    assert not (tmp_path / "run").exists()
