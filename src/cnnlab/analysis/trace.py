"""The one shared trace every analysis reads: a single forward pass, watched at three levels.

* Module hooks (pre/post forward, added for the call and removed after) give the module stack,
  so each operation is attributed to every module call it happens inside.
* A ``TorchDispatchMode`` sees each aten operation once per call, whatever Python issued it
  (``F.conv2d``, ``torch.matmul``, a residual ``+``, a shared module called twice). It counts the
  operation's cost (:mod:`cnnlab.analysis.macs`) and follows receptive fields from tensor to tensor
  (:mod:`cnnlab.analysis.receptive_field`).
* ``torch.autograd.graph.saved_tensors_hooks`` sees every tensor autograd keeps for the backward
  pass; each storage is counted once (views and tensors saved twice share it), parameters and
  buffers are not activations and are left out.

On the meta device (the default) the pass allocates nothing and does no arithmetic: shapes,
strides and storages are still real, so every count above is exact. The model is never modified:
:func:`cnnlab.stateless.run_stateless` runs it on meta (or device) stand-ins of its parameters and
buffers, removes the hooks and restores the train/eval flags.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakTensorKeyDictionary

from cnnlab.analysis.macs import op_cost
from cnnlab.analysis.receptive_field import Field, input_field
from cnnlab.analysis.rf_ops import propagate
from cnnlab.stateless import Frame, run_stateless, stand_ins


@dataclass
class Call:
    """One call of one module, with everything that happened inside it (inclusive)."""

    name: str
    type: str
    depth: int
    module: nn.Module
    output_shape: tuple[int, ...] | None = None
    macs: int = 0
    self_macs: int = 0  # work of this module's own forward, outside its children
    ops: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # other work by category
    saved_bytes: int = 0
    self_saved_bytes: int = 0  # saved while this call was the innermost one
    field: Field | None = None
    field_exact: bool = True


@dataclass
class Trace:
    calls: list[Call]  # in call (pre-hook) order, the root first
    split: dict[str, dict[str, int]]  # {"macs"|"saved_bytes"|"params": {"conv"|"fc"|...: n}}
    uncounted: dict[str, int]  # op name -> number of calls that compute without a formula
    inexact_rf_ops: dict[str, int]  # op name -> calls crossed without a receptive-field rule
    largest_output_bytes: int  # the biggest tensor one op produced (for the peak estimate)
    n_axes: int


def _part(call: Call) -> str:
    """'conv' for a call whose output is a feature map (a dim still indexes an input axis)."""
    f = call.field
    spatial = f is not None and any(len(d) == 1 and d[0][1] is not None for d in f.dims)
    return "conv" if spatial else "fc"


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


class _Tracer(TorchDispatchMode):
    def __init__(self, stack: list[Call], param_names: dict[int, str]) -> None:
        super().__init__()
        self.stack = stack
        self.fields = WeakTensorKeyDictionary()
        self.exact = WeakTensorKeyDictionary()
        self.param_names = param_names
        self.param_call: dict[str, Call | None] = {}  # parameter -> innermost call first using it
        self.uncounted: dict[str, int] = defaultdict(int)
        self.inexact: dict[str, int] = defaultdict(int)
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)  # meta shortcuts: cnnlab.stateless.FastMeta, outside this mode
        macs, other, uncounted = op_cost(func, args, kwargs, out)
        field_, exact = propagate(func, args, kwargs, out, self.fields.get)
        flat_in = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        exact = exact and all(self.exact.get(a, True) for a in flat_in)
        outs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        if field_ is not None:
            for o in outs:
                if o.shape == outs[0].shape:
                    self.fields[o] = field_
                    self.exact[o] = exact
            if not exact and all(self.exact.get(a, True) for a in flat_in):
                self.inexact[func.overloadpacket.__name__] += 1  # where the bound first entered
        if outs:
            self.largest = max(self.largest, sum(o.untyped_storage().nbytes() for o in outs))
        for a in flat_in:
            name = self.param_names.get(_storage_key(a))
            if name is not None and name not in self.param_call:
                self.param_call[name] = self.stack[-1] if self.stack else None
        if uncounted is not None:
            self.uncounted[uncounted] += 1
        for call in self.stack:
            call.macs += macs
            for k, v in other.items():
                call.ops[k] += v
        if self.stack:
            self.stack[-1].self_macs += macs
        return out


def run_trace(model: nn.Module, inputs: torch.Tensor, train: bool) -> Trace:
    """Run ``model(inputs)`` once under the tracer; ``inputs`` already on the target device.

    Raises :class:`~cnnlab.stateless.StandInError` when the forward fails (kind and layer).
    """
    params = dict(model.named_parameters(remove_duplicate=False))
    state = stand_ins(model, inputs)
    param_names = {_storage_key(state[n]): n for n in reversed(list(params))}
    model_state = {_storage_key(t) for t in state.values()}
    calls: list[Call] = []
    stack: list[Call] = []
    tracer = _Tracer(stack, param_names)
    seen_storages: set[int] = set()

    def pre_hook(frame: Frame, frames: list[Frame]) -> None:
        call = Call(frame.name, type(frame.module).__name__,
                    len(frames) - 1, frame.module)
        calls.append(call)
        stack.append(call)

    def post_hook(frame: Frame, output) -> None:
        call = stack.pop()
        tensors = [t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)]
        if tensors:
            call.output_shape = tuple(tensors[0].shape)
            call.field = tracer.fields.get(tensors[0])
            call.field_exact = tracer.exact.get(tensors[0], True)

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in model_state and key not in seen_storages:
            seen_storages.add(key)
            nbytes = t.untyped_storage().nbytes()
            for call in stack:
                call.saved_bytes += nbytes
            if stack:
                stack[-1].self_saved_bytes += nbytes
        return t

    inputs.requires_grad_(False)
    tracer.fields[inputs] = input_field(inputs.shape)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run_stateless(model, inputs, train, state=state, pre_hook=pre_hook, post_hook=post_hook,
                      dispatch_mode=tracer)
    split: dict[str, dict[str, int]] = {k: defaultdict(int) for k in ("params", "macs",
                                                                        "saved_bytes")}
    for call in calls:  # a call is "conv" when its output is a feature map, else "fc"
        part = _part(call)
        split["macs"][part] += call.self_macs
        split["saved_bytes"][part] += call.self_saved_bytes
    counted: set[int] = set()
    for n, p in params.items():
        if id(p) not in counted:
            counted.add(id(p))
            call = tracer.param_call.get(n)
            split["params"][_part(call) if call is not None else "other"] += p.numel()
    split = {k: dict(v) for k, v in split.items()}
    return Trace(calls, split, dict(tracer.uncounted), dict(tracer.inexact), tracer.largest,
                 inputs.dim() - 2)
