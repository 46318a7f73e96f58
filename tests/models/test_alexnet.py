"""AlexNet: the paper's numbers (Krizhevsky et al. 2012) and torchvision's variant as oracles."""

import pytest
import torch
import torchvision
from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.models import create_model, load_torchvision_weights, model_info


@pytest.fixture(scope="module")
def paper_net():
    torch.manual_seed(0)
    return create_model("alexnet").eval()


def test_paper_parameter_count_with_groups():
    with torch.device("meta"):
        model = create_model("alexnet")
    assert sum(p.numel() for p in model.parameters()) == 60_965_224


def test_paper_layers_widths_groups_and_maps(paper_net):
    convs = [m for m in paper_net.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]  # the two-GPU split
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in paper_net.features) == 2
    sizes = []
    hooks = [c.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1])) for c in convs]
    with torch.no_grad():
        out = paper_net(torch.randn(1, 3, 227, 227))
    for h in hooks:
        h.remove()
    assert sizes == [55, 27, 13, 13, 13]  # Fig. 2 of the paper
    assert out.shape == (1, 1000)
    assert paper_net.classifier[1].in_features == 256 * 6 * 6


def test_lrn_matches_the_paper_formula(paper_net):
    lrn = next(m for m in paper_net.features if isinstance(m, nn.LocalResponseNorm))
    a = torch.randn(1, 12, 3, 3, dtype=torch.float64) * 20
    b = lrn(a)
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75  # Sec. 3.3
    for i in (0, 6, 11):  # an edge channel, a middle one, the last
        lo, hi = max(0, i - n // 2), min(11, i + n // 2)
        denom = (k + alpha * (a[0, lo:hi + 1, 1, 2] ** 2).sum()) ** beta
        assert torch.allclose(b[0, i, 1, 2], a[0, i, 1, 2] / denom)


def test_torchvision_alexnet_weights_load_and_agree():
    torch.manual_seed(1)
    reference = torchvision.models.alexnet(weights=None).eval()
    model = load_torchvision_weights(create_model("alexnet_tv"), reference.state_dict()).eval()
    assert sum(p.numel() for p in model.parameters()) == \
        torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta["num_params"]
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)


def test_small_input_stem_rule():
    model = create_model("alexnet", num_classes=10, in_chans=1, input_size=28)
    assert model.features[0].stride == (1, 1)
    assert model.classifier[1].in_features == 256 * 2 * 2  # sized from the real 2x2 map
    assert "stride 1" in model_info("alexnet").small_input
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_too_small_input_names_the_layer(paper_net):
    with pytest.raises(ShapeError, match="features.14"):
        paper_net(torch.randn(1, 3, 40, 40))


def test_forward_head_pre_logits(paper_net):
    feats = paper_net.forward_features(torch.randn(1, 3, 227, 227))
    assert feats.shape == (1, 256, 6, 6)
    assert paper_net.forward_head(feats, pre_logits=True).shape == (1, 4096)
