"""``cnnlab summary`` in-process, for a model name and a run directory, and the report plots."""

from __future__ import annotations

import json

import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.report import plot_complexity, plot_layer_costs, plot_receptive_field


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_json_for_a_model_name(capsys):
    assert main(["summary", "lenet5", "--input", "1x32x32", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total_params"] == 60_850 and out["total_macs"] == 416_520  # LeNet-5 by hand


def test_cli_table_for_a_run_directory(tmp_path, capsys):
    from cnnlab.train.checkpoint import save_weights
    from cnnlab.train.config import ModelConfig, RunConfig

    config = RunConfig(model=ModelConfig(name="lenet5_modern", num_classes=7, in_chans=1,
                                         input_size=28))
    (tmp_path / "config.json").write_text(config.to_json())
    model = cnnlab.create_model("lenet5_modern", num_classes=7, in_chans=1, input_size=28)
    save_weights(model, tmp_path / "model.safetensors")
    plot = tmp_path / "layers.png"
    assert main(["summary", str(tmp_path), "--depth", "1", "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    assert "1x1x28x28" in text and "1x7" in text  # the run's input size and classes
    assert _is_png(plot)


def test_cli_bad_input_is_one_line_and_status_2(capsys):
    assert main(["summary", "lenet5", "--input", "1by32"]) == 2
    err = capsys.readouterr().err
    assert "--input" in err and len(err.strip().splitlines()) == 1


def test_plots_are_written(tmp_path):
    s = cnnlab.summary(cnnlab.create_model("lenet5"), (1, 32, 32))
    assert _is_png(plot_layer_costs(s, tmp_path / "costs.png"))
    image = torch.rand(1, 32, 32)
    assert _is_png(plot_receptive_field(s, "c3", image, tmp_path / "rf.png"))
    assert _is_png(plot_complexity(tmp_path / "zoo.png", names=["lenet5", "alexnet"]))
