"""Reading weights files and loading them into models, safely: the one reader of each format and
the one check that weights fit a model.

* :func:`read_safetensors` — a ``.safetensors`` file (a format with no code in it);
* :func:`read_torch_file` — a torch file with ``torch.load(weights_only=True)``: tensors,
  numbers, strings, lists and dicts only; anything else is refused, never unpickled;
* :func:`load_checked` — ``load_state_dict`` with one line saying how the weights differ.

Every failure is one :class:`~cnnlab.errors.CnnlabError` line naming the file and a fix (never
PyTorch's advice to retry with ``weights_only=False``, which would run the file's code).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ConfigError, DataError

RUN_FILE_FIX = "restore it from a copy, or train the run again"


def read_safetensors(path: str | Path, fix: str = RUN_FILE_FIX) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file; an empty, truncated or foreign file (a pickle
    renamed) is one :class:`DataError` naming the file, what is wrong and ``fix``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"weights file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{str(path)!r} is empty (0 bytes), not a valid safetensors file; {fix}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:  # header too small/large, truncated
        reason = str(err).splitlines()[0].removeprefix("Error while deserializing header: ")
        raise DataError(f"{str(path)!r} is not a valid safetensors file ({reason}); {fix}") from None


def read_torch_file(path: str | Path, what: str = "weights", fix: str = RUN_FILE_FIX):
    """``torch.load(path, weights_only=True)``: tensors, numbers, strings, lists and dicts only.

    A file that holds anything else (a pickle that would run code) or that torch cannot read
    (truncated zip, text, another format) is one :class:`DataError` naming the file and ``fix``,
    never torch's advice to retry with ``weights_only=False``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle before refusing it
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, zip RuntimeError, KeyError, EOFError, ...
        raise DataError(f"cannot read {what} {str(path)!r}: {_load_failure(err, what)}; {fix}") from None


def _load_failure(err: Exception, what: str = "weights") -> str:
    """Why ``torch.load(weights_only=True)`` failed, in one line (without torch's advice to retry
    with ``weights_only=False``, which would run whatever code the file holds)."""
    import pickle
    import re

    text = str(err)
    found = re.search(r"GLOBAL (\S+)", text)
    if isinstance(err, pickle.UnpicklingError) and found:
        return (f"it holds Python objects ({found.group(1)}) besides tensors, numbers, strings, "
                f"lists and dicts, and cnnlab never unpickles those (they could run code)")
    return f"it is not a {what} file torch can read (truncated, corrupt or of another format)"


def load_checked(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "these weights",
                 strict: bool = True,
                 fix: str = "build the model with the same num_classes/in_chans/variant as the "
                            "weights, then reset_classifier()") -> nn.Module:
    """``model.load_state_dict(state)``, or one :class:`ConfigError` that says how the weights
    differ from the model: the first tensor of another shape, the first missing and unexpected
    key, each with a count (PyTorch's message lists every one over many lines)."""
    own = model.state_dict()
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    missing = [k for k in own if k not in state] if strict else []
    unexpected = [k for k in state if k not in own] if strict else []
    if shapes or missing or unexpected:
        parts = []
        if shapes:
            k = shapes[0]
            parts.append(f"{k!r} has shape {tuple(state[k].shape)}, the model {tuple(own[k].shape)}"
                         f" ({len(shapes)} of {len(own)} tensors differ in shape)")
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]!r})")
        raise ConfigError(f"{source} do not fit {type(model).__name__}: {'; '.join(parts)}; {fix}")
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as err:  # anything the checks above do not see
        raise ConfigError(f"{source} do not fit {type(model).__name__}: "
                          f"{str(err).splitlines()[0]}; {fix}") from None
    return model
