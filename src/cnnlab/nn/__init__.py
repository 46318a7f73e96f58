"""Layer mathematics of the notes: explicit convolution, shapes, pooling, LeNet's layers."""

from cnnlab.nn.activations import ScaledTanh
from cnnlab.nn.conv import (
    Conv1dFunction,
    Conv2dFunction,
    ExplicitConv1d,
    ExplicitConv2d,
    conv1d,
    conv2d,
    explicit,
)
from cnnlab.nn.shapes import output_size, padding_for, same_padding, transposed_output_size
from cnnlab.nn.sparse import SparseConv2d
from cnnlab.nn.subsampling import TrainableSubsampling
from cnnlab.nn.transposed import ExplicitConvTranspose2d, conv_transpose2d

__all__ = [
    "Conv1dFunction",
    "Conv2dFunction",
    "ExplicitConv1d",
    "ExplicitConv2d",
    "ExplicitConvTranspose2d",
    "ScaledTanh",
    "SparseConv2d",
    "TrainableSubsampling",
    "conv1d",
    "conv2d",
    "conv_transpose2d",
    "explicit",
    "output_size",
    "padding_for",
    "same_padding",
    "transposed_output_size",
]
