import pytest

from cnnlab.cli import main
from cnnlab.data import datasets as ds


def test_models_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "lenet5" in out and "60,850" in out and "1998" in out


@pytest.mark.parametrize("argv, message", [
    (["train", "lenet6", "--out", "x"], "unknown model 'lenet6'"),
    (["train", "lenet5", "--epochs", "0", "--out", "x"], "--epochs: must be at least 1"),
    (["train", "lenet5", "--epochs", "two", "--out", "x"], "expected a whole number"),
    (["train", "lenet5", "--set", "train.bogus=1", "--out", "x"], "unknown config key"),
    (["evaluate", "/nonexistent/run"], "not a cnnlab run directory"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_give_one_line_and_status_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_data_is_status_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.setattr(ds, "DEBIAN_ROOT", tmp_path / "none")
    code = main(["train", "lenet5", "--set", "data.download=false", "--out", str(tmp_path / "r")])
    assert code == 2
    assert "fashion-mnist not found" in capsys.readouterr().err


def test_train_then_evaluate_end_to_end(tiny_idx_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "lenet5", "--data-dir", str(tiny_idx_dir), "--epochs", "2", "--batch-size",
            "32", "--precision", "fp32", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    assert "test accuracy:" in capsys.readouterr().out
    assert main(argv) == 2  # the run exists: refuse to overwrite silently
    assert "--overwrite" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--data-dir", str(tiny_idx_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("test accuracy: ") and lines[-1].endswith("%")


@pytest.mark.parametrize("argv, message", [
    (["models", "foo"], "no model matches 'foo'; `cnnlab models` lists them all"),
    (["models", "resnt"], "no model matches 'resnt'; did you mean resnet"),
    (["models", "--pretrained", "lenet*"], "no pretrained weights for 'lenet*'"),
])
def test_models_without_a_match_say_so_with_status_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err and len(captured.err.splitlines()) == 1
