"""Kill a training process with SIGKILL mid-epoch, resume it, and get the uninterrupted weights."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.train import read_metrics

pytestmark = pytest.mark.slow


def _command(out, data_dir, *extra):
    return [sys.executable, "-m", "cnnlab.cli", "train", *extra, "--out", str(out)] if extra[:1] != (
        "--resume",) else [sys.executable, "-m", "cnnlab.cli", "train", *extra]


def _train_args(data_dir):
    return ["lenet5_modern", "--data-dir", str(data_dir), "--epochs", "3", "--batch-size", "16",
            "--deterministic", "--checkpoint-every", "2", "--set", "train.threads=1",
            "--set", "augment.crop_pad=2", "--set", "augment.flip=0.5", "--set", "train.plot=false",
            "--no-progress"]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1")


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path, tiny_idx_dir):
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_command(full, tiny_idx_dir, *_train_args(tiny_idx_dir)), check=True,
                   env=_env(), capture_output=True)

    proc = subprocess.Popen(_command(killed, tiny_idx_dir, *_train_args(tiny_idx_dir)), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_path, seen = killed / "state.pt", None
    try:
        while proc.poll() is None:
            if state_path.exists():
                try:
                    state = torch.load(state_path, weights_only=True)
                except (EOFError, RuntimeError, OSError):
                    state = None
                if state is not None and state["step"] > 0 and state["epoch"] >= 1:
                    proc.send_signal(signal.SIGKILL)
                    seen = (state["epoch"], state["step"])
                    break
            time.sleep(0.002)
    finally:
        proc.wait()
    assert seen is not None, "the run finished before a mid-epoch checkpoint of epoch 2 was seen"
    assert proc.returncode == -signal.SIGKILL

    resumed = subprocess.run(_command(killed, tiny_idx_dir, "--resume", str(killed), "--no-progress"),
                             env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at epoch {seen[0] + 1}, step" in resumed.stdout

    a, b = load_file(full / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after kill + resume"
    rows_a, rows_b = read_metrics(full / "metrics.csv"), read_metrics(killed / "metrics.csv")
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for col in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr"):
            assert ra[col] == rb[col], col


def test_ctrl_c_mid_epoch_saves_a_checkpoint_says_how_to_resume_and_resumes_exactly(
        tmp_path, tiny_idx_dir):
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    subprocess.run(_command(full, tiny_idx_dir, *_train_args(tiny_idx_dir)), check=True,
                   env=_env(), capture_output=True)
    proc = subprocess.Popen(_command(stopped, tiny_idx_dir, *_train_args(tiny_idx_dir)),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None and not (stopped / "state.pt").exists():
            time.sleep(0.002)
        proc.send_signal(signal.SIGINT)  # Ctrl-C, once training has started
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert f"continue with `cnnlab train --resume {stopped}`" in err
    assert "Traceback" not in err
    state = torch.load(stopped / "state.pt", weights_only=True)
    assert state["epoch"] < 3  # stopped before the end
    resumed = subprocess.run(_command(stopped, tiny_idx_dir, "--resume", str(stopped),
                                      "--no-progress"), env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(full / "model.safetensors"), load_file(stopped / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows_a, rows_b = read_metrics(full / "metrics.csv"), read_metrics(stopped / "metrics.csv")
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for col in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr"):
            assert ra[col] == rb[col], col
