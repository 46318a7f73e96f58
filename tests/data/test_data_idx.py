import gzip
import struct

import numpy as np
import pytest
import torch

from cnnlab.data import read_idx, write_idx
from cnnlab.errors import DataError


def _idx_bytes(type_code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    # Written by hand from the format description, independent of write_idx.
    return bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def test_reads_hand_written_uint8_file(tmp_path):
    values = bytes(range(24))
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(_idx_bytes(0x08, (2, 3, 4), values))
    out = read_idx(path)
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 4)
    assert out.flatten().tolist() == list(values)


def test_reads_big_endian_int32_and_float(tmp_path):
    ints = [1, -2, 70000]
    (tmp_path / "i").write_bytes(_idx_bytes(0x0C, (3,), struct.pack(">3i", *ints)))
    assert read_idx(tmp_path / "i").tolist() == ints
    floats = [0.5, -1.25]
    (tmp_path / "f").write_bytes(_idx_bytes(0x0D, (2,), struct.pack(">2f", *floats)))
    assert read_idx(tmp_path / "f").tolist() == floats


def test_gzipped_file_reads_the_same(tmp_path):
    raw = _idx_bytes(0x08, (5,), bytes([9, 8, 7, 6, 5]))
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    assert read_idx(tmp_path / "a.gz").tolist() == [9, 8, 7, 6, 5]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["t.idx", "t.idx.gz"])
def test_write_then_read_round_trip(tmp_path, dtype, name):
    array = (np.arange(60).reshape(3, 4, 5) - 20).astype(dtype)
    out = read_idx(write_idx(tmp_path / name, array))
    np.testing.assert_array_equal(out.numpy(), array)


def test_truncated_file_names_file_and_problem(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_idx_bytes(0x08, (10, 28, 28), bytes(100)))
    # 16 header bytes + 10*28*28 pixels = 7856 bytes expected
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*truncated.*7856 bytes, file has 116"):
        read_idx(path)


def test_wrong_magic_number(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match=r"bad.idx.*not an IDX file.*1234"):
        read_idx(path)


def test_unknown_type_code_and_extra_bytes(tmp_path):
    (tmp_path / "t").write_bytes(_idx_bytes(0x07, (1,), b"\x00"))
    with pytest.raises(DataError, match="unknown type code 0x07"):
        read_idx(tmp_path / "t")
    (tmp_path / "long").write_bytes(_idx_bytes(0x08, (2,), b"\x00\x01\x02"))
    with pytest.raises(DataError, match="longer than its header"):
        read_idx(tmp_path / "long")


def test_corrupt_gzip_and_missing_file(tmp_path):
    good = gzip.compress(_idx_bytes(0x08, (1000,), bytes(1000)))
    (tmp_path / "c.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"c.gz.*corrupt or truncated gzip"):
        read_idx(tmp_path / "c.gz")
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(tmp_path / "nope")
