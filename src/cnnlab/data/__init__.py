"""Data: IDX reader, in-memory data sets, and their lookup order."""

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

__all__ = ["DATASET_NAMES", "FASHION_MNIST_CLASSES", "InMemoryDataset", "find_idx_dir",
           "load_dataset", "load_digits", "load_idx_dataset", "read_idx", "write_idx"]
