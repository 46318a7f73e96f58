"""transfer, evaluate --tta, ensemble, predict and export, run in-process as a user would."""

import importlib.util
import json

import pytest
import torch
from torchvision.io import encode_png

from cnnlab.cli import main
from cnnlab.data import FASHION_MNIST_CLASSES
from cnnlab.train import load_run_model, read_metrics
from cnnlab.train.checkpoint import METRICS_COLUMNS


def _train(tiny_idx_dir, out, seed=0):
    argv = ["train", "lenet5", "--data-dir", str(tiny_idx_dir), "--epochs", "1", "--batch-size", "32",
            "--precision", "fp32", "--device", "cpu", "--seed", str(seed), "--no-progress",
            "--set", "data.download=false", "--out", str(out)]
    assert main(argv) == 0
    return out


def _fail(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_transfer_with_cache_then_evaluate_and_ensemble(tiny_idx_dir, tmp_path, capsys):
    source = _train(tiny_idx_dir, tmp_path / "src")
    out = tmp_path / "t"
    argv = ["transfer", "--from", str(source), "--data", "fashion-mnist", "--data-dir",
            str(tiny_idx_dir), "--classes", "5-9", "--freeze", "features", "--cache-features",
            "--cache-dir", str(tmp_path / "cache"), "--epochs", "2", "--device", "cpu",
            "--set", "train.precision=fp32", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "frozen: stem, stage1, stage2" in text and "computing features" in text
    assert text.strip().splitlines()[-1].startswith("test accuracy:")
    record = json.loads((out / "transfer.json").read_text())
    assert record["target"]["classes"] == [5, 6, 7, 8, 9] and record["cache_point"] == "features"
    assert record["cache_precision"] == {"name": "fp32", "channels_last": False}
    # the train run's columns, one row per epoch: the Trainer wrote it
    assert (out / "metrics.csv").read_text().splitlines()[0] == ",".join(METRICS_COLUMNS)
    assert [r["epoch"] for r in read_metrics(out / "metrics.csv")] == [1, 2]
    config, model = load_run_model(out)
    assert config.model.num_classes == 5
    # the frozen backbone is exactly the source's
    _, src_model = load_run_model(source)
    assert torch.equal(model.c3.weight, src_model.c3.weight)
    # the run names its cache files; summary and report count what it froze, and say whence
    assert [p.split("/")[-1].split("-")[2] for p in record["cache_files"]] == ["160", "40"]
    assert all((tmp_path / "cache" / p.split("/")[-1]).is_file() for p in record["cache_files"])
    head = sum(p.numel() for p in model.stages()["head"].parameters())  # F6 and the new output
    backbone = sum(p.numel() for p in model.parameters()) - head
    assert main(["summary", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"transfer run from {source}: frozen as it trained: stem, stage1, stage2" in text
    assert f"({head:,} trainable, {backbone:,} frozen)" in text
    from cnnlab.report import write_report

    page = write_report(out, data_dir=str(tiny_idx_dir)).read_text()
    assert f"transferred from {source}" in page and record["cache_files"][1] in page
    assert "stem, stage1, stage2" in page and f"{backbone:,} frozen" in page
    # evaluate applies the same class selection (5 classes, 40 of the 80 test images)
    assert main(["evaluate", str(out), "--tta", "10crop", "--data-dir", str(tiny_idx_dir)]) == 0
    text = capsys.readouterr().out
    assert "(40 images, TTA 10crop)" in text and "Ankle boot" in text
    assert text.strip().splitlines()[-1].startswith("test accuracy: ")
    # second transfer: the cache is reused
    assert main(argv + ["--overwrite"]) == 0
    assert "reusing cached features" in capsys.readouterr().out
    # ensemble of two transfers
    other = tmp_path / "t2"
    assert main(argv[:-3] + ["--seed", "1", "--out", str(other), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["ensemble", str(out), str(other), "--tta", "flip", "--data-dir",
                 str(tiny_idx_dir)]) == 0
    text = capsys.readouterr().out
    assert "ensemble (prob)" in text and "gain over the best member" in text


def test_transfer_refusals(tiny_idx_dir, tmp_path, capsys):
    source = _train(tiny_idx_dir, tmp_path / "src")
    capsys.readouterr()
    base = ["transfer", "--from", str(source), "--data", "fashion-mnist", "--data-dir",
            str(tiny_idx_dir), "--out", str(tmp_path / "t")]
    assert "needs --freeze features" in _fail(base + ["--freeze", "stage1", "--cache-features"], capsys)
    assert "unknown freeze policy 'stage7'" in _fail(base + ["--freeze", "stage7"], capsys)
    assert "--model NAME" in _fail(["transfer", "--from", str(source / "model.safetensors"),
                                    "--out", str(tmp_path / "x")], capsys)


def test_fine_tune_with_discriminative_rates(tiny_idx_dir, tmp_path, capsys):
    source = _train(tiny_idx_dir, tmp_path / "src")
    out = tmp_path / "ft"
    assert main(["transfer", "--from", str(source), "--data", "digits", "--freeze", "stage1",
                 "--epochs", "1", "--device", "cpu", "--set", "train.precision=fp32",
                 "--out", str(out), "--no-progress"]) == 0
    _, src_model = load_run_model(source)
    _, model = load_run_model(out)
    assert (out / "metrics.csv").read_text().splitlines()[0] == ",".join(METRICS_COLUMNS)
    assert torch.equal(model.c1.weight, src_model.c1.weight)  # frozen (stem)
    assert not torch.equal(model.c5.weight, src_model.c5.weight)  # stage2 fine-tuned
    assert model.output.out_features == 10


def _png(path, image):
    path.write_bytes(encode_png(image).numpy().tobytes())
    return path


def test_predict_converts_and_refuses(tiny_idx_dir, tmp_path, capsys):
    run = _train(tiny_idx_dir, tmp_path / "src")
    capsys.readouterr()
    rgb_big = _png(tmp_path / "rgb.png", torch.randint(0, 255, (3, 40, 56), dtype=torch.uint8))
    grey = _png(tmp_path / "grey.png", torch.zeros(1, 28, 28, dtype=torch.uint8))
    assert main(["predict", str(run), str(rgb_big), str(grey), "--top-k", "3",
                 "--data-dir", str(tiny_idx_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == str(rgb_big) and lines[4] == str(grey) and len(lines) == 8
    assert all(line.split("%  ")[1] in FASHION_MNIST_CLASSES for line in lines[1:4] + lines[5:])
    probs = [float(line.split("%")[0]) for line in lines[1:4]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 100.01
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(grey.read_bytes()[:40])  # a PNG cut short
    for bad in (text, corrupt):
        err = _fail(["predict", str(run), str(bad), "--data-dir", str(tiny_idx_dir)], capsys)
        assert f"cannot read '{bad}' as an image" in err and ".cpp" not in err
    err = _fail(["predict", str(run), str(tmp_path / "missing.png")], capsys)
    assert "does not exist" in err


def test_export_torchscript_is_checked(tiny_idx_dir, tmp_path, capsys):
    run = _train(tiny_idx_dir, tmp_path / "src")
    capsys.readouterr()
    assert main(["export", str(run), "--format", "torchscript"]) == 0
    text = capsys.readouterr().out
    assert (run / "model.pt").is_file() and "max abs difference" in text
    loaded = torch.jit.load(str(run / "model.pt"))
    _, model = load_run_model(run)
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.slow
def test_export_onnx_is_checked_or_names_the_missing_package(tiny_idx_dir, tmp_path, capsys):
    run = _train(tiny_idx_dir, tmp_path / "src")
    capsys.readouterr()
    argv = ["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]
    if all(importlib.util.find_spec(p) for p in ("onnx", "onnxscript", "onnxruntime")):
        assert main(argv) == 0
        assert "max abs difference" in capsys.readouterr().out
    else:
        assert "pip install" in _fail(argv, capsys)
