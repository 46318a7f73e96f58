"""Shapes without arithmetic: run a model on the ``meta`` device and say where an input is too small.

One mechanism serves three uses:

* :func:`meta_output_shape` — the output shape of a module for an input shape (AlexNet and VGG
  size their first fully connected layer from the real last map with it);
* :func:`check_input_size` — ``create_model(..., input_size=...)`` fails at once, naming the layer,
  rather than in the first forward;
* :func:`explain_shape_errors` — a decorator for ``forward`` methods: when torch fails on a real
  input, the same check re-runs on the meta device, in the model's current mode (so GoogLeNet's
  training-only side branches are checked too), and a :class:`ShapeError` names the layer.

A forward pre-hook on every submodule records ``layer 'path' (Type) got input (shape)``; for
convolutions and poolings it also works out o = floor((i + 2p - d(k-1) - 1)/s) + 1 per axis with
:func:`cnnlab.nn.output_size`. Torch's own meta kernel decides whether the layer fails (so its
ceil-mode rule is the rule); the formula only explains the failure. A forward hook catches layers
that return an empty tensor instead of failing (adaptive pools of an empty map).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.nn import output_size

_SIZED = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)
# Normalisation layers keep their input's shape; their stock forwards are skipped on meta.
_NORM_FORWARDS = (nn.modules.batchnorm._BatchNorm.forward, nn.LayerNorm.forward,
                  nn.GroupNorm.forward)
# What torch says when an output would be empty (layers without a formula), or shapes do not fit.
_TOO_SMALL = ("too small", "can't be greater than actual input size", "non-empty")
_MISMATCH = ("shapes cannot be multiplied", "expected input", "size mismatch", "sizes of tensors")
_LARGEST = 4096  # the search for the smallest accepted input stops here


class _EmptyOutput(RuntimeError):
    pass


def _per_axis(value, n: int) -> tuple[int, ...]:
    return (value,) * n if isinstance(value, int) else tuple(value)[-n:]


def _spatial_dims(module: nn.Module) -> int:
    """1, 2 or 3: the spatial axes of a torch ``Conv1d``..``AvgPool3d`` (or a subclass)."""
    return next((int(c.__name__[-2]) for c in type(module).__mro__
                 if c.__name__[-2:] in ("1d", "2d", "3d")), 0)


def _formula_verdict(module: nn.Module, in_shape: tuple[int, ...]) -> str | None:
    """Why o = floor((i + 2p - d(k-1) - 1)/s) + 1 is below 1 on some axis, or ``None``."""
    n = _spatial_dims(module)
    if not n or isinstance(module, nn.modules.conv._ConvTransposeNd) or module.padding == "same":
        return None
    pad = 0 if module.padding == "valid" else module.padding
    k, p = _per_axis(module.kernel_size, n), _per_axis(pad, n)
    s = _per_axis(module.stride or module.kernel_size, n)
    d = _per_axis(getattr(module, "dilation", 1), n)
    for axis, i in enumerate(in_shape[-n:]):
        try:
            output_size(i, k[axis], s[axis], p[axis], d[axis],
                        ceil_mode=getattr(module, "ceil_mode", False), name=f"axis {axis - n}")
        except ShapeError as err:
            return str(err)
    return None


def _same_shape(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A normalisation layer's shape rule without its arithmetic (torch decomposes batch and layer
    norm in Python on the meta device: ~1 ms a call, most of a ResNet-152 check)."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        if isinstance(module, nn.LayerNorm):
            want, got = tuple(module.normalized_shape), tuple(x.shape[-len(module.normalized_shape):])
        else:
            want = (module.num_channels if isinstance(module, nn.GroupNorm) else module.num_features,)
            got = tuple(x.shape[1:2])
        if want != got:
            raise RuntimeError(f"expected input with {want} in its normalised dimensions, "
                               f"got shape {tuple(x.shape)}")
        return x
    return forward


def _meta_forward(model: nn.Module, shape: tuple[int, ...], training: bool, prefix: str = ""
                  ) -> tuple[str, tuple[int, ...] | str | Exception]:
    """Run ``model`` in mode ``training`` on a meta tensor of ``shape``.

    Returns ``("ok", output shape)``, ``("small", message)``, ``("mismatch", message)`` or
    ``("other", error)`` (a failure the meta device cannot judge; the real forward will tell).
    Layer paths in messages start with ``prefix``.
    """
    state = {k: torch.empty_like(v, device="meta") for k, v in model.named_parameters()}
    state.update({k: torch.empty_like(v, device="meta") for k, v in model.named_buffers()})
    dtype = next(iter(state.values())).dtype if state else torch.float32
    stack: list[tuple[str, str | None]] = []  # (who got what, the formula's verdict)

    def pre_hook(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
            who = f"layer {prefix + name!r} ({type(module).__name__}) got input " \
                  f"{shapes[0] if len(shapes) == 1 else shapes}"
            verdict = _formula_verdict(module, shapes[0]) if isinstance(module, _SIZED) else None
            stack.append((who, verdict))
        return hook

    def post_hook(module: nn.Module, args: tuple, output) -> None:
        if isinstance(output, torch.Tensor) and output.numel() == 0:
            raise _EmptyOutput(f"{stack[-1][0]} and gives output {tuple(output.shape)} "
                               "(size below 1)")
        stack.pop()

    handles, patched = [], []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(pre_hook(name)))
            handles.append(module.register_forward_hook(post_hook))
        if type(module).forward in _NORM_FORWARDS and "forward" not in module.__dict__:
            module.forward = _same_shape(module)
            patched.append(module)
    modes = {m: m.training for m in model.modules()}
    model.train(training)
    try:
        x = torch.empty(shape, device="meta", dtype=dtype)
        out = torch.func.functional_call(model, state, (x,))
    except _EmptyOutput as err:
        return "small", str(err)
    except (RuntimeError, ValueError) as err:
        who, verdict = stack[-1] if stack else ("the model's first layer", None)
        text = str(err).split("\n")[0]
        if verdict is not None:
            return "small", f"{who}: {verdict}"
        if any(s in text.lower() for s in _TOO_SMALL):
            return "small", f"{who}: {text}"
        if any(s in text.lower() for s in _MISMATCH):
            return "mismatch", f"{who}: {text}"
        return "other", err
    finally:
        for h in handles:
            h.remove()
        for m in patched:
            del m.forward
        for m, mode in modes.items():
            m.train(mode)
    out = out if isinstance(out, torch.Tensor) else out[0]  # (logits, aux...) in training
    return "ok", tuple(out.shape)


def _smallest_input(model: nn.Module, shape: tuple[int, ...], training: bool) -> str:
    """The smallest square (or 1D) input the model accepts, as ``"HxW"``, found by doubling and
    then bisecting the spatial size (failures are monotone in it)."""
    ndim = len(shape) - 2
    too_small = lambda size: _meta_forward(  # noqa: E731
        model, shape[:2] + (size,) * ndim, training)[0] == "small"
    low = high = max(shape[2:])
    while high <= _LARGEST and too_small(high):
        low, high = high, high * 2
    while high - low > 1 and high <= _LARGEST:
        mid = (low + high) // 2
        low, high = (mid, high) if too_small(mid) else (low, mid)
    return "x".join([str(high)] * ndim) if high <= _LARGEST else "a larger input"


def meta_output_shape(model: nn.Module, input_shape: tuple[int, ...], *, training: bool = False,
                      prefix: str = "", name: str | None = None) -> tuple[int, ...]:
    """The output shape of ``model`` for ``input_shape`` (B, C, ...), on the meta device.

    Args:
        training: run in training mode (models with training-only branches, e.g. aux heads).
        prefix: prepended to layer paths in messages (``"features."`` for a submodule).
        name: what to call the model in messages (its class name by default).

    Raises:
        ShapeError: the input is too small — the message names the layer where the size drops
            below 1, the input it got, and the smallest input that runs — or does not fit.
    """
    shape = tuple(int(s) for s in input_shape)
    kind, detail = _meta_forward(model, shape, training, prefix)
    if kind == "other":
        raise detail
    if kind != "ok":
        _raise_shape_error(model, shape, training, kind, detail, name)
    return detail


def check_input_size(model: nn.Module, input_shape: tuple[int, ...], training: bool = False
                     ) -> None:
    """Raise :class:`ShapeError` if ``model`` cannot take an input of ``input_shape`` (B, C, ...);
    see :func:`meta_output_shape`. Costs a forward's worth of Python, no arithmetic, no copy of
    the weights (meta tensors have no storage)."""
    shape = tuple(int(s) for s in input_shape)
    kind, detail = _meta_forward(model, shape, training)
    if kind in ("small", "mismatch"):
        _raise_shape_error(model, shape, training, kind, detail)


def _raise_shape_error(model: nn.Module, shape: tuple[int, ...], training: bool, kind: str,
                       where: str, name: str | None = None) -> None:
    name = name or type(model).__name__
    if kind == "mismatch":
        raise ShapeError(f"input {shape} does not fit {name}: {where}. Build the model with "
                         f"create_model(..., input_size=<your size>) so it sizes its layers to it")
    raise ShapeError(f"input {shape} is too small for {name}: {where}. Use inputs of at least "
                     f"{_smallest_input(model, shape, training)}, or pass input_size= to "
                     f"create_model so the family adapts (see model_info(name).small_input)")


def explain_shape_errors(forward: Callable) -> Callable:
    """Decorate a model's ``forward(self, x, ...)``: if torch raises on a real input ``x``, check
    ``x``'s shape on the meta device in the model's current mode and raise a :class:`ShapeError`
    naming the layer when the input is too small or does not fit; otherwise re-raise."""
    @functools.wraps(forward)
    def checked(self: nn.Module, x: torch.Tensor, *args, **kwargs):
        try:
            return forward(self, x, *args, **kwargs)
        except RuntimeError:
            if isinstance(x, torch.Tensor) and x.device.type != "meta" and x.dim() >= 3:
                check_input_size(self, tuple(x.shape), training=self.training)
            raise
    return checked
