"""Two data-parallel processes (torchrun, gloo, loopback) take the same steps as one process
with the same global batch: the gradient mean over two half batches is the full batch's mean."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def test_two_processes_match_one_process_at_the_same_global_batch(tmp_path, tiny_idx_dir):
    # LeNet-5 has no BatchNorm: per-process batch statistics would differ from the full batch's.
    common = ["lenet5", "--data-dir", str(tiny_idx_dir), "--epochs", "1", "--batch-size", "32",
              "--precision", "fp32", "--no-progress", "--set", "train.plot=false"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "cnnlab.cli", "train", *common,
                          "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "cnnlab.cli", "train", *common, "--nproc", "2",
                          "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True,
                         timeout=120)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "2 processes" in two.stdout and two.stdout.count("test accuracy:") == 1  # rank 0 only
    a = load_file(tmp_path / "one" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
