"""Transposed convolution and pooling layers against torch's layers."""

import copy

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cnnlab.nn import (
    ExplicitConvTranspose2d,
    GlobalAvgPool2d,
    LearnedLPPool2d,
    MixedPool2d,
    conv_transpose2d,
)

F64 = dict(dtype=torch.float64)


@settings(max_examples=50, deadline=None)
@given(groups=st.sampled_from([1, 2]), size=st.tuples(st.integers(1, 6), st.integers(1, 6)),
       k=st.tuples(st.integers(1, 4), st.integers(1, 4)), s=st.integers(1, 3), p=st.integers(0, 3),
       d=st.integers(1, 2), op=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_conv_transpose2d_matches_native(groups, size, k, s, p, d, op, seed):
    op = op % max(s, d)
    out = [(i - 1) * s - 2 * p + d * (kk - 1) + op + 1 for i, kk in zip(size, k, strict=True)]
    if min(out) < 1:
        return  # torch refuses these; test_nn_shapes checks the error
    torch.manual_seed(seed)
    x = torch.randn(2, 2 * groups, *size, **F64, requires_grad=True)
    w = torch.randn(2 * groups, 3, *k, **F64, requires_grad=True)
    b = torch.randn(3 * groups, **F64)
    y = conv_transpose2d(x, w, b, s, p, op, groups, d)
    y_ref = F.conv_transpose2d(x, w, b, s, p, op, groups, d)
    torch.testing.assert_close(y, y_ref)
    g = torch.randn_like(y)  # autograd through the zero-insertion form gives torch's gradients
    torch.testing.assert_close(torch.autograd.grad(y, (x, w), g),
                               torch.autograd.grad(y_ref, (x, w), g))


def test_explicit_conv_transpose_module_with_output_size():
    torch.manual_seed(0)
    native = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2)
    twin = ExplicitConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2)
    twin.load_state_dict(native.state_dict())
    x = torch.randn(1, 4, 5, 5)
    for size in (None, [10, 10], [9, 10]):
        torch.testing.assert_close(twin(x, size), native(x, size))


def test_mixed_pool_interpolates_max_and_average():
    x = torch.randn(2, 3, 6, 6)
    pool = MixedPool2d(3, 2)
    with torch.no_grad():
        pool.alpha.copy_(torch.tensor([40.0, -40.0, 0.0]))  # a = 1, 0, 1/2
    y = pool(x)
    torch.testing.assert_close(y[:, 0], F.max_pool2d(x, 2)[:, 0])
    torch.testing.assert_close(y[:, 1], F.avg_pool2d(x, 2)[:, 1])
    torch.testing.assert_close(y[:, 2], (F.max_pool2d(x, 2) + F.avg_pool2d(x, 2))[:, 2] / 2)
    y.sum().backward()
    assert pool.alpha.grad is not None and pool.alpha.grad[2] != 0  # the type is learned


def test_learned_lp_pool_against_torch_lppool():
    x = torch.rand(2, 3, 6, 6, **F64) + 0.1  # non-negative: torch's LPPool2d needs x^p real
    pool = LearnedLPPool2d(3, 2, init_p=3.0).double()
    torch.testing.assert_close(pool.p(), torch.full((3,), 3.0, **F64))
    expected = nn.LPPool2d(3.0, 2)(x) / 4 ** (1 / 3)  # torch sums the window; we average it
    torch.testing.assert_close(pool(x), expected)
    pool(x).sum().backward()
    assert pool.rho.grad is not None and torch.all(pool.rho.grad != 0)


def test_learned_lp_pool_tends_to_max_for_large_p():
    x = torch.rand(1, 2, 4, 4, **F64) + 0.5
    pool = LearnedLPPool2d(2, 2, init_p=200.0).double()
    torch.testing.assert_close(pool(x), F.max_pool2d(x, 2), rtol=1e-2, atol=0)


def test_global_avg_pool():
    x = torch.randn(2, 5, 7, 3)
    torch.testing.assert_close(GlobalAvgPool2d()(x), nn.AdaptiveAvgPool2d(1)(x).flatten(1))
    assert GlobalAvgPool2d(flatten=False)(x).shape == (2, 5, 1, 1)
    assert copy.deepcopy(GlobalAvgPool2d()).flatten
