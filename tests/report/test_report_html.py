"""`cnnlab report`: a self-contained page, rendered by headless Chromium with every image loaded.

Chromium is Debian's ``chromium`` package; the ``chromium`` fixture installs it with apt-get where
it is missing (as root). If it cannot be installed the tests fail with the reason — never skip.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from cnnlab.cli import main
from cnnlab.lab import get_experiment, run_experiment
from cnnlab.report.html import write_report

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of the chromium binary, installed with apt-get when absent."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium")
                                         else None)
    if found:
        return found
    reason = "apt-get is not available"
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        done = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True,
                              text=True, env=env, timeout=1200)
        if done.returncode == 0 and shutil.which("chromium"):
            return shutil.which("chromium")
        reason = f"`apt-get install -y chromium` failed: {done.stderr.strip()[-300:]}"
    elif shutil.which("apt-get"):
        reason = "not running as root"
    pytest.fail(f"the report test needs Debian's chromium package and it could not be installed "
                f"({reason}); install it with `sudo apt-get install chromium`")


def render(chromium: str, html: Path, tmp: Path) -> str:
    """The DOM after load (virtual time lets the onload script run) and a screenshot."""
    common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}"]
    dom = subprocess.run([*common, "--virtual-time-budget=5000", "--dump-dom", html.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-500:]
    shot = tmp / "shot.png"
    done = subprocess.run([*common, "--hide-scrollbars", f"--screenshot={shot}",
                           "--window-size=1200,2000", html.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-500:]
    from torchvision.io import decode_png, read_file

    pixels = decode_png(read_file(str(shot)))
    assert pixels.shape[-2:] == (2000, 1200)
    assert torch.unique(pixels.flatten(1), dim=1).shape[1] > 50  # colours drawn: not blank
    return dom.stdout


def assert_loaded(dom: str, images: int) -> None:
    root = re.search(r"<html[^>]*>", dom).group(0)
    assert 'data-report-status="ok"' in root, root
    assert f'data-images-total="{images}"' in root and f'data-images-loaded="{images}"' in root
    assert 'data-js-errors="0"' in root


def assert_self_contained(text: str) -> int:
    """No outside URL anywhere; returns the number of <img> tags (all base64 PNGs)."""
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//|file:)", text)
    assert "http://" not in text and "https://" not in text
    tags = re.findall(r"<img [^>]*>", text)
    assert all('src="data:image/png;base64,' in t for t in tags)
    return len(tags)


@pytest.mark.slow
def test_lab_report_renders_with_its_plots(tmp_path, tiny_idx_dir, chromium):
    run = tmp_path / "bottleneck"
    record = run_experiment(get_experiment("bottleneck"), run, "quick", 0,
                            {"n_train": "60", "n_test": "40"}, str(tiny_idx_dir), "cpu", log=None)
    page = write_report(run)
    text = page.read_text()
    assert html.escape(record["sentence"]) in text
    images = assert_self_contained(text)
    assert images == len(record["plots"]) == 1
    assert_loaded(render(chromium, page, tmp_path), images)


@pytest.mark.slow
def test_training_run_report_shows_curves_confusion_and_mistakes(tmp_path, tiny_idx_dir, chromium,
                                                                 capsys):
    run = tmp_path / "run"
    assert main(["train", "lenet5", "--epochs", "1", "--data-dir", str(tiny_idx_dir), "--out",
                 str(run), "--no-progress", "--device", "cpu"]) == 0
    out = tmp_path / "page.html"
    assert main(["report", str(run), "--out", str(out), "--data-dir", str(tiny_idx_dir),
                 "--mistakes", "5"]) == 0
    assert "self-contained" in capsys.readouterr().out
    text = out.read_text()
    images = assert_self_contained(text)
    shown = len(re.findall(r"alt=\"test image \d+\"", text))
    wrong = int(re.search(r"([\d,]+) of 80 test images misclassified", text).group(1))
    assert shown == min(5, wrong)
    assert images == 2 + shown  # curves, confusion matrix, the mistakes
    for heading in ("Training curves", "Evaluation on the test split", "Configuration",
                    "Model summary"):
        assert f"<h2>{heading}" in text
    assert_loaded(render(chromium, out, tmp_path), images)


def test_report_of_a_directory_that_is_neither_is_one_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "neither a training run" in capsys.readouterr().err
