"""Shapes without arithmetic: run a model on the ``meta`` device and say where an input is too small.

One mechanism serves three uses:

* :func:`meta_output_shape` — the output shape of a module for an input shape (AlexNet and VGG
  size their first fully connected layer from the real last map with it);
* :func:`check_input_size` — ``create_model(..., input_size=...)`` fails at once, naming the layer,
  rather than in the first forward;
* :func:`explain_shape_errors` — a decorator for ``forward`` methods: when torch fails on a real
  input, the same check re-runs on the meta device, in the model's current mode (so GoogLeNet's
  training-only side branches are checked too), and a :class:`ShapeError` names the layer.

The forward runs on stand-ins through :func:`cnnlab.stateless.run_stateless`, which says which
layer failed (``layer 'path' (Type) got input (shape)``) and whether the input was too small or
did not fit; for convolutions and poolings the failure is explained by
o = floor((i + 2p - d(k-1) - 1)/s) + 1 per axis (:func:`cnnlab.nn.output_size`). Torch's own meta
kernel decides whether the layer fails (so its ceil-mode rule is the rule); the formula only
explains the failure. Layers that return an empty tensor instead of failing (adaptive pools of an
empty map) count as too small.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from cnnlab.errors import ShapeError
from cnnlab.nn import output_size
from cnnlab.stateless import EmptyOutput, StandInError, run_stateless

_SIZED = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)
_LARGEST = 4096  # the search for the smallest accepted input stops here


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


def _meta_forward(model: nn.Module, shape: tuple[int, ...], training: bool, prefix: str = ""
                  ) -> tuple[str, tuple[int, ...] | str | Exception]:
    """Run ``model`` in mode ``training`` on a meta tensor of ``shape``
    (:func:`cnnlab.stateless.run_stateless`).

    Returns ``("ok", output shape)``, ``("small", message)``, ``("mismatch", message)`` or
    ``("other", error)`` (a failure the meta device cannot judge; the real forward will tell).
    Layer paths in messages start with ``prefix``.
    """
    dtype = next((t.dtype for t in model.parameters() if t.is_floating_point()), torch.float32)
    try:
        with torch.no_grad():
            out = run_stateless(model, torch.empty(shape, device="meta", dtype=dtype), training)
    except StandInError as err:
        frame = err.frame
        verdict = (_formula_verdict(frame.module, frame.input_shapes[0])
                   if frame is not None and isinstance(frame.module, _SIZED) else None)
        if verdict is not None:
            return "small", f"{err.where(prefix)}: {verdict}"
        if isinstance(err.error, EmptyOutput):
            return "small", f"{err.where(prefix)} and {err.text}"
        if err.kind in ("small", "mismatch"):
            return err.kind, f"{err.where(prefix)}: {err.text}"
        return "other", err.error
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
