"""Every registered model, whatever its family: shapes, backward, exact parameter count, seeding,
the model face, and the "input too small" error.

Oracles: the parameter counts recorded from the papers / torchvision (``model_info``), torch's
autograd, and forward hooks on the model's own modules. Shape-only checks run on the meta device
(no memory, no arithmetic), so the 100M+ models cost nothing there; only the tests that need real
numbers build real weights, and those for the few heavy models are marked slow.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.models import create_model, list_models, model_info
from cnnlab.models.base import check_input_size

NUM_CLASSES = 10
HEAVY_PARAMS = 30_000_000  # above this (as built for 32x32) the real-weight tests are marked slow


def _small_shape(name: str) -> tuple[int, ...]:
    """The paper's channels at 32x32 for images; the paper's (C, L) for 1D models."""
    info = model_info(name)
    return info.input_size if len(info.input_size) == 2 else (info.input_size[0], 32, 32)


def _build(name: str, shape: tuple[int, ...], **kw) -> nn.Module:
    return create_model(name, num_classes=NUM_CLASSES, in_chans=shape[0], input_size=shape[-1],
                        **kw)


def _is_heavy(name: str) -> bool:
    if (model_info(name).params or 0) <= HEAVY_PARAMS:
        return False
    with torch.device("meta"):
        model = _build(name, _small_shape(name))
    return sum(p.numel() for p in model.parameters()) > HEAVY_PARAMS


MODELS = list_models()
IMAGE_MODELS = [n for n in MODELS if len(model_info(n).input_size) == 3]
_SLOW = {n for n in MODELS if _is_heavy(n)}


def _params(names: list[str]) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in names]


def _logits(out) -> torch.Tensor:
    """Models with auxiliary heads return (logits, aux...) in training mode."""
    return out if isinstance(out, torch.Tensor) else out[0]


def _loss(out) -> torch.Tensor:
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    return sum(o.float().square().mean() for o in outs)


@pytest.fixture(scope="module", params=_params(MODELS))
def built(request):
    """One real model per name at the small input, seeded; built once for the tests below."""
    name = request.param
    shape = _small_shape(name)
    torch.manual_seed(0)
    model = _build(name, shape)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    return name, shape, model, buffers


def test_registry_is_sorted_and_has_the_issue_families():
    assert MODELS == sorted(MODELS)
    for name in ("resnet18", "resnet50", "resnet152", "resnet20", "resnet110", "plain20",
                 "plain110", "convnext_tiny", "convnext_large", "tdnn"):
        assert name in MODELS


@pytest.mark.parametrize("name", MODELS)
def test_model_info_is_complete(name):
    info = model_info(name)
    assert info.name == name and info.paper and info.url and 1950 < info.year < 2030
    assert info.params is not None and info.params > 0
    assert info.num_classes > 0 and len(info.input_size) in (2, 3)
    assert isinstance(info.deviations, tuple)
    assert info.small_input, "every family documents how it takes small inputs"


@pytest.mark.parametrize("name", MODELS)
def test_default_parameter_count_is_exact(name):
    """create_model(name) with no arguments has exactly the recorded (paper/torchvision) count."""
    with torch.device("meta"):  # shapes only: no allocation, no initialisation cost
        model = create_model(name)
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert count == model_info(name).params


def test_forward_backward_small(built):
    name, shape, model, _ = built
    model.train()
    x = torch.randn(2, *shape)
    out = model(x)
    assert _logits(out).shape == (2, NUM_CLASSES)
    _loss(out).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: no grad for {pname}"
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        logits = model(x)
        assert torch.allclose(model.forward_head(model.forward_features(x)), logits)


@pytest.mark.parametrize("name", _params(IMAGE_MODELS))
def test_forward_backward_mnist_size(name):
    """1x28x28 images (MNIST, Fashion-MNIST), whatever the family's published input."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, in_chans=1, input_size=28)
    out = model(torch.randn(2, 1, 28, 28))
    assert _logits(out).shape == (2, NUM_CLASSES)
    _loss(out).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_same_seed_same_weights(built):
    name, shape, model, buffers = built
    torch.manual_seed(0)
    again = _build(name, shape)
    for (k, p), (k2, q) in zip(model.named_parameters(), again.named_parameters(), strict=True):
        assert k == k2 and torch.equal(p, q), f"{name}: {k} differs under the same seed"
    for k, v in again.named_buffers():
        assert torch.equal(buffers[k], v)


def test_different_seed_different_weights():
    """The control for the test above: the seed does reach the initialisation."""
    torch.manual_seed(0)
    first = create_model("resnet20")
    torch.manual_seed(1)
    second = create_model("resnet20")
    assert not torch.equal(first.conv1.weight, second.conv1.weight)


def _output_module(module: nn.Module) -> nn.Module:
    """The module whose output is a stage's output: the last element of a ModuleList or
    Sequential (which may be a slice, never called itself), recursively."""
    while isinstance(module, (nn.ModuleList, nn.Sequential)):
        module = module[-1]
    return module


