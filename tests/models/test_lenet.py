"""LeNet-5 against the paper: per-layer parameter counts, Table I, and its layer definitions."""

import pytest
import torch
import torch.nn.functional as F

import cnnlab
from cnnlab.models.lenet import C3_TABLE

# Table I of LeCun et al. 1998, as printed: rows = S2 maps 0-5, columns = C3 maps 0-15.
TABLE_I = """
X   XXX  XXXX XX
XX   XXX  XXXX X
XXX   XXX  X XXX
 XXX  XXXX  X XX
  XXX  XXXX XX X
   XXX  XXXX XXX
"""


def test_c3_connections_are_table_one():
    rows = [line.ljust(16) for line in TABLE_I.strip("\n").split("\n")]
    expected = tuple(tuple(i for i in range(6) if rows[i][j] == "X") for j in range(16))
    assert C3_TABLE == expected
    assert sum(len(c) for c in C3_TABLE) == 60  # the paper: 60 connections


def _count(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_per_layer_parameter_counts_match_the_paper():
    model = cnnlab.create_model("lenet5")
    counts = {name: _count(getattr(model, name)) for name in ("c1", "s2", "c3", "s4", "c5", "f6")}
    assert counts == dict(c1=156, s2=12, c3=1_516, s4=32, c5=48_120, f6=10_164)
    assert sum(counts.values()) == 60_000  # "60,000 trainable parameters" (Sec. II-B)
    assert _count(model) == 60_850 == cnnlab.model_info("lenet5").params


def test_modern_variant_counts():
    # C1 6*(25+1), full C3 16*(6*25+1), C5 120*(16*25+1), F6 84*121, output 10*85.
    expected = 6 * 26 + 16 * 151 + 120 * 401 + 84 * 121 + 10 * 85
    assert _count(cnnlab.create_model("lenet5_modern")) == expected == 61_706


def test_sparse_c3_equals_a_masked_dense_convolution():
    torch.manual_seed(0)
    c3 = cnnlab.create_model("lenet5").c3
    x = torch.randn(2, 6, 14, 14)
    mask = torch.zeros(16, 6, 1, 1)
    for j, inputs in enumerate(C3_TABLE):
        mask[j, list(inputs)] = 1
    dense = torch.zeros(16, 6, 5, 5)
    k = 0
    for j, inputs in enumerate(C3_TABLE):  # weights are stored connection by connection
        for i in inputs:
            dense[j, i] = c3.weight[k].detach()
            k += 1
    expected = F.conv2d(x, dense * mask, c3.bias.detach())
    torch.testing.assert_close(c3(x), expected)


def test_subsampling_is_sum_times_coefficient_plus_bias():
    s2 = cnnlab.create_model("lenet5").s2
    x = torch.randn(1, 6, 4, 4)
    out = s2(x)
    w, b = s2.weight.detach(), s2.bias.detach()
    for c in range(6):
        window = x[0, c, 2:4, 0:2].sum()
        torch.testing.assert_close(out[0, c, 1, 0], window * w[c] + b[c])


def test_scaled_tanh_constants():
    act = cnnlab.create_model("lenet5").act1
    x = torch.tensor([1.0, -1.0, 0.3])
    torch.testing.assert_close(act(x), 1.7159 * torch.tanh(2 * x / 3))
    assert act(torch.tensor(1.0)).item() == pytest.approx(1.0, abs=1e-4)  # f(1) = 1


@pytest.mark.parametrize("size", [28, 32])
def test_shapes_for_28_and_32_inputs(size):
    model = cnnlab.create_model("lenet5", input_size=size)
    features = model.forward_features(torch.randn(3, 1, size, size))
    assert features.shape == (3, 120, 1, 1)
    assert model(torch.randn(3, 1, size, size)).shape == (3, 10)


def test_paper_initialisation_bounds():
    model = cnnlab.create_model("lenet5")
    assert model.c1.weight.abs().max() <= 2.4 / 25
    assert model.c5.weight.abs().max() <= 2.4 / 400
    assert model.f6.weight.abs().max() <= 2.4 / 120


def test_too_large_input_is_refused():
    with pytest.raises(ValueError, match="at most 32x32"):
        cnnlab.create_model("lenet5", input_size=64)
