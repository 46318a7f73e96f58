"""Where a transferred network comes from: a cnnlab run, a weights file, pretrained weights.

``load_source(path, model_name=None, input_size=None)`` returns the source model (eval mode, CPU)
and the :class:`~cnnlab.train.config.ModelConfig` that rebuilds it:

* a **run directory** (``config.json`` + ``model.safetensors``) carries its own model config;
* a **weights file** (``.safetensors``, or a torch file read with ``weights_only=True``) needs the
  model name; the number of classes and input channels are read from the shapes of the weights of
  the classifier and the first convolution (the model's ``classifier_name``,
  ``ModelInfo.first_conv``), and keys are renamed with the family's ``torchvision_key_map`` when
  it has one (:func:`~cnnlab.models.load_torchvision_weights`), so torchvision state dicts load
  directly.

``pretrained_source(model, tag)`` gives a network with pretrained weights by name
(:func:`~cnnlab.models.list_weights`), with the preprocessing the target's images must get.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ConfigError, DataError
from cnnlab.models import (
    create_model,
    load_state_dict_file,
    load_torchvision_weights,
    model_info,
    weights_info,
)
from cnnlab.models.weights import Preprocessing
from cnnlab.train.checkpoint import load_run_model
from cnnlab.train.config import ModelConfig


def load_source(source: str | Path, model_name: str | None = None,
                input_size: int | None = None) -> tuple[ModelConfig, nn.Module]:
    """The source model and the config that rebuilds it (see the module docstring)."""
    path = Path(source)
    if path.is_dir():
        config, model = load_run_model(path)
        return dataclasses.replace(config.model, options=dict(config.model.options)), model
    if not path.exists():
        raise DataError(f"--from {str(source)!r} does not exist; give a run directory written by "
                        f"`cnnlab train` or a weights file (.safetensors, .pth) with --model NAME")
    if not model_name:
        raise ConfigError(f"{str(source)!r} is a bare weights file: say which architecture it holds "
                          f"with --model NAME (see `cnnlab models`)")
    info = model_info(model_name)
    state = load_state_dict_file(path)
    with torch.device("meta"):  # only its module names are read: no weights to initialise
        probe = create_model(model_name, input_size=input_size)
    if hasattr(probe, "torchvision_key_map"):
        state = probe.torchvision_key_map(state)
    num_classes = _dim(state, f"{probe.classifier_name}.weight", 0)
    in_chans = _dim(state, f"{info.first_conv}.weight", 1)
    config = ModelConfig(name=model_name, num_classes=num_classes, in_chans=in_chans,
                         input_size=input_size or info.input_size[-1])
    model = create_model(**config.create_kwargs())
    load_torchvision_weights(model, state)
    config.num_classes = getattr(model, "num_classes", num_classes)
    config.in_chans = in_chans or info.input_size[0]
    return config, model.eval()


def _dim(state: dict, key: str, axis: int) -> int | None:
    tensor = state.get(key)
    return int(tensor.shape[axis]) if tensor is not None and tensor.ndim > axis else None


def pretrained_source(model_name: str, tag: str) -> tuple[ModelConfig, nn.Module, Preprocessing]:
    """A network with the pretrained weights ``tag``, its config and the weights' preprocessing.

    A transfer from it resizes the target's images to ``preprocessing.crop``, gives grey images
    three channels, and normalises with the weights' mean and std.
    """
    info = weights_info(model_name, tag)
    model = create_model(model_name, weights=tag)
    config = ModelConfig(name=model_name, num_classes=info.num_classes, in_chans=3,
                         input_size=info.preprocessing.crop)
    return config, model.eval(), info.preprocessing
