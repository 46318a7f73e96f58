"""Target data: class selection and relabelling, resize, channels; sources from weights files."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

from cnnlab.errors import ConfigError
from cnnlab.models import create_model
from cnnlab.transfer import load_source, parse_classes, resize_images, select_classes, to_channels


def test_parse_classes():
    assert parse_classes("5-9") == (5, 6, 7, 8, 9)
    assert parse_classes("0,2, 4-5") == (0, 2, 4, 5)
    assert parse_classes(None) is None
    with pytest.raises(ConfigError):
        parse_classes("a-b")


def test_select_classes_relabels(tiny_dataset):
    train, _ = tiny_dataset
    subset = select_classes(train, (7, 5))
    keep = (train.labels == 7) | (train.labels == 5)
    assert len(subset) == int(keep.sum())
    assert torch.equal(subset.images, train.images[keep])
    assert torch.equal(subset.labels, (train.labels[keep] == 5).long())  # 7 -> 0, 5 -> 1
    assert subset.classes == ("7", "5")
    with pytest.raises(ConfigError, match="class 12"):
        select_classes(train, (12,))


def test_resize_matches_torch_antialiased_bilinear():
    images = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    out = resize_images(images, 28)
    oracle = F.interpolate(images.float(), size=(28, 28), mode="bilinear", antialias=True,
                           align_corners=False).round().clamp(0, 255).to(torch.uint8)
    assert out.shape == (3, 1, 28, 28) and out.dtype == torch.uint8
    assert (out.int() - oracle.int()).abs().max() <= 1


def test_channel_conversion():
    rgb = torch.tensor([[[[255]], [[0]], [[0]]]], dtype=torch.uint8)  # pure red
    assert to_channels(rgb, 1).item() == round(0.299 * 255)
    grey = torch.full((1, 1, 2, 2), 7, dtype=torch.uint8)
    assert torch.equal(to_channels(grey, 3), grey.expand(1, 3, 2, 2))


def test_source_from_torchvision_state_dict(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(num_classes=7)
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    config, model = load_source(tmp_path / "r18.pth", "resnet18")
    assert (config.num_classes, config.in_chans) == (7, 3)
    x = torch.randn(1, 3, 64, 64)
    tv.eval()
    torch.testing.assert_close(model(x), tv(x))  # torchvision as the oracle


def test_source_from_safetensors_and_errors(tmp_path):
    lenet = create_model("lenet5", num_classes=4, in_chans=1, input_size=28)
    save_file(lenet.state_dict(), str(tmp_path / "w.safetensors"))
    with pytest.raises(ConfigError, match="--model NAME"):
        load_source(tmp_path / "w.safetensors")
    config, model = load_source(tmp_path / "w.safetensors", "lenet5", input_size=28)
    assert (config.num_classes, config.in_chans, config.input_size) == (4, 1, 28)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model(x), lenet.eval()(x))
