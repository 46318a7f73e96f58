"""The feature cache: oracle features, memory-mapped reuse, and invalidation on every key part."""

import dataclasses

import pytest
import torch

from cnnlab.data.loader import normalize
from cnnlab.errors import ConfigError
from cnnlab.models import create_model
from cnnlab.train import RunConfig
from cnnlab.train.checkpoint import read_metrics
from cnnlab.train.trainer import Trainer
from cnnlab.transfer import FeatureDataset, cached_features, freeze, split_for_cache
from cnnlab.transfer.run import refuse_feature_augmentation


def _lenet():
    torch.manual_seed(0)
    return create_model("lenet5", num_classes=10, in_chans=1, input_size=28).eval()


def _features(model, ds, folder, transform=None, views="none"):
    point, extract, _ = split_for_cache(model)
    return cached_features(extract, model, ds, folder, transform or {"point": point}, views,
                           batch_size=7)


def test_cached_features_equal_the_backbone_output(tiny_dataset, tmp_path):
    _, test = tiny_dataset
    model = _lenet()
    feats, hit = _features(model, test, tmp_path)
    assert not hit and feats.shape == (1, 80, 120, 1, 1)
    files = list(tmp_path.glob("*.npy"))  # on disk, float32: 80 images x 120 features
    assert len(files) == 1 and files[0].stat().st_size >= 80 * 120 * 4
    with torch.no_grad():
        expected = model.forward_features(normalize(test.images, test.mean, test.std))
    torch.testing.assert_close(feats[0], expected)


def test_cache_hits_and_invalidation(tiny_dataset, tmp_path):
    _, test = tiny_dataset
    model = _lenet()
    first, hit = _features(model, test, tmp_path)
    assert not hit
    again, hit = _features(model, test, tmp_path)
    assert hit and torch.equal(first, again)
    # the head is not part of the frozen backbone: retraining it keeps the cache valid
    with torch.no_grad():
        model.output.weight.add_(1.0)
    _, hit = _features(model, test, tmp_path)
    assert hit
    # a frozen weight changes -> a new key, recomputed features
    with torch.no_grad():
        model.c1.weight.mul_(1.5)
    changed, hit = _features(model, test, tmp_path)
    assert not hit and not torch.equal(changed, first)
    # one pixel of the data changes -> miss
    images = test.images.clone()
    images[0, 0, 0, 0] ^= 1
    _, hit = _features(model, dataclasses.replace(test, images=images), tmp_path)
    assert not hit
    # the normalisation or the transform changes -> miss
    _, hit = _features(model, dataclasses.replace(test, mean=(0.2,)), tmp_path)
    assert not hit
    _, hit = _features(model, test, tmp_path, transform={"point": "features", "size": 32})
    assert not hit
    assert len(list(tmp_path.glob("*.npy"))) == 5


def test_cached_flip_views(tiny_dataset, tmp_path):
    _, test = tiny_dataset
    model = _lenet()
    feats, _ = _features(model, test, tmp_path, views="flip")
    assert feats.shape == (2, 80, 120, 1, 1)
    with torch.no_grad():
        mirrored = model.forward_features(normalize(test.images.flip(-1), test.mean, test.std))
    torch.testing.assert_close(feats[1], mirrored)


def _head_run(model, train, test, folder):
    point, extract, head = split_for_cache(model)
    tr, _ = cached_features(extract, model, train, folder, {"point": point})
    te, _ = cached_features(extract, model, test, folder, {"point": point})
    config = RunConfig()
    config.model.name, config.model.num_classes, config.model.in_chans = "lenet5", 10, 1
    config.model.input_size = 28
    t = config.train
    t.epochs, t.batch_size, t.lr, t.precision, t.plot, t.tensorboard = 3, 32, 0.05, "fp32", False, False
    return (point, head, config, FeatureDataset(tr, train.labels, train.classes, train.name),
            FeatureDataset(te, test.labels, test.classes, test.name))


