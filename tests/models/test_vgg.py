"""VGG: Table 1 of Simonyan & Zisserman (2015) and torchvision's published counts as oracles."""

import pytest
import torch
import torchvision
from torch import nn

from cnnlab.models import create_model, load_torchvision_weights, model_info

TV = torchvision.models
VARIANTS = {  # cnnlab name: (torchvision constructor, weights enum, paper weight layers)
    "vgg11": (TV.vgg11, TV.VGG11_Weights, 11), "vgg11_bn": (TV.vgg11_bn, TV.VGG11_BN_Weights, 11),
    "vgg13": (TV.vgg13, TV.VGG13_Weights, 13), "vgg13_bn": (TV.vgg13_bn, TV.VGG13_BN_Weights, 13),
    "vgg16": (TV.vgg16, TV.VGG16_Weights, 16), "vgg16_bn": (TV.vgg16_bn, TV.VGG16_BN_Weights, 16),
    "vgg19": (TV.vgg19, TV.VGG19_Weights, 19), "vgg19_bn": (TV.vgg19_bn, TV.VGG19_BN_Weights, 19),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_counts_layers_and_keys_match_torchvision(name):
    tv_fn, weights, depth = VARIANTS[name]
    with torch.device("meta"):  # shapes only: no memory, no init time
        model, reference = create_model(name), tv_fn(weights=None)
    assert sum(p.numel() for p in model.parameters()) == weights.IMAGENET1K_V1.meta["num_params"]
    assert model_info(name).params == weights.IMAGENET1K_V1.meta["num_params"]
    assert model_info(name).macs == round(weights.IMAGENET1K_V1.meta["_ops"] * 1e9)
    weight_layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weight_layers) == depth  # "VGG-16" = 16 weight layers
    assert all(c.kernel_size == (3, 3) for c in weight_layers if isinstance(c, nn.Conv2d))
    own, theirs = model.state_dict(), reference.state_dict()
    assert {k: v.shape for k, v in own.items()} == {k: v.shape for k, v in theirs.items()}


def test_paper_parameter_counts_in_millions():
    # Table 2 of the paper: A 133, B 133, D 138, E 144 million parameters
    for name, millions in (("vgg11", 133), ("vgg13", 133), ("vgg16", 138), ("vgg19", 144)):
        assert round(model_info(name).params / 1e6) == millions


def test_torchvision_vgg11_bn_weights_load_and_agree():
    torch.manual_seed(0)
    with torch.device("meta"):  # skip both initialisations (133M parameters each) ...
        reference, model = TV.vgg11_bn(weights=None), create_model("vgg11_bn")
    reference = reference.to_empty(device="cpu").eval()
    for t in reference.state_dict().values():  # ... and fill torchvision's with random values
        if t.is_floating_point():
            t.uniform_(0.5, 1.5) if t.dim() == 1 else t.uniform_(-0.02, 0.02)
    model = model.to_empty(device="cpu")
    model = load_torchvision_weights(model, reference.state_dict()).eval()
    x = torch.randn(2, 3, 64, 64)  # both pool adaptively to 7x7
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)


def test_small_inputs_size_the_classifier_from_the_real_map():
    model = create_model("vgg16", num_classes=10, in_chans=1, input_size=28)
    assert all(p.ceil_mode for p in model.features if isinstance(p, nn.MaxPool2d))
    assert model.classifier[0].in_features == 512  # 28 -> 14 -> 7 -> 4 -> 2 -> 1
    assert model.forward_features(torch.randn(2, 1, 28, 28)).shape == (2, 512, 1, 1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    model = create_model("vgg11", num_classes=10, input_size=32)
    assert not any(p.ceil_mode for p in model.features if isinstance(p, nn.MaxPool2d))
    assert model.classifier[0].in_features == 512


def test_stages_are_the_five_conv_blocks():
    with torch.device("meta"):
        model = create_model("vgg16")
    stages = model.stages()
    assert list(stages) == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    convs = [sum(isinstance(m, nn.Conv2d) for m in s.modules()) for s in stages.values()]
    assert convs == [2, 2, 3, 3, 3, 0]  # configuration D
    assert [f["num_chs"] for f in model.feature_info] == [64, 128, 256, 512, 512]
