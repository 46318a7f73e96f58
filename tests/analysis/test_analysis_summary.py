"""Parameters, multiply-adds and saved memory against published counts and hand formulas."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cnnlab
from cnnlab.errors import ConfigError


def _meta(fn, **kw):
    with torch.device("meta"):  # construction on meta skips the random init of big models
        return fn(weights=None, **kw)


@pytest.mark.parametrize("fn, params, macs", [
    (torchvision.models.resnet50, 25_557_032, 4_089_184_256),
    (torchvision.models.vgg16, 138_357_544, 15_470_264_320),
])
def test_issue_counts_exact(fn, params, macs):
    s = cnnlab.summary(_meta(fn), (3, 224, 224))
    assert (s.total_params, s.total_macs) == (params, macs)


@pytest.mark.parametrize("fn, weights, kw", [
    (torchvision.models.alexnet, torchvision.models.AlexNet_Weights.IMAGENET1K_V1, {}),
    (torchvision.models.googlenet, torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1,
     dict(aux_logits=False, init_weights=False)),
    (torchvision.models.convnext_tiny, torchvision.models.ConvNeXt_Tiny_Weights.IMAGENET1K_V1, {}),
])
def test_counts_match_torchvision_metadata(fn, weights, kw):
    s = cnnlab.summary(_meta(fn, **kw), (3, 224, 224))
    assert s.total_params == weights.meta["num_params"]
    assert round(s.total_macs / 1e9, 3) == weights.meta["_ops"]  # torchvision's "GFLOPS" = GMACs


@pytest.mark.parametrize("name", cnnlab.list_models())
def test_zoo_params_and_macs_match_model_info(name):
    info = cnnlab.model_info(name)
    with torch.device("meta"):
        model = cnnlab.create_model(name)
    s = cnnlab.summary(model, info.input_size)
    assert s.total_params == info.params
    if info.macs is not None:  # ModelInfo may carry a published, rounded figure
        assert s.total_macs == pytest.approx(info.macs, rel=1e-3)


class _Functional(nn.Module):
    """F.conv2d, torch.matmul, a module called twice and a tied weight."""

    def __init__(self):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.shared = nn.Conv2d(4, 4, 1, bias=False)
        self.proj = nn.Linear(4 * 6 * 6, 5)
        self.head = nn.Linear(4 * 6 * 6, 5)
        self.head.weight = self.proj.weight  # tied: one tensor

    def forward(self, x):  # (B, 3, 8, 8)
        x = F.conv2d(x, self.kernel)  # (B, 4, 6, 6)
        x = self.shared(self.shared(x)) + x  # twice, plus a residual add
        flat = x.flatten(1)  # (B, 144)
        return torch.matmul(flat, self.proj.weight.t()) + self.head(flat)


def test_functional_ops_shared_modules_and_tied_weights():
    s = cnnlab.summary(_Functional(), (3, 8, 8), batch_size=2)
    conv = 2 * 6 * 6 * 4 * 3 * 3 * 3  # B * out positions * C_out * C_in * k * k
    shared = 2 * 6 * 6 * 4 * 4  # per call of the 1x1 conv
    linear = 2 * 144 * 5  # per product
    assert s.total_macs == conv + 2 * shared + 2 * linear
    assert s.total_params == 4 * 27 + 16 + 144 * 5 + 5 + 5  # the tied matrix once
    assert [r.name for r in s.rows].count("shared") == 2
    assert all(r.macs == shared for r in s.rows if r.name == "shared")


def test_transposed_and_grouped_convolutions():
    model = nn.Sequential(nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1, groups=2),
                          nn.Conv2d(6, 9, 3, groups=3))
    s = cnnlab.summary(model, (8, 5, 5))
    transposed = 5 * 5 * 8 * (6 // 2) * 4 * 4  # per *input* position: C_in * C_out/g * k * k
    out = s.rows[0].output_shape[-1]  # (5-1)*2 - 2 + 4 = 10
    grouped = (out - 2) ** 2 * 9 * (6 // 3) * 3 * 3
    assert (s.rows[0].macs, s.rows[1].macs) == (transposed, grouped)


def test_ops_without_formula_are_listed_not_zeroed():
    class Cumulative(nn.Module):
        def forward(self, x):
            return x.cumsum(-1)

    s = cnnlab.summary(Cumulative(), (2, 4, 4))
    assert s.uncounted == {"cumsum": 1}
    assert "cumsum" in str(s)


def _saved_bytes_oracle(model: nn.Module, x: torch.Tensor) -> int:
    """A real CPU forward: bytes of distinct non-parameter storages autograd saves."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    storages = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(storages.values())


