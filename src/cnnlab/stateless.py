"""Running a model on stand-in tensors: the one place cnnlab calls ``torch.func.functional_call``.

Two users, at two levels of the package: the shape checks of :mod:`cnnlab.models._shapes` (a model
must not import ``analysis``) and the analysis trace of :mod:`cnnlab.analysis.trace`. Both get the
same machinery from :func:`run_stateless`:

* every parameter and buffer is swapped for a stand-in for the one call (:func:`stand_ins`): an
  empty meta tensor (no storage, no arithmetic) or a copy on another device, floating ones in the
  input's dtype; one stand-in per tensor, so tied weights stay tied. The model is never modified;
* forward pre/post hooks on every module (the root included) keep a stack of :class:`Frame` s —
  module path, module, input shapes — and call the caller's hooks beside; they are removed after;
* the model runs in the mode asked for (``training``) and every module's flag is restored after;
* on the meta device, batch, layer and group norm, element-wise ops (broadcasting, in any
  layout), ``cat``, max pooling and ``mean`` are answered without torch's Python reference
  decompositions (:class:`FastMeta`; 0.2-2 ms a call otherwise, most of the time of a ResNet-152
  check), and so are the output shapes of a convolution and a matrix product; each in the layout
  torch's own meta kernel gives (tests/test_stateless.py checks them against it);
* a failure becomes a :class:`StandInError` naming the innermost module and the kind of failure,
  classified once, here: ``"small"`` (some output would be empty: a module returned an empty
  tensor, or torch says the input is too small), ``"mismatch"`` (shapes do not fit together) or
  ``"other"`` (nothing the shapes explain; the real forward will tell).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch._prims_common import (
    compute_elementwise_output_logical_to_physical_perm as _elementwise_perm,
)
from torch.utils._python_dispatch import TorchDispatchMode

# What torch says when an output would be empty, or when shapes do not fit (lower case).
TOO_SMALL = ("too small", "can't be greater than actual input size", "non-empty")
MISMATCH = ("shapes cannot be multiplied", "expected input", "size mismatch", "sizes of tensors",
            "must match the size", "same reduction dim", "more than 1 value per channel")


def classify(message: str) -> str:
    """``"small"``, ``"mismatch"`` or ``"other"`` for the first line of a torch error."""
    text = message.lower()
    if any(s in text for s in TOO_SMALL):
        return "small"
    if any(s in text for s in MISMATCH):
        return "mismatch"
    return "other"


@dataclass
class Frame:
    """One module call in progress."""

    name: str  # path in named_modules(); "" for the model itself
    module: nn.Module
    args: tuple = ()  # the call's positional arguments (shapes are read only when needed)

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(a.shape) for a in self.args if isinstance(a, torch.Tensor)]

    def describe(self, prefix: str = "") -> str:
        """``layer 'features.3' (MaxPool2d) got input (1, 64, 2, 2)``."""
        shapes = self.input_shapes[0] if len(self.input_shapes) == 1 else self.input_shapes
        who = f"layer {prefix + self.name!r}" if self.name or prefix else "the model"
        return f"{who} ({type(self.module).__name__}) got input {shapes}"


class StandInError(RuntimeError):
    """The stand-in forward failed: ``kind`` (``small``, ``mismatch``, ``other``), the innermost
    ``frame`` at the failure (None before the first module ran), its first line and the error."""

    def __init__(self, kind: str, frame: Frame | None, text: str, error: BaseException) -> None:
        super().__init__(text)
        self.kind, self.frame, self.text, self.error = kind, frame, text, error

    def where(self, prefix: str = "") -> str:
        return self.frame.describe(prefix) if self.frame else "the model's first layer"


class EmptyOutput(RuntimeError):
    """A module returned an empty tensor: its input was too small (adaptive pools of an empty map
    return one instead of failing)."""


aten = torch.ops.aten
_BATCH_NORMS = {aten._native_batch_norm_legit_no_training.default,
                aten._native_batch_norm_legit.default, aten.native_batch_norm.default}
# Same-shape floating-point arithmetic whose meta result is "like the first input" (torch runs a
# Python reference implementation for these on meta, ~0.5 ms a call).
_LIKE_INPUT = {"add", "sub", "mul", "div", "relu", "gelu", "silu", "sigmoid", "tanh", "hardtanh",
               "hardswish", "hardsigmoid", "leaky_relu", "elu", "neg", "exp", "sqrt", "rsqrt",
               "clamp", "clamp_min", "threshold", "mish", "softplus", "abs", "square"}


def _empty_like(x: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(x)`` on meta: a dense tensor keeps its strides (what empty_like does for
    one), made directly (empty_like's meta path costs ~10x more); anything else asks torch."""
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")
    return torch.empty_like(x)


