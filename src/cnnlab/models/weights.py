"""Loading weights from outside: safetensors, or torch files with ``weights_only=True``.

Never an unpickler that can run code. ``load_torchvision_weights`` loads a torchvision state dict
(a file or a dict) into the matching cnnlab model; families whose module names differ from
torchvision's define ``torchvision_key_map(state_dict) -> state_dict`` to rename keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ConfigError, DataError


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated zip, ...
        raise DataError(f"cannot read weights from {str(path)!r}: {err}") from err
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise DataError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict")
    return dict(state)


def load_torchvision_weights(
    model: nn.Module, source: str | Path | Mapping[str, torch.Tensor], strict: bool = True
) -> nn.Module:
    """Load torchvision weights (a file or a state dict) into a cnnlab model, in place.

    Keys are renamed by ``model.torchvision_key_map`` when the family defines it; otherwise they
    must match (cnnlab keeps torchvision's module names for that reason). Returns the model.
    """
    state = load_state_dict_file(source) if isinstance(source, (str, Path)) else dict(source)
    if hasattr(model, "torchvision_key_map"):
        state = model.torchvision_key_map(state)
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        k = mismatched[0]
        raise ConfigError(
            f"weight {k!r} has shape {tuple(state[k].shape)} but the model expects "
            f"{tuple(own[k].shape)}; build the model with the same num_classes/in_chans/variant "
            f"as the weights, then reset_classifier()"
        )
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise ConfigError(f"these weights do not fit {type(model).__name__}: {err}") from None
    return model
