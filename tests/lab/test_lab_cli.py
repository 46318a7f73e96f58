"""`cnnlab lab` in-process: list, argument errors, and a quick run that prints its sentence."""

from __future__ import annotations

import json

import pytest

from cnnlab.cli import main
from cnnlab.lab import list_experiments


def test_lab_list_shows_every_experiment_with_its_claim(capsys):
    assert main(["lab", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list_experiments()
    assert all(len(line.split()) > 3 for line in lines)


@pytest.mark.parametrize("argv, message", [
    (["lab", "depth"], "--out"),
    (["lab", "depth", "--out", "x", "--set", "epoch=2"], "no setting 'epoch'"),
    (["lab", "depth", "--out", "x", "--set", "epochs"], "key=value"),
])
def test_bad_arguments_are_one_line_and_status_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unknown_experiment_and_both_scales_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["lab", "depht", "--out", "x"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["lab", "depth", "--quick", "--full", "--out", "x"])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_quick_run_prints_the_sentence_and_refuses_to_overwrite(tmp_path, tiny_idx_dir, capsys):
    out = tmp_path / "explicit"
    argv = ["lab", "explicit", "--quick", "--seed", "1", "--out", str(out), "--device", "cpu",
            "--data-dir", str(tiny_idx_dir), "--set", "n_train=60", "--set", "n_test=40"]
    assert main(argv) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    record = json.loads((out / "results.json").read_text())
    assert printed == record["sentence"]
    # the hand-derived backward against autograd, the oracle: the same curves
    assert record["numbers"]["max_abs_difference"]["train_loss"] < 1e-4
    assert record["numbers"]["explicit_layers"] == 3  # LeNet-5's C1, C3, C5
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("name", list_experiments())
def test_show_prints_every_setting_at_the_scale_with_overrides(name, capsys):
    import yaml

    from cnnlab.lab import get_experiment

    experiment = get_experiment(name)
    assert main(["lab", name, "--show", "--quick"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    expected = {**experiment.settings["default"], **experiment.settings.get("quick", {})}
    assert shown == {k: list(v) if isinstance(v, tuple) else v for k, v in expected.items()}
    key = next(k for k, v in expected.items() if isinstance(v, int) and not isinstance(v, bool)
               and (experiment.range_of(k) is None or experiment.range_of(k).contains(7)))
    assert main(["lab", name, "--show", "--set", f"{key}=7"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)[key] == 7
