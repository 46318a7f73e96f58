"""Explicit convolution (hand-written backward) against torch's convolution and autograd."""

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import cnnlab
from cnnlab.errors import ShapeError
from cnnlab.nn import (
    Conv2dFunction,
    ExplicitConv1d,
    ExplicitConv2d,
    ExplicitSparseConv2d,
    conv1d,
    conv2d,
    correlation,
    explicit,
)

F64 = dict(dtype=torch.float64)


@pytest.mark.parametrize("stride, padding, dilation, groups", [
    (1, 0, 1, 1), (2, 1, 1, 1), (3, 0, 2, 1), (2, 2, 1, 2), ((1, 2), (1, 0), (2, 1), 2),
])
def test_conv2d_gradcheck(stride, padding, dilation, groups):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 8, **F64, requires_grad=True)
    w = torch.randn(6, 4 // groups, 3, 2, **F64, requires_grad=True)
    b = torch.randn(6, **F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: conv2d(x, w, b, stride, padding, dilation, groups), (x, w, b))


@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, 0, 1, 1), (3, 2, 2, 2)])
def test_conv1d_gradcheck(stride, padding, dilation, groups):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 11, **F64, requires_grad=True)
    w = torch.randn(6, 4 // groups, 3, **F64, requires_grad=True)
    b = torch.randn(6, **F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: conv1d(x, w, b, stride, padding, dilation, groups), (x, w, b))


def _compare(fn, native_fn, x, w, b):
    """Forward and all three gradients of fn against native_fn, same upstream gradient."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    y = fn(*leaves)
    ref_leaves = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    y_ref = native_fn(*ref_leaves)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref)
    upstream = torch.randn_like(y_ref)
    y.backward(upstream)
    y_ref.backward(upstream)
    for mine, ref in zip(leaves, ref_leaves, strict=True):
        torch.testing.assert_close(mine.grad, ref.grad)


@settings(max_examples=50, deadline=None)
@given(batch=st.integers(1, 2), groups=st.sampled_from([1, 2, 3]), in_per=st.integers(1, 2),
       out_per=st.integers(1, 2), size=st.tuples(st.integers(5, 11), st.integers(5, 11)),
       k=st.tuples(st.integers(1, 3), st.integers(1, 3)), s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       p=st.tuples(st.integers(0, 2), st.integers(0, 2)), d=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       seed=st.integers(0, 2**16))
def test_conv2d_matches_native_on_random_configs(batch, groups, in_per, out_per, size, k, s, p, d,
                                                 seed):
    torch.manual_seed(seed)
    x = torch.randn(batch, groups * in_per, *size, **F64)
    w = torch.randn(groups * out_per, in_per, *k, **F64)
    b = torch.randn(groups * out_per, **F64)
    _compare(lambda x, w, b: conv2d(x, w, b, s, p, d, groups),
             lambda x, w, b: F.conv2d(x, w, b, s, p, d, groups), x, w, b)


@settings(max_examples=50, deadline=None)
@given(groups=st.sampled_from([1, 2]), length=st.integers(10, 20), k=st.integers(1, 4),
       s=st.integers(1, 4), p=st.integers(0, 2), d=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_conv1d_matches_native_on_random_configs(groups, length, k, s, p, d, seed):
    torch.manual_seed(seed)
    x = torch.randn(2, 2 * groups, length, **F64)
    w = torch.randn(3 * groups, 2, k, **F64)
    b = torch.randn(3 * groups, **F64)
    _compare(lambda x, w, b: conv1d(x, w, b, s, p, d, groups),
             lambda x, w, b: F.conv1d(x, w, b, s, p, d, groups), x, w, b)


def test_unreached_rows_get_zero_gradient():
    # i=8, k=3, s=3: (8 - 3) % 3 = 2 rows/columns are never under a window.
    x = torch.randn(1, 1, 8, 8, **F64, requires_grad=True)
    w = torch.randn(1, 1, 3, 3, **F64)
    conv2d(x, w, stride=3).sum().backward()
    assert torch.all(x.grad[..., 6:, :] == 0) and torch.all(x.grad[..., :, 6:] == 0)
    x_ref = x.detach().clone().requires_grad_()
    F.conv2d(x_ref, w, stride=3).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_backward_is_the_hand_written_function():
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    y = conv2d(x, torch.randn(3, 2, 3, 3))
    assert type(y.grad_fn).__name__ == "Conv2dFunctionBackward"
    assert issubclass(Conv2dFunction, torch.autograd.Function)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("kwargs", [
    dict(padding="same"), dict(padding="same", dilation=2), dict(padding=1, padding_mode="reflect"),
    dict(padding=2, padding_mode="circular", stride=2), dict(padding="valid", groups=2),
])
def test_explicit_twin_matches_module_options(kwargs):
    torch.manual_seed(0)
    native = nn.Conv2d(4, 6, (3, 4) if kwargs.get("padding") == "same" else 3, **kwargs)
    twin = explicit(copy.deepcopy(native))
    assert isinstance(twin, ExplicitConv2d)
    x = torch.randn(2, 4, 9, 10)
    _compare(lambda x, w, b: twin._conv_forward(x, w, b), native._conv_forward,
             x, native.weight, native.bias)


def test_explicit_twin_is_channels_last_aware():
    native = nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)
    y = explicit(copy.deepcopy(native))(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, native(x), rtol=1e-4, atol=1e-5)


def test_explicit_shares_parameters_and_state_dict():
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(1, 2, 3)))
    params = {name: p for name, p in model.named_parameters()}
    keys = list(model.state_dict())
    explicit(model)
    assert isinstance(model[0], ExplicitConv1d) and isinstance(model[2][0], ExplicitConv2d)
    assert list(model.state_dict()) == keys
    for name, p in model.named_parameters():
        assert p is params[name]  # the same Parameter objects, not copies
    assert model[2][0].layer_name == "2.0"


def test_explicit_error_names_the_layer():
    model = explicit(nn.Sequential(nn.Conv2d(1, 1, 5), nn.Conv2d(1, 1, 5)))
    with pytest.raises(ShapeError, match=r"^1: .*kernel extent"):
        model(torch.randn(1, 1, 8, 8))  # 8 -> 4 -> too small for the second 5x5


def test_lenet5_trains_the_same_both_ways():
    torch.manual_seed(0)
    native = cnnlab.create_model("lenet5")
    twin = explicit(copy.deepcopy(native))
    assert isinstance(twin.c1, ExplicitConv2d) and isinstance(twin.c5, ExplicitConv2d)
    assert isinstance(twin.c3, ExplicitSparseConv2d)
    start = copy.deepcopy(native.state_dict())
    images, labels = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    for model in (native, twin):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(5):
            optimizer.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
    for (name, p), (_, q) in zip(native.named_parameters(), twin.named_parameters(), strict=True):
        assert not torch.equal(p, start[name]), f"{name} did not move"
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("budget", [1, 60, 400])  # a row per block, bands of rows, sample groups
@pytest.mark.parametrize("stride, padding, dilation, groups", [
    (1, 0, 1, 1), (2, 1, 1, 2), ((1, 3), (2, 0), (1, 2), 1),
])
def test_blocked_columns_give_the_same_convolution(monkeypatch, budget, stride, padding, dilation,
                                                   groups):
    """The windows are copied and multiplied a block at a time (cnnlab.nn.correlation.blocks):
    forward and all three gradients must not depend on where the blocks are cut."""
    monkeypatch.setattr(correlation, "BLOCK_VALUES", budget)
    torch.manual_seed(budget)
    x = torch.randn(3, 2 * groups, 9, 8, **F64)
    w = torch.randn(2 * groups, 2, 3, 2, **F64)
    b = torch.randn(2 * groups, **F64)
    _compare(lambda x, w, b: conv2d(x, w, b, stride, padding, dilation, groups),
             lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups), x, w, b)


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 5), out_h=st.integers(1, 9), per_row=st.integers(1, 50),
       budget=st.integers(1, 200))
def test_blocks_cover_every_sample_and_row_once(batch, out_h, per_row, budget):
    seen = torch.zeros(batch, out_h, dtype=torch.int64)
    for samples, rows in correlation.blocks(batch, out_h, per_row, budget):
        assert (samples.stop - samples.start) * (rows.stop - rows.start) * per_row <= budget \
            or (samples.stop - samples.start, rows.stop - rows.start) == (1, 1)
        seen[samples, rows] += 1
    assert torch.all(seen == 1)
