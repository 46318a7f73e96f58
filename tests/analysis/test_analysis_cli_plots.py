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


def test_layer_plot_units_follow_the_size():
    from cnnlab.report.plots import _unit

    assert _unit([416_520, 12]) == (1e3, "k")
    assert _unit([4.09e9]) == (1e9, "G") and _unit([999]) == (1.0, "")


def test_labels_are_placed_without_overlaps():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnlab.report.plots import place_labels

    fig, ax = plt.subplots(figsize=(4, 3))
    xs = [1.0 + 0.01 * i for i in range(12)] + [5.0]  # a tight cluster and one point alone
    ys = [1.0] * 12 + [5.0]
    names = [f"variant_{i}" for i in range(12)] + ["alone"]
    ax.scatter(xs, ys)
    ax.set_xlim(0, 6)
    ax.set_ylim(0, 6)
    labelled = place_labels(ax, xs, ys, names)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert [t.get_text() for t in ax.texts] == labelled and "alone" in labelled
    assert 1 < len(labelled) < len(names)  # the cluster cannot hold twelve labels
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)


def test_whole_number_ticks_for_short_runs():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnlab.train.runlog import whole_number_ticks

    fig, ax = plt.subplots()
    for epochs, ticks in (([1], [1]), ([1, 2], [1, 2]), ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])):
        ax.plot(epochs, epochs)
        whole_number_ticks(ax, epochs)
        assert list(ax.get_xticks()) == ticks
    ax.plot(range(1, 41), range(40))
    whole_number_ticks(ax, range(1, 41))
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in ax.get_xticks())
    plt.close(fig)
