"""Exporting a trained model for deployment, checked by running the exported file.

* ``torchscript`` — ``torch.jit.trace`` on an example batch, saved with ``torch.jit.save``
  (PyTorch marks TorchScript deprecated in favour of ``torch.export``; it still runs anywhere
  libtorch does, and its deprecation warnings are silenced here);
* ``onnx`` — ``torch.onnx.export(..., dynamo=True)`` with a dynamic batch axis (needs the
  ``onnx`` and ``onnxscript`` packages), checked with ``onnxruntime``. The file is self-contained
  (graph and weights in one ``model.onnx``, which can be copied alone) when the model fits in one
  protobuf (< 2 GB); a larger model is saved with its weights in ``model.onnx.data`` beside it
  (:func:`onnx_data_file`), which must travel with it.

:func:`check_export` loads the written file, runs it on a fresh batch of a different size, and
returns the largest absolute difference from the PyTorch model's logits.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ConfigError

EXPORT_FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
ONNX_SINGLE_FILE_BYTES = 2**31 - 2**26  # protobuf's 2 GB limit, less room for the graph


def onnx_data_file(path: str | Path) -> Path:
    """Where the weights of an ONNX model too large for one file are saved: beside it."""
    path = Path(path)
    return path.with_name(path.name + ".data")


def _require(*packages: str) -> None:
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise ConfigError(f"ONNX export needs the Python package(s) {', '.join(missing)}: "
                          f"pip install {' '.join(missing)} (or use --format torchscript)")


def export_model(model: nn.Module, input_shape: tuple[int, int, int], path: str | Path,
                 fmt: str) -> Path:
    """Write ``model`` (eval mode, CPU, fp32) for inputs (B, *input_shape) to ``path``."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use onnx or torchscript")
    model = model.eval().cpu().float()
    example = torch.randn(2, *input_shape)
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if fmt == "torchscript":
            buffer = io.BytesIO()  # written by Python below: its OSError names the path
            with torch.no_grad():
                torch.jit.save(torch.jit.trace(model, example), buffer)
            data = buffer.getvalue()
        else:
            _require("onnx", "onnxscript")
            batch = torch.export.Dim("batch")
            program = torch.onnx.export(model, (example,), None, dynamo=True, verbose=False,
                                        input_names=["images"], output_names=["logits"],
                                        dynamic_shapes=({0: batch},))
            weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
            if weights >= ONNX_SINGLE_FILE_BYTES:  # graph here, weights in PATH.data beside it
                path.parent.mkdir(parents=True, exist_ok=True)
                program.save(str(path), external_data=True)
                return path
            data = program.model_proto.SerializeToString()  # one self-contained file
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.write_bytes(data)
    except OSError as err:  # a full disk names no file: say which one
        err.filename = err.filename or str(path)
        raise
    stale = onnx_data_file(path)
    if fmt == "onnx" and stale.is_file():  # an earlier export's weights: this file has its own
        stale.unlink()
    return path


def run_exported(path: str | Path, fmt: str, images: torch.Tensor) -> torch.Tensor:
    """Logits of the exported model at ``path`` for a float batch (B, C, H, W)."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            return loaded(images).float()
    _require("onnxruntime")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: images.numpy()})[0]).float()


@torch.no_grad()
def check_export(model: nn.Module, path: str | Path, fmt: str,
                 input_shape: tuple[int, int, int], batch: int = 5, seed: int = 0) -> float:
    """Max |exported(x) - model(x)| over a seeded random batch of ``batch`` images."""
    x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(seed))
    expected = model.eval().cpu().float()(x)
    return (run_exported(path, fmt, x) - expected).abs().max().item()
