"""The model registry: every architecture is registered once, with its facts as data.

``create_model(name, num_classes=..., in_chans=..., input_size=..., **kw)`` builds a model;
arguments left as ``None`` are dropped so that a CLI default never overrides a model's default
(timm's rule). ``model_info(name)`` returns the :class:`ModelInfo` the tests check the model
against: paper, year, default input size, reference parameter count and multiply-adds.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from torch import nn

from cnnlab.errors import CnnlabError, ConfigError


@dataclass(frozen=True)
class ModelInfo:
    """Facts about one registered variant, as the paper (or torchvision) reports them."""

    name: str  # registry name, e.g. "vgg16"
    family: str  # "lenet", "alexnet", "vgg", "nin", "googlenet", "resnet", "convnext", "tdnn"
    paper: str  # "Authors, Title" of the paper that defines the architecture
    year: int  # publication year of that paper
    input_size: tuple[int, ...]  # default input (C, H, W) or (C, L) for 1D models
    num_classes: int  # classes of the default configuration the counts refer to
    params: int | None  # trainable parameters of the default configuration (exact)
    macs: int | None = None  # multiply-adds at input_size (conv/linear/matmul, no bias)
    url: str = ""  # arXiv / DOI / publisher link
    first_conv: str = ""  # module path of the first convolution (for in_chans surgery)
    classifier: str = ""  # leave empty: the model's own ``classifier_name`` says where it is
    deviations: tuple[str, ...] = ()  # every departure from the paper, one sentence each
    small_input: str = ""  # the documented rule used to adapt the model to small images
    extra: dict = field(default_factory=dict)  # anything family specific (e.g. params_with_aux)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Entry:
    fn: Callable[..., nn.Module]
    info: ModelInfo


_REGISTRY: dict[str, _Entry] = {}


def register_model(info: ModelInfo) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a constructor under ``info.name``; use as ``@register_model(ModelInfo(...))``."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if info.name in _REGISTRY:
            raise ValueError(f"model {info.name!r} is registered twice")
        if fn.__name__ != info.name:
            raise ValueError(f"constructor {fn.__name__!r} must be named like its ModelInfo {info.name!r}")
        _REGISTRY[info.name] = _Entry(fn, info)
        return fn

    return decorator


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown model {name!r}.{hint} Run `cnnlab models` to list all {len(_REGISTRY)} models."
        ) from None


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally filtered by a glob ``pattern``."""
    import fnmatch

    names = sorted(_REGISTRY)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


OWN_ARGUMENTS = ("name", "num_classes", "in_chans", "input_size", "weights")  # create_model's


def model_options(name: str) -> tuple[str, ...]:
    """The family options ``create_model(name, **options)`` takes: the keyword parameters of the
    constructor of the class the registered function returns (read with inspect.signature),
    less create_model's own arguments (:data:`OWN_ARGUMENTS`)."""
    import inspect
    import typing

    fn = _entry(name).fn
    cls = typing.get_type_hints(fn).get("return")
    params = inspect.signature(cls.__init__ if isinstance(cls, type) else fn).parameters.values()
    return tuple(p.name for p in params if p.name != "self" and p.name not in OWN_ARGUMENTS
                 and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                 and p.default is not p.empty)


def check_model_options(name: str, options) -> None:
    """Raise :class:`ConfigError` unless ``options`` is a mapping of :func:`model_options` names."""
    if not isinstance(options, dict):
        raise ConfigError(f"model.options must map option names to values, got {options!r}")
    valid = model_options(name)
    bad = [k for k in options if k not in valid]
    if bad:
        raise ConfigError(f"{name} has no option {bad[0]!r}; its options: "
                          f"{', '.join(valid) or 'none'} (model.options)")


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registered model; unknown names list close matches."""
    return _entry(name).info


def create_model(
    name: str,
    num_classes: int | None = None,
    in_chans: int | None = None,
    input_size: int | tuple[int, ...] | None = None,
    weights: str | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model, optionally with pretrained weights.

    Args:
        name: a name from :func:`list_models`.
        num_classes: outputs of the classifier (the paper's when ``None``; with ``weights``, the
            weights' classes — another number keeps the pretrained backbone under a new head).
        in_chans: input channels (the paper's when ``None``; with ``weights`` another number
            adapts the first convolution, see :func:`cnnlab.models.weights.adapt_input_conv`).
        input_size: spatial size the model will see (an int or (H, W)); families that cannot
            take small images as published adapt by the rule in ``model_info(name).small_input``.
            With ``weights``, the weights' input size when ``None``.
        weights: a tag of :func:`~cnnlab.models.weights.list_weights` (``"imagenet"``,
            ``"IMAGENET1K_V1"``, ...): load those pretrained weights.
        **kwargs: family options (e.g. ``aux_logits``, ``shortcut``, ``drop_path_rate``).
            Options left as ``None`` are dropped, so the model's own default applies.
    """
    entry = _entry(name)
    check_model_options(name, kwargs)
    options = dict(num_classes=num_classes, in_chans=in_chans, input_size=input_size, **kwargs)
    options = {k: v for k, v in options.items() if v is not None}
    for key in ("num_classes", "in_chans"):
        if key in options and (not isinstance(options[key], int) or options[key] < 1):
            raise ConfigError(f"{key} must be a positive integer, got {options[key]!r}")
    pretrained = None
    if weights is not None:
        from cnnlab.models.weights import weights_info

        pretrained = weights_info(name, weights)
        input_size = input_size or pretrained.preprocessing.crop
        options.update(num_classes=pretrained.num_classes, input_size=input_size)
    try:
        model = entry.fn(**options)
    except CnnlabError:  # ConfigError, ShapeError: already one clear line
        raise
    except (TypeError, ValueError) as err:  # an option the variant fixes itself (lenet5_modern's
        # modern=...), or a value that does not fit it (four widths for a three-stage ResNet)
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if v is not None)
        raise ConfigError(f"{name} cannot be built with {given or 'these sizes'}: "
                          f"{str(err).splitlines()[0]}; its options: "
                          f"{', '.join(model_options(name))}") from None
    if pretrained is not None:
        from cnnlab.models.weights import load_pretrained

        load_pretrained(model, pretrained, entry.info.first_conv)
        if num_classes is not None and num_classes != pretrained.num_classes:
            model.reset_classifier(num_classes)
    if input_size is not None:  # fail now, naming the layer, rather than in the first forward
        from cnnlab.models.base import check_input_size

        ndim = len(entry.info.input_size) - 1
        size = (input_size,) * ndim if isinstance(input_size, int) else tuple(input_size)[-ndim:]
        check_input_size(model, (1, options.get("in_chans", entry.info.input_size[0]), *size))
    return model