def _last_parametrized(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """The last module with parameters of its own to run in ``model(x)``: the classifier."""
    order = []
    hooks = [m.register_forward_hook(lambda m, a, out: order.append(m)) for m in model.modules()
             if any(True for _ in m.parameters(recurse=False))]
    model(x)
    for h in hooks:
        h.remove()
    return order[-1]


@torch.no_grad()
def test_model_face(built):
    """forward_features/forward_head/classifier/stages/feature_info agree with each other and
    with forward hooks. Runs after the seed test: it replaces the classifier."""
    name, shape, model, _ = built
    info = model_info(name)
    model.eval()
    x = torch.randn(2, *shape)
    assert model.get_classifier() is _last_parametrized(model, x)  # the one source: classifier_name
    assert info.classifier in ("", model.classifier_name)  # ModelInfo does not repeat it
    first = model.get_submodule(info.first_conv)
    assert isinstance(first, (nn.Conv1d, nn.Conv2d)) and first.in_channels == shape[0]

    stages = model.stages()
    assert list(stages)[-1] == "head"
    owned = [id(p) for stage in stages.values() for p in stage.parameters()]
    assert sorted(owned) == sorted(id(p) for p in model.parameters()), "stages() must cover " \
        "every parameter exactly once"

    seen = {}
    hooks = [_output_module(stages[f["module"]]).register_forward_hook(
        lambda m, a, out, key=f["module"]: seen.__setitem__(key, _logits(out).shape))
        for f in model.feature_info]
    features = model.forward_features(x)
    for h in hooks:
        h.remove()
    assert model.feature_info, "feature_info lists at least one stage"
    for f in model.feature_info:
        assert seen[f["module"]][1] == f["num_chs"], f"{name}: {f['module']} channels"
    assert model.feature_info[-1]["num_chs"] == features.shape[1]
    reductions = [f["reduction"] for f in model.feature_info]
    assert reductions == sorted(reductions)
    classifier = model.get_classifier()
    classifier_in = getattr(classifier, "in_features", None) or classifier.in_channels
    pre_logits = model.forward_head(features, pre_logits=True)
    assert pre_logits.shape[:2] == (2, classifier_in) == (2, model.head_hidden_size)
    assert model.num_features == features.shape[1]  # timm: channels of forward_features
    assert model.forward_head(features).shape == (2, NUM_CLASSES)

    model.reset_classifier(7)
    assert model(x).shape == (2, 7)
    assert model.get_classifier() is _last_parametrized(model, x)


def test_too_small_input_names_the_layer():
    """ConvNeXt's 4x4/4 stem and three 2x2/2 downsamplings take 16 -> 4 -> 2 -> 1 -> 0."""
    with pytest.raises(ShapeError, match=r"'features\.6\.1' \(Conv2d\).*\(1, 384, 1, 1\).*32x32"), \
            torch.device("meta"):  # the check runs at build time; real weights add nothing
        create_model("convnext_tiny", stem="imagenet", input_size=16)


def test_too_small_input_1d_names_the_layer():
    """TDNN: 5 frames -> kernel 3 -> 3 frames, too few for the 5-frame delay of hidden layer 2."""
    with pytest.raises(ShapeError, match=r"'conv2' \(Conv1d\).*\(1, 8, 3\).*at least 7"):
        create_model("tdnn", input_size=5)


def test_check_input_size_on_any_module_and_empty_outputs():
    """Generic: a plain nn.Sequential; an adaptive pool whose input is empty on meta still fails."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3),
                        nn.AdaptiveAvgPool2d(1))
    check_input_size(net, (1, 1, 8, 8))  # 8 -> 6 -> 3 -> 1: fine
    with pytest.raises(ShapeError, match=r"'2' \(Conv2d\).*\(1, 4, 2, 2\).*at least 8x8"):
        check_input_size(net, (1, 1, 6, 6))  # 6 -> 4 -> 2 -> kernel 3 does not fit
    assert net[0].weight.device.type == "cpu" and net.training  # model left as it was


def test_check_follows_torchs_ceil_mode_rule():
    """A ceil-mode 2x2/2 pool on a 1x1 map gives 1x1 in torch (the window starts inside the
    input), though o = ceil((1 - 2)/2) + 1 has a negative span: VGG at 16x16 must build and run."""
    assert nn.MaxPool2d(2, 2, ceil_mode=True)(torch.zeros(1, 1, 1, 1)).shape == (1, 1, 1, 1)
    with torch.device("meta"):
        model = create_model("vgg11", num_classes=NUM_CLASSES, input_size=16)  # 16 -> ... -> 1 -> 1
    assert model.classifier[0].in_features == 512 * 1 * 1


def test_input_size_with_channels_is_read_as_height_and_width():
    """(C, H, W) = (3, 224, 224) is a 224x224 image: ResNet keeps the paper's 7x7/2 stem."""
    with torch.device("meta"):
        model = create_model("resnet18", input_size=(3, 224, 224))
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
