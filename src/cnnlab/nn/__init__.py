"""Layer mathematics of the notes: explicit convolution, shapes, pooling, LeNet's layers."""

from cnnlab.nn.activations import ScaledTanh
from cnnlab.nn.conv import (
    Conv1dFunction,
    Conv2dFunction,
    ExplicitConv1d,
    ExplicitConv2d,
    ExplicitSparseConv2d,
    conv1d,
    conv2d,
    explicit,
)
from cnnlab.nn.fc_conv import (
    LocallyConnected2d,
    conv1x1_to_linear,
    layer_param_counts,
    linear_to_conv1x1,
)
from cnnlab.nn.pooling import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    GlobalAvgPool2d,
    LearnedLPPool2d,
    LPPool2d,
    MaxPool2d,
    MixedPool2d,
)
from cnnlab.nn.scanning import (
    distributed_tdnn,
    scan_mlp,
    scanning_mlp_to_tdnn,
    tdnn_to_scanning_mlp,
)
from cnnlab.nn.shapes import output_size, padding_for, same_padding, transposed_output_size
from cnnlab.nn.sparse import SparseConv2d
from cnnlab.nn.subsampling import TrainableSubsampling
from cnnlab.nn.transposed import ExplicitConvTranspose2d, conv_transpose2d

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "Conv1dFunction",
    "Conv2dFunction",
    "ExplicitConv1d",
    "ExplicitConv2d",
    "ExplicitConvTranspose2d",
    "ExplicitSparseConv2d",
    "GlobalAvgPool2d",
    "LPPool2d",
    "LearnedLPPool2d",
    "LocallyConnected2d",
    "MaxPool2d",
    "MixedPool2d",
    "ScaledTanh",
    "SparseConv2d",
    "TrainableSubsampling",
    "conv1d",
    "conv1x1_to_linear",
    "conv2d",
    "conv_transpose2d",
    "distributed_tdnn",
    "explicit",
    "layer_param_counts",
    "linear_to_conv1x1",
    "output_size",
    "padding_for",
    "same_padding",
    "scan_mlp",
    "scanning_mlp_to_tdnn",
    "tdnn_to_scanning_mlp",
    "transposed_output_size",
]
