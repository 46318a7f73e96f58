"""Size formulas against real torch layers (hypothesis) and their error messages."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.nn import output_size, padding_for, same_padding, transposed_output_size

SETTINGS = settings(max_examples=50, deadline=None)


@SETTINGS
@given(i=st.integers(1, 20), k=st.integers(1, 6), s=st.integers(1, 4), p=st.integers(0, 3),
       d=st.integers(1, 3))
def test_output_size_matches_conv1d(i, k, s, p, d):
    conv = nn.Conv1d(1, 1, k, stride=s, padding=p, dilation=d)
    x = torch.zeros(1, 1, i)
    if i + 2 * p < d * (k - 1) + 1:  # torch refuses too: we must say why
        with pytest.raises(RuntimeError):
            conv(x)
        with pytest.raises(ShapeError, match="conv_a"):
            output_size(i, k, s, p, d, name="conv_a")
    else:
        assert output_size(i, k, s, p, d) == conv(x).shape[-1]


@SETTINGS
@given(h=st.integers(7, 16), w=st.integers(7, 16),
       k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       d=st.tuples(st.integers(1, 2), st.integers(1, 2)))
def test_output_size_matches_conv2d(h, w, k, s, p, d):
    y = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)(torch.zeros(1, 1, h, w))
    expected = (output_size(h, k[0], s[0], p[0], d[0]), output_size(w, k[1], s[1], p[1], d[1]))
    assert y.shape[-2:] == expected


@SETTINGS
@given(i=st.integers(1, 20), k=st.integers(1, 5), s=st.integers(1, 4), p_frac=st.integers(0, 2),
       d=st.integers(1, 2), ceil=st.booleans())
def test_output_size_matches_maxpool2d(i, k, s, p_frac, d, ceil):
    p = min(p_frac, k // 2)  # torch: padding at most half the kernel
    pool = nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    try:  # torch is the oracle, also for which sizes are too small
        expected = pool(torch.zeros(1, 1, i, i)).shape[-1]
    except RuntimeError:
        with pytest.raises(ShapeError):
            output_size(i, k, s, p, d, ceil_mode=ceil)
        return
    assert output_size(i, k, s, p, d, ceil_mode=ceil) == expected


@SETTINGS
@given(i=st.integers(1, 10), k=st.integers(1, 5), s=st.integers(1, 4), p=st.integers(0, 3),
       d=st.integers(1, 3), op=st.integers(0, 3), groups=st.sampled_from([1, 2]))
def test_transposed_output_size_matches_convtranspose2d(i, k, s, p, d, op, groups):
    op = op % max(s, d)
    expected = (i - 1) * s - 2 * p + d * (k - 1) + op + 1
    if expected < 1:
        with pytest.raises(ShapeError):
            transposed_output_size(i, k, s, p, op, d)
        return
    layer = nn.ConvTranspose2d(2, 2, k, s, p, op, groups=groups, dilation=d)
    out = layer(torch.zeros(1, 2, i, i + 1))
    assert out.shape[-2:] == (transposed_output_size(i, k, s, p, op, d),
                              transposed_output_size(i + 1, k, s, p, op, d))


@SETTINGS
@given(i=st.integers(1, 30), k=st.integers(1, 7), s=st.integers(1, 4), target=st.integers(1, 30),
       d=st.integers(1, 2))
def test_padding_for_inverts_output_size(i, k, s, target, d):
    candidates = [p for p in range(100) if i + 2 * p >= d * (k - 1) + 1
                  and (i + 2 * p - d * (k - 1) - 1) // s + 1 == target]  # brute force
    if candidates:
        p = padding_for(i, k, s, target, d)
        assert p == candidates[0]
        assert nn.Conv1d(1, 1, k, s, p, d)(torch.zeros(1, 1, i)).shape[-1] == target
    else:
        with pytest.raises(ShapeError, match="no padding"):
            padding_for(i, k, s, target, d)


def test_same_padding_keeps_size_and_rejects_even_extents():
    assert same_padding(3) == 1 and same_padding(5) == 2 and same_padding(3, d=2) == 2
    for k, d in [(3, 1), (5, 1), (3, 2), (7, 3)]:
        conv = nn.Conv2d(1, 1, k, padding=same_padding(k, d), dilation=d)
        assert conv(torch.zeros(1, 1, 9, 9)).shape[-1] == 9
    with pytest.raises(ShapeError, match="odd"):
        same_padding(4)


def test_error_names_the_layer_and_the_numbers():
    with pytest.raises(ShapeError) as err:
        output_size(4, 5, name="features.0")
    msg = str(err.value)
    assert "features.0" in msg and "4" in msg and "5" in msg
    with pytest.raises(ShapeError, match="output_padding"):
        transposed_output_size(4, 3, s=2, output_padding=2)


@pytest.mark.parametrize("i, k, s, p", [(1, 2, 2, 0), (3, 4, 3, 0), (2, 3, 2, 0), (1, 3, 3, 1)])
def test_ceil_mode_kernel_overhanging_a_tiny_input(i, k, s, p):
    """With ceil_mode, torch keeps one window even when the kernel overhangs the input."""
    expected = nn.MaxPool1d(k, s, p, ceil_mode=True)(torch.zeros(1, 1, i)).shape[-1]
    assert output_size(i, k, s, p, ceil_mode=True) == expected
