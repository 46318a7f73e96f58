"""Image files: the one decoder (image folders, streaming, ``cnnlab predict``), the header scan of
a folder's files, and the DataLoader-worker errors turned back into one line.

:func:`decode_image_file` gives uint8 (C, H, W) with C the model's channels (1: ITU-R 601 luma, 3:
RGB) whatever the file holds: 8- or 16-bit, grey, grey + alpha, palette, RGB(A), CMYK. PNG, JPEG,
GIF and WEBP are decoded by ``torchvision.io``; what it cannot read (BMP, TIFF, ...) by PIL. 16-bit
samples are scaled to 0-255 (``round(v * 255 / 65535)``), so every image reaches normalisation on
the same scale.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import DataError

# What an image folder lists; each decodes (torchvision.io, else PIL).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
_TORCHVISION_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")


def _reason(err: BaseException) -> str:
    """The first line of a decoder's message, without torchvision's C++ source location."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"^.*?\.(?:cpp|h):\d+,\s*", "", text)


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    """uint8 as it is; 16-bit (uint16, or int32 from PIL's 'I' modes) scaled 0-65535 -> 0-255."""
    if image.dtype == torch.uint8:
        return image
    wide = image.to(torch.int64).clamp(0, 65535)
    return ((wide * 255 + 32767) // 65535).to(torch.uint8)


def _to_channels(image: torch.Tensor, in_chans: int) -> torch.Tensor:
    """(C, H, W) with C in 1-4 (grey, grey + alpha, RGB, RGBA) -> (in_chans, H, W); alpha dropped."""
    if image.shape[0] in (2, 4):
        image = image[:-1]
    if image.shape[0] == in_chans:
        return image
    if in_chans == 3:  # grey repeated
        return image.expand(3, -1, -1).contiguous()
    weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)  # ITU-R 601 luma
    return (image.float() * weights).sum(0, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def _decode_pil(path: Path, in_chans: int) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as image:
        image.seek(0)  # an animated file: its first frame
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.int64)[None]  # (1, H, W), 16-bit values
            return _to_channels(_to_uint8(torch.from_numpy(array)), in_chans)
        rgb = image.convert("L" if in_chans == 1 else "RGB")  # palette, CMYK, alpha handled by PIL
        array = np.asarray(rgb, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(array.copy())


def decode_image_file(path: str | Path, in_chans: int = 3) -> torch.Tensor:
    """Decode ``path`` to uint8 (in_chans, H, W) (see the module docstring); a file that does not
    decode is a :class:`~cnnlab.errors.DataError` naming it."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    path = Path(path)
    if in_chans not in (1, 3):
        raise DataError(f"images are read as grey (1 channel) or RGB (3 channels), not {in_chans}")
    if path.suffix.lower() in _TORCHVISION_SUFFIXES:
        try:
            with warnings.catch_warnings():  # torchvision 0.29 points to torchcodec; io still works
                warnings.simplefilter("ignore", DeprecationWarning)
                mode = ImageReadMode.GRAY if in_chans == 1 else ImageReadMode.RGB  # palette too
                image = decode_image(read_file(str(path)), mode=mode)
            if image.ndim == 4:  # an animated GIF: its first frame
                image = image[0]
            return _to_channels(_to_uint8(image), in_chans).contiguous()
        except (RuntimeError, ValueError) as err:
            first_error = err  # CMYK or odd PNGs that PIL reads: try it before giving up
    else:
        first_error = None
    from PIL import UnidentifiedImageError

    try:
        return _decode_pil(path, in_chans)
    except UnidentifiedImageError:
        reason = "not an image format that PIL or torchvision reads"
    except Exception as err:  # PIL's OSError, ValueError, ... (a damaged file)
        reason = _reason(first_error or err)
    raise DataError(f"cannot read {str(path)!r} as an image ({reason}); replace or remove the "
                    f"file")


def header_ok(path: Path) -> str | None:
    """A quick check that reads only the file's header (PIL): None when it looks like an image
    of non-zero size, else the reason."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except UnidentifiedImageError:
        return "not an image format that PIL or torchvision reads"
    except (OSError, ValueError, SyntaxError) as err:
        return _reason(err)
    return None if width and height else f"its header says {width}x{height}"


def scan_headers(files: Iterable[Path]) -> list[tuple[Path, str]]:
    """(file, reason) for every file whose header does not read as an image. Remembered per
    (path, size, mtime) in this process: the train split is scanned once, not once per split."""
    return [(path, reason) for path in files
            if (reason := _header_ok_cached(path, *_signature(path))) is not None]


def _signature(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=200_000)
def _header_ok_cached(path: Path, size: int, mtime_ns: int) -> str | None:
    return header_ok(path)


def worker_error(err: BaseException) -> BaseException | None:
    """The one-line error a DataLoader worker's failure stands for (None: not a worker failure).

    PyTorch re-raises a worker's exception in the main process with the worker's whole traceback
    in its message, and a worker that died (killed, out of memory) as a RuntimeError naming its pid.
    """
    text = str(err)
    if "DataLoader worker" in text and "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        return DataError(re.sub(r"^[\w.]+(Error|Exception): ", "", last.strip()))
    if isinstance(err, RuntimeError) and re.search(r"DataLoader worker \(pid", text):
        return DataError(f"an image-decoding worker process stopped ({_reason(err)}): it was "
                         f"killed, often for lack of memory; lower data.workers or "
                         f"data.image_size, or set data.workers=0 to decode in this process")
    return None
