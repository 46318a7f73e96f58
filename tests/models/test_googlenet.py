"""GoogLeNet: Table 1 of Szegedy et al. (2015), its side branches, and torchvision's variant."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.models import create_model, load_torchvision_weights, model_info
from cnnlab.models.googlenet import GoogLeNetOutputs, googlenet_loss

# Table 1: output depth of every inception module at 224x224 (and its map size)
TABLE1 = {"3a": (256, 28), "3b": (480, 28), "4a": (512, 14), "4b": (512, 14), "4c": (512, 14),
          "4d": (528, 14), "4e": (832, 14), "5a": (832, 7), "5b": (1024, 7)}


@pytest.fixture(scope="module")
def paper_net():
    torch.manual_seed(0)
    return create_model("googlenet")


def test_parameter_counts():
    with torch.device("meta"):
        no_aux = create_model("googlenet", aux_logits=False)
        with_aux = create_model("googlenet")
    assert sum(p.numel() for p in no_aux.parameters()) == 6_998_552  # exact count, issue 4
    n_aux = sum(p.numel() for p in with_aux.parameters())
    # each side branch: 1x1 conv (C*128 + 128), FC 2048->1024, FC 1024->1000
    side = lambda c: c * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000  # noqa: E731
    assert n_aux == 6_998_552 + side(512) + side(528) == model_info("googlenet").params
    assert model_info("googlenet").extra["params_without_aux"] == 6_998_552


def test_table1_module_outputs_and_real_5x5(paper_net):
    paper_net.eval()
    seen = {}
    hooks = [getattr(paper_net, f"inception{k}").register_forward_hook(
        lambda m, i, o, k=k: seen.__setitem__(k, (o.shape[1], o.shape[-1]))) for k in TABLE1]
    with torch.no_grad():
        out = paper_net(torch.randn(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    assert seen == TABLE1 and out.shape == (1, 1000)
    assert paper_net.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert paper_net.dropout.p == 0.4
    assert isinstance(paper_net.aux1.pool, nn.AvgPool2d)  # the paper's 5x5/3 pool at 224
    assert paper_net.aux1.dropout.p == 0.7 and paper_net.aux1.conv.conv.out_channels == 128


def test_aux_logits_only_in_training_and_the_loss(paper_net):
    x, target = torch.randn(2, 3, 224, 224), torch.tensor([3, 7])
    paper_net.train()
    torch.manual_seed(1)
    out = paper_net(x)
    assert isinstance(out, GoogLeNetOutputs) and all(t.shape == (2, 1000) for t in out)
    expected = F.cross_entropy(out.logits, target) + 0.3 * (
        F.cross_entropy(out.aux_logits1, target) + F.cross_entropy(out.aux_logits2, target))
    loss = googlenet_loss(out, target)
    assert torch.allclose(loss, expected)
    loss.backward()
    assert paper_net.aux1.fc2.weight.grad is not None
    paper_net.eval()
    assert isinstance(paper_net(x), torch.Tensor)
    paper_net.zero_grad(set_to_none=True)


def test_too_small_for_the_paper_aux_pool_names_it(paper_net):
    paper_net.train()
    with pytest.raises(ShapeError, match="aux1"):  # 64x64 gives 4x4 maps at 4a: no 5x5 window
        paper_net(torch.randn(2, 3, 64, 64))
    paper_net.eval()


def test_without_aux_heads_forward_is_a_tensor():
    model = create_model("googlenet", num_classes=10, input_size=32, aux_logits=False).train()
    assert isinstance(model(torch.randn(2, 3, 32, 32)), torch.Tensor)


def test_small_inputs_use_adaptive_aux_pool_and_reset_classifier():
    model = create_model("googlenet", num_classes=10, in_chans=1, input_size=28)
    assert model.conv1.conv.stride == (1, 1)
    assert isinstance(model.aux2.pool, nn.AdaptiveAvgPool2d)
    model.reset_classifier(5)
    out = model.train()(torch.randn(2, 1, 28, 28))
    assert [t.shape for t in out] == [(2, 5)] * 3


@pytest.mark.parametrize("training", [False, True])
def test_torchvision_googlenet_weights_load_and_agree(training):
    torch.manual_seed(0)
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    assert reference.transform_input is False
    model = load_torchvision_weights(create_model("googlenet_tv"), reference.state_dict())
    assert sum(p.numel() for p in model.parameters()) == 13_004_888
    assert model.inception3a.branch3[1].conv.kernel_size == (3, 3)  # torchvision's "5x5"
    reference.train(training)
    model.train(training)
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(2)
    want = reference(x)
    torch.manual_seed(2)  # same dropout masks, drawn in the same order
    got = model(x)
    pairs = zip(got, want, strict=True) if training else [(got, want)]
    for a, b in pairs:
        assert torch.allclose(a, b, atol=1e-5)


def test_torchvision_count_without_aux():
    with torch.device("meta"):
        model = create_model("googlenet_tv", aux_logits=False)
    meta = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta
    assert sum(p.numel() for p in model.parameters()) == meta["num_params"]
    assert model_info("googlenet_tv").macs == round(meta["_ops"] * 1e9)
