"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzipped).

Layout (big-endian): two zero bytes, a type code, the number of dimensions n, then n 32-bit
sizes, then prod(sizes) items. http://yann.lecun.com/exdb/mnist/ (bottom of the page).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import DataError

# type code -> big-endian numpy dtype
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read IDX file {str(path)!r}: {err.strerror or err}") from err
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:  # truncated or corrupt gzip / deflate stream
        raise DataError(f"IDX file {str(path)!r} is a corrupt or truncated gzip file ({err}); "
                        f"delete it and fetch it again") from err


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file into a tensor of its shape; uint8 data stays uint8.

    Raises:
        DataError: naming the file and what is wrong (bad magic number, unknown type code,
            zero dimensions, or a length that disagrees with the header).
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"IDX file {str(path)!r} is truncated: {len(data)} bytes, no header")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{str(path)!r} is not an IDX file: magic number starts with "
                        f"{data[:2].hex()} instead of 0000")
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_TYPES:
        raise DataError(f"IDX file {str(path)!r} has unknown type code 0x{type_code:02x} "
                        f"(expected one of {', '.join(f'0x{t:02x}' for t in IDX_TYPES)})")
    if ndim == 0:
        raise DataError(f"IDX file {str(path)!r} declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"IDX file {str(path)!r} is truncated inside its header "
                        f"({len(data)} of {header_len} bytes)")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    expected = header_len + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"IDX file {str(path)!r} is {what}: header {shape} needs {expected} bytes, "
                        f"file has {len(data)}; delete it and fetch it again")
    array = np.frombuffer(data, dtype, offset=header_len).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def write_idx(path: str | Path, tensor: torch.Tensor | np.ndarray, compress: bool | None = None) -> Path:
    """Write a tensor as an IDX file (gzipped when the name ends in .gz or ``compress``)."""
    path = Path(path)
    array = tensor.numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise DataError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, codes[native], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.astype(IDX_TYPES[codes[native]]).tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path