def _meta_batch_norm(func, args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch norm's (out, save_mean, save_invstd) on meta: an output like the input and two
    statistics (float32 for half inputs), (C,) with batch statistics, empty with running ones (as
    the CPU kernel returns)."""
    x = args[0]
    stat = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    training = func is not aten._native_batch_norm_legit_no_training.default and bool(args[5])
    channels = x.shape[1] if x.dim() > 1 and training else 0
    stats = (torch.empty(channels, dtype=stat, device="meta") for _ in range(2))
    return (_empty_like(x), *stats)


class FastMeta(TorchDispatchMode):
    """Answers normalisation and same-shape element-wise ops on meta tensors directly; everything
    else (and every op on real tensors) goes to torch. A caller's mode that sees every op (the
    analysis trace) subclasses it and calls :meth:`run` for the op itself: one Python dispatch per
    op instead of two stacked modes."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """Leave ``__torch_dispatch__`` unwrapped: torch would otherwise wrap it in two
        dynamo-disabling frames, run for every aten op; nothing here is compiled."""
        return False

    def run(self, func, args, kwargs):
        out = _fast_meta(func, args, kwargs)
        return func(*args, **kwargs) if out is None else out

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return self.run(func, args, kwargs or {})


def _meta_layer_norm(args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(out, mean, rstd) of layer norm on meta: statistics of shape (*leading, 1, ..., 1),
    float32 for half inputs; None when the shapes do not fit (torch then says why)."""
    x, normalized = args[0], tuple(args[1])
    if tuple(x.shape[x.dim() - len(normalized):]) != normalized:
        return None
    stat = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    shape = tuple(x.shape[:x.dim() - len(normalized)]) + (1,) * len(normalized)
    out = torch.empty(x.shape, dtype=x.dtype, device="meta")  # contiguous, as torch's kernel returns
    return (out, *(torch.empty(shape, dtype=stat, device="meta") for _ in range(2)))