def test_saved_memory_on_meta_equals_a_real_forward():
    model = torchvision.models.resnet18(weights=None).eval()
    s = cnnlab.summary(model, (3, 64, 64))
    assert s.saved_bytes == _saved_bytes_oracle(model, torch.randn(1, 3, 64, 64))


def test_saved_memory_of_a_chain_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
    s = cnnlab.summary(model, (3, 16, 16))
    # conv1 keeps its input, ReLU its output, which conv2 keeps too: one storage, counted once.
    assert s.saved_bytes == 4 * (3 * 16 * 16 + 8 * 16 * 16)


def test_resnet50_saved_memory_is_about_86_mb():
    s = cnnlab.summary(_meta(torchvision.models.resnet50), (3, 224, 224))
    assert 85e6 < s.saved_bytes < 87e6


def test_vgg16_memory_in_conv_layers_parameters_in_fc_layers():
    """Seed 004: "Most memory usage in convolution layers ... Most parameters in FC layers"."""
    pct = cnnlab.summary(_meta(torchvision.models.vgg16), (3, 224, 224)).split_percent()
    assert pct["saved_bytes"]["conv"] > 90 and pct["params"]["fc"] > 85


def test_model_is_left_unchanged():
    model = torchvision.models.resnet18(weights=None)
    model.train()
    model.layer1.eval()  # a mixed state must come back as it was
    flags = {n: m.training for n, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for device in (None, "cpu"):
        cnnlab.summary(model, (3, 64, 64), device=device, train=True)
    assert {n: m.training for n, m in model.named_modules()} == flags
    after = model.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], v) for k, v in state.items())  # BN stats untouched
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_real_device_run_agrees_with_meta():
    model = cnnlab.create_model("lenet5")
    meta, real = cnnlab.summary(model, (1, 32, 32)), cnnlab.summary(model, (1, 32, 32),
                                                                      device="cpu")
    assert (meta.total_macs, meta.saved_bytes) == (real.total_macs, real.saved_bytes)


def test_depth_and_exports():
    model = _meta(torchvision.models.resnet18)
    s = cnnlab.summary(model, (3, 64, 64), depth=1)
    assert [r.name for r in s.rows] == [n for n, _ in model.named_children()]
    rows = list(csv.DictReader(io.StringIO(s.to_csv())))
    assert [r["name"] for r in rows] == [r.name for r in s.rows]
    d = json.loads(json.dumps(s.to_dict()))
    assert d["total_macs"] == s.total_macs and d["rows"][3]["output_shape"] == [1, 64, 16, 16]
    text = str(s)
    assert "layer4" in text and f"{s.total_params:,}" in text


def test_frozen_parameters_and_optimizer_memory():
    model = cnnlab.create_model("lenet5")
    for p in model.c1.parameters():
        p.requires_grad_(False)
    s = cnnlab.summary(model, (1, 32, 32), optimizer="adam")
    assert s.trainable_params == 60_850 - 156 and s.frozen_params == 156
    assert s.memory.optimizer_bytes == 2 * 4 * s.trainable_params
    with pytest.raises(ConfigError, match="unknown optimizer"):
        cnnlab.summary(model, (1, 32, 32), optimizer="lion")
