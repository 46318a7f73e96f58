"""Layer mathematics of the notes: explicit convolution, shapes, pooling, LeNet's layers."""

from cnnlab.nn.activations import ScaledTanh
from cnnlab.nn.sparse import SparseConv2d
from cnnlab.nn.subsampling import TrainableSubsampling

__all__ = ["ScaledTanh", "SparseConv2d", "TrainableSubsampling"]