def test_head_trains_through_the_trainer_and_leaves_the_backbone_alone(tiny_dataset, tmp_path):
    train, test = tiny_dataset
    model = _lenet()
    freeze(model, "features")
    backbone = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(("f6", "output"))}
    head_before = model.output.weight.clone()
    point, head, config, tr, te = _head_run(model, train, test, tmp_path / "cache")
    assert point == "features"  # LeNet's head holds F6 as well as the output layer
    history = Trainer(config, tmp_path / "run", tr, te, progress=False, log=None, model=head).fit()
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in backbone.items())
    assert not torch.equal(head_before, model.output.weight)
    # the run directory is an ordinary run of the whole network: metrics.csv, loadable weights
    assert [r["epoch"] for r in read_metrics(tmp_path / "run" / "metrics.csv")] == [1, 2, 3]
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert saved.keys() == model.state_dict().keys()
    # the test accuracy the Trainer reports is the whole network's on the images
    with torch.no_grad():
        logits = model.eval()(normalize(test.images, test.mean, test.std))
    assert history[-1]["test_acc"] == pytest.approx((logits.argmax(1) == test.labels).float().mean().item(),
                                                    abs=1e-5)


class _Killed(Exception):
    pass


def _kill_after_epoch_1(line: str) -> None:
    if line.startswith("epoch   1/"):  # logged once epoch 1's checkpoint is on disk
        raise _Killed


def test_head_training_resumes_exactly(tiny_dataset, tmp_path):
    train, test = tiny_dataset
    runs = {}
    for name in ("straight", "resumed"):
        model = _lenet()
        freeze(model, "features")
        _, head, config, tr, te = _head_run(model, train, test, tmp_path / "cache")
        if name == "resumed":
            with pytest.raises(_Killed):
                Trainer(config, tmp_path / name, tr, te, progress=False, log=_kill_after_epoch_1,
                        model=head).fit()
            model = _lenet()  # a new process: fresh head weights, then the checkpoint's
            freeze(model, "features")
            _, head, config, tr, te = _head_run(model, train, test, tmp_path / "cache")
        Trainer(config, tmp_path / name, tr, te, progress=False, log=None, model=head,
                resume=name == "resumed").fit()
        runs[name] = model.state_dict()
    assert all(torch.equal(v, runs["resumed"][k]) for k, v in runs["straight"].items())
    assert read_metrics(tmp_path / "resumed" / "metrics.csv")[-1]["epoch"] == 3


def test_dropout_heads_cache_pooled_vectors_and_keep_their_dropout(tmp_path):
    model = create_model("googlenet_tv", num_classes=10, input_size=64, aux_logits=False).eval()
    point, extract, head = split_for_cache(model)
    assert point == "pre_logits" and head.dropouts == [model.dropout]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(head(extract(x)), model(x))
        head.train()
        vectors = extract(x)
        assert not torch.equal(head(vectors), head(vectors))  # dropout acts while the head trains


def test_resnet_caches_pooled_vectors(tiny_dataset, tmp_path):
    model = create_model("resnet20", num_classes=10, in_chans=1, input_size=28).eval()
    point, extract, head = split_for_cache(model)
    assert point == "pre_logits" and head.network is model
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(head(extract(x)), model(x))
    _, test = tiny_dataset
    small = test.subset(torch.arange(4))
    feats, _ = cached_features(extract, model, small, tmp_path, {"point": point})  # BN counters hash
    with torch.no_grad():
        logits = model(normalize(small.images, small.mean, small.std))
    assert feats.shape == (1, 4, 64)
    torch.testing.assert_close(head(feats[0]), logits)


def test_augmentation_is_refused_with_cached_features():
    config = RunConfig()
    refuse_feature_augmentation(config)  # no augmentation: fine
    config.augment.flip = 0.5
    with pytest.raises(ConfigError, match=r"augment.flip=0.5: .* cannot reproduce it"):
        refuse_feature_augmentation(config)


def test_feature_batches_hold_about_four_million_values(tiny_dataset, tmp_path):
    from cnnlab.transfer.cache import feature_batch_size

    assert feature_batch_size((3, 224, 224)) == 26 and feature_batch_size((1, 28, 28)) == 256
    assert feature_batch_size((3, 224, 224), views=10) == 8  # never fewer than 8 images
    _, test = tiny_dataset
    model = _lenet()
    point, extract, _ = split_for_cache(model)
    chosen, _ = cached_features(extract, model, test, tmp_path / "a", {"point": point})
    small, _ = cached_features(extract, model, test, tmp_path / "b", {"point": point}, batch_size=7)
    torch.testing.assert_close(chosen, small)  # the batch changes the speed, not the features