def _meta_group_norm(args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(out, mean, rstd) of group norm on meta: statistics (N, groups) in the input's dtype."""
    x, n, channels, groups = args[0], args[3], args[4], args[6]
    if x.dim() < 2 or x.shape[1] != channels or channels % groups:
        return None
    return (_empty_like(x), *(torch.empty((n, groups), dtype=x.dtype, device="meta")
                                   for _ in range(2)))


def _meta_convolution(args) -> torch.Tensor | None:
    """A (non-transposed) convolution's meta output, contiguous as torch's meta kernel makes it:
    o = floor((i + 2p - d(k-1) - 1)/s) + 1 per axis; None (torch then says why) unless the shapes
    fit."""
    x, weight, _, stride, padding, dilation, transposed = args[:7]
    groups = args[8]
    n = weight.dim() - 2
    if transposed or x.dim() != n + 2 or x.shape[1] != weight.shape[1] * groups or \
            weight.shape[0] % groups or not (len(stride) == len(padding) == len(dilation) == n):
        return None
    out = [(x.shape[2 + a] + 2 * padding[a] - dilation[a] * (weight.shape[2 + a] - 1) - 1)
           // stride[a] + 1 for a in range(n)]
    if min(out, default=1) < 1:
        return None
    return torch.empty((x.shape[0], weight.shape[0], *out), dtype=x.dtype, device="meta")


def _meta_matmul(func, args) -> torch.Tensor | None:
    """mm (n, k) @ (k, m), addmm(bias, ...) and bmm (b, n, k) @ (b, k, m) on meta: a contiguous
    (n, m) / (b, n, m) output, as torch's meta kernels make it; None unless the shapes fit."""
    bias, (a, b) = (args[0], args[1:3]) if func is aten.addmm.default else (None, args[:2])
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.dtype != b.dtype:
        return None
    batched = func is aten.bmm.default
    if a.dim() != 2 + batched or b.dim() != 2 + batched or a.shape[-1] != b.shape[-2] or (
            batched and a.shape[0] != b.shape[0]):
        return None
    shape = (*a.shape[:-1], b.shape[-1])
    if bias is not None and (bias.dtype != a.dtype or _broadcast(bias.shape, shape) != shape):
        return None
    return torch.empty(shape, dtype=a.dtype, device="meta")


def _broadcast(*shapes) -> tuple[int, ...] | None:
    """The broadcast shape of ``shapes`` (aligned on the right), None when they do not broadcast."""
    ndim = max(len(s) for s in shapes)
    out = []
    for i in range(ndim):
        sizes = {s[len(s) - ndim + i] for s in shapes if len(s) - ndim + i >= 0} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _meta_broadcasting(func, args, kwargs) -> torch.Tensor | None:
    """A same-dtype element-wise op of meta tensors that broadcast, in any layout: the in-place
    form returns its first input when that already has the output's shape; otherwise an output of
    the broadcast shape in the layout torch's reference picks (inputs that need it expanded, then
    their common dimension order, ``compute_elementwise_output_logical_to_physical_perm``) —
    what torch's Python reference does on meta, without its wrappers (~0.6 ms a call)."""
    tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
    first = args[0]
    if any(t.dtype != first.dtype or t.device.type != "meta" for t in tensors):
        return None
    shape = _broadcast(*(t.shape for t in tensors))
    if shape is None:
        return None
    if func.overloadpacket.__name__.endswith("_"):  # in place: the (dense) first input
        dense = first.is_contiguous() or first.is_contiguous(memory_format=torch.channels_last)
        return first if tuple(first.shape) == shape and dense else None
    if all(t.is_contiguous() for t in tensors):
        return torch.empty(shape, dtype=first.dtype, device="meta")
    expanded = [t if tuple(t.shape) == shape else t.expand(shape) for t in tensors]
    perm, _ = _elementwise_perm(*expanded)
    return torch.empty_permuted(shape, perm, dtype=first.dtype, device="meta")


def _meta_cat(args, kwargs) -> torch.Tensor | None:
    """``cat`` of contiguous meta tensors of one dtype and rank, equal but along ``dim``: a
    contiguous output (the memory format torch's meta kernel keeps when every input is plainly
    contiguous); None otherwise (torch's Python meta decides)."""
    tensors = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if kwargs.keys() - {"dim"} or not isinstance(tensors, (list, tuple)) or not tensors:
        return None
    first = tensors[0]
    if not isinstance(first, torch.Tensor) or first.dim() == 0:
        return None
    nd = first.dim()
    dim = dim + nd if dim < 0 else dim
    if not 0 <= dim < nd:
        return None
    shape = list(first.shape)
    for t in tensors:
        if not isinstance(t, torch.Tensor) or t.device.type != "meta" or t.dtype != first.dtype \
                or t.dim() != nd or not t.is_contiguous() or _ambiguous_layout(t):
            return None
        if any(t.shape[i] != shape[i] for i in range(nd) if i != dim):
            return None
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return torch.empty(shape, dtype=first.dtype, device="meta")


def _meta_max_pool(args) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``max_pool2d_with_indices`` of a contiguous (N, C, H, W) meta tensor: output and int64
    indices, contiguous, of torch's pooling size per axis,
    o = floor_or_ceil((i + 2p - d(k-1) - 1) / s) + 1, less one when ceil mode would start the last
    window in the right padding; None unless the arguments are plainly valid (torch then says
    why)."""
    x = args[0]
    if x.dim() != 4 or not x.is_contiguous() or _ambiguous_layout(x) or not x.is_floating_point():
        return None
    kernel = _pair(args[1])
    stride = _pair(args[2] if len(args) > 2 and args[2] else kernel)
    padding = _pair(args[3] if len(args) > 3 else 0)
    dilation = _pair(args[4] if len(args) > 4 else 1)
    ceil = bool(args[5]) if len(args) > 5 else False
    if None in (kernel, stride, padding, dilation):
        return None
    out = []
    for i, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation, strict=True):
        if k < 1 or s < 1 or d < 1 or p < 0 or p > k // 2:
            return None
        o = (i + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
        if ceil and (o - 1) * s >= i + p:
            o -= 1
        if o < 1:
            return None
        out.append(o)
    shape = (*x.shape[:2], *out)
    return (torch.empty(shape, dtype=x.dtype, device="meta"),
            torch.empty(shape, dtype=torch.int64, device="meta"))


def _pair(v) -> tuple[int, int] | None:
    v = tuple(v) if isinstance(v, (list, tuple)) else (v,)
    if not all(isinstance(a, int) for a in v) or len(v) not in (1, 2):
        return None
    return v * 2 if len(v) == 1 else v


def _meta_mean(args, kwargs) -> torch.Tensor | None:
    """``mean.dim`` of a floating meta tensor over a list of dims: a contiguous output, the
    reduced dims kept as 1 or dropped (what torch's reference returns)."""
    x = args[0]
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if kwargs.keys() - {"dim", "keepdim"} or len(args) > 3 or not x.is_floating_point() or \
            not dims or x.dim() == 0:
        return None
    nd = x.dim()
    reduced = {d + nd if d < 0 else d for d in dims}
    if len(reduced) != len(dims) or not all(0 <= d < nd for d in reduced):
        return None
    shape = [1 if i in reduced else n for i, n in enumerate(x.shape) if keep or i not in reduced]
    return torch.empty(shape, dtype=x.dtype, device="meta")


def _ambiguous_layout(t: torch.Tensor) -> bool:
    """Contiguous in channels-last order as well (size-1 channel or spatial dims): torch's memory
    format suggestion may go either way, so the shortcut leaves such tensors to torch."""
    return (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)) or (
        t.dim() == 5 and t.is_contiguous(memory_format=torch.channels_last_3d))


def _fast_meta(func, args, kwargs):
    if func is aten.cat.default:
        return _meta_cat(args, kwargs) if args else None
    if not args or not isinstance(args[0], torch.Tensor) or args[0].device.type != "meta":
        return None
    if func is aten.convolution.default:
        return _meta_convolution(args)
    if func in (aten.mm.default, aten.addmm.default, aten.bmm.default):
        return _meta_matmul(func, args) if not kwargs else None
    if func in _BATCH_NORMS:
        x, weight = args[0], args[1]
        if isinstance(weight, torch.Tensor) and x.dim() > 1 and weight.shape[0] != x.shape[1]:
            return None  # let torch say what does not fit
        return _meta_batch_norm(func, args)
    if func is aten.max_pool2d_with_indices.default:
        return _meta_max_pool(args) if not kwargs else None
    if func is aten.mean.dim:
        return _meta_mean(args, kwargs)
    if func is aten.native_layer_norm.default:
        return _meta_layer_norm(args)
    if func is aten.native_group_norm.default:
        return _meta_group_norm(args)
    name = func.overloadpacket.__name__
    first = args[0]
    if name.rstrip("_") not in _LIKE_INPUT or kwargs.get("out") is not None:
        return None
    if not first.is_floating_point() or name.startswith("_"):
        return None
    for a in list(args[1:]) + list(kwargs.values()):
        if isinstance(a, torch.Tensor) and (a.shape != first.shape or a.dtype != first.dtype
                                            or a.stride() != first.stride()):
            return _meta_broadcasting(func, args, kwargs)
    return first if name.endswith("_") else _empty_like(first)


def stand_ins(model: nn.Module, like: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stand-ins for every parameter and buffer name (duplicates included), on ``like``'s device
    and, for floating tensors, in its dtype: empty on meta, elsewhere copies of the buffers (a
    training-mode forward updates BatchNorm's statistics in place) and of the parameters that are
    on another device or in another dtype; a parameter already there in that dtype is used
    through a detached view of its storage (a forward never writes a weight, and a gradient
    would land on the view; no copy of VGG-16's 528 MB). Tensors shared under several names
    share one stand-in."""
    made: dict[int, torch.Tensor] = {}

    def swap(t: torch.Tensor, copy: bool) -> torch.Tensor:
        if id(t) not in made:
            dtype = like.dtype if t.is_floating_point() else t.dtype
            if like.device.type == "meta":
                new = torch.empty_like(t, device="meta", dtype=dtype)
            elif not copy and t.device == like.device and t.dtype == dtype:
                new = t.detach()
            else:
                new = t.detach().to(like.device, dtype, copy=True)
            made[id(t)] = new.requires_grad_(t.requires_grad)
        return made[id(t)]

    state = {n: swap(p, False) for n, p in model.named_parameters(remove_duplicate=False)}
    state.update({n: swap(b, True) for n, b in model.named_buffers(remove_duplicate=False)})
    return state


def run_stateless(model: nn.Module, inputs: torch.Tensor, training: bool = False, *,
                  state: dict[str, torch.Tensor] | None = None,
                  pre_hook: Callable[[Frame, list[Frame]], None] | None = None,
                  post_hook: Callable[[Frame, object], None] | None = None,
                  dispatch_mode: TorchDispatchMode | None = None):
    """``model(inputs)`` on stand-ins (see the module docstring); returns the output.

    Args:
        training: the mode to run in (restored after, module by module).
        state: the stand-ins to use (default :func:`stand_ins` of ``inputs``).
        pre_hook: called as ``pre_hook(frame, stack)`` when a module call starts (the frame is on
            top of ``stack``).
        post_hook: called as ``post_hook(frame, output)`` when it returns.
        dispatch_mode: a ``TorchDispatchMode`` that sees every aten op of the call (a
            :class:`FastMeta` subclass takes the meta shortcuts itself).

    Raises:
        StandInError: the forward failed; its ``kind`` and ``frame`` say what and where.
    """
    state = stand_ins(model, inputs) if state is None else state
    named = list(model.named_modules())  # each module once, as modules() yields them
    names = {id(m): n for n, m in named}
    stack: list[Frame] = []

    def pre(module: nn.Module, args: tuple) -> None:
        stack.append(Frame(names.get(id(module), type(module).__name__), module, args))
        if pre_hook is not None:
            pre_hook(stack[-1], stack)

    def post(module: nn.Module, args: tuple, output) -> None:
        if isinstance(output, torch.Tensor) and output.numel() == 0:
            raise EmptyOutput(f"gives output {tuple(output.shape)} (size below 1)")
        if post_hook is not None:
            post_hook(stack[-1], output)
        stack.pop()

    flags = {m: m.training for _, m in named}
    handles = []
    try:
        for _, m in named:
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
        if any(flag != training for flag in flags.values()):
            model.train(training)
        mode = dispatch_mode if isinstance(dispatch_mode, FastMeta) else FastMeta()
        with mode:
            if dispatch_mode is None or dispatch_mode is mode:
                return torch.func.functional_call(model, state, (inputs,), strict=False)
            with dispatch_mode:
                return torch.func.functional_call(model, state, (inputs,), strict=False)
    except EmptyOutput as err:
        raise StandInError("small", stack[-1] if stack else None, str(err), err) from None
    except (RuntimeError, ValueError) as err:
        text = str(err).split("\n")[0]
        raise StandInError(classify(text), stack[-1] if stack else None, text, err) from err
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            if m.training != flag:
                m.training = flag
