"""Data: IDX reader, in-memory data sets, image folders (in memory or streamed), their lookup."""

from cnnlab.data.datasets import (
    DATASET_NAMES,
    FASHION_MNIST_CLASSES,
    InMemoryDataset,
    find_idx_dir,
    load_dataset,
    load_digits,
    load_idx_dataset,
)
from cnnlab.data.idx import read_idx, write_idx
from cnnlab.data.images import decode_image_file
from cnnlab.data.stream import FileImageDataset

__all__ = ["DATASET_NAMES", "FASHION_MNIST_CLASSES", "FileImageDataset", "InMemoryDataset",
           "decode_image_file", "find_idx_dir", "load_dataset", "load_digits", "load_idx_dataset",
           "read_idx", "write_idx"]
