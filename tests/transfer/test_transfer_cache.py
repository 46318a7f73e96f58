"""The feature cache: oracle features, memory-mapped reuse, and invalidation on every key part."""

import dataclasses

import pytest
import torch

from cnnlab.data.loader import normalize
from cnnlab.errors import ConfigError
from cnnlab.models import create_model
from cnnlab.train import RunConfig
from cnnlab.transfer import cached_features, freeze, split_for_cache, train_head
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


def test_head_training_on_cache_leaves_the_backbone_alone(tiny_dataset, tmp_path):
    train, test = tiny_dataset
    model = _lenet()
    freeze(model, "features")
    backbone = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(("f6", "output"))}
    head_before = model.output.weight.clone()
    point, extract, head = split_for_cache(model)
    assert point == "features"  # LeNet's head holds F6 as well as the output layer
    tr, _ = cached_features(extract, model, train, tmp_path, {"point": point})
    te, _ = cached_features(extract, model, test, tmp_path, {"point": point})
    config = RunConfig()
    config.train.epochs, config.train.batch_size, config.train.lr = 3, 32, 0.05
    history = train_head(model, head, tr, train.labels, te, test.labels, config, log=None)
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in backbone.items())
    assert not torch.equal(head_before, model.output.weight)


def test_resnet_caches_pooled_vectors(tiny_dataset, tmp_path):
    model = create_model("resnet20", num_classes=10, in_chans=1, input_size=28).eval()
    point, extract, head = split_for_cache(model)
    assert point == "pre_logits" and head is model.fc
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
