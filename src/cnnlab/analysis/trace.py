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

from cnnlab.analysis.macs import op_cost
from cnnlab.analysis.receptive_field import Field, input_field
from cnnlab.analysis.rf_ops import propagate
from cnnlab.stateless import FastMeta, Frame, run_stateless, stand_ins


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


def tensors_in(obj) -> list[torch.Tensor]:
    """The tensors in nested tuples, lists and dicts, in order (what ``tree_flatten`` finds, without
    its per-node registry lookups: the trace calls this a few times for every operation)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    found: list[torch.Tensor] = []
    if isinstance(obj, (tuple, list, dict)):
        _collect(obj, found)
    return found


def _collect(obj, found: list[torch.Tensor]) -> None:
    for item in obj.values() if isinstance(obj, dict) else obj:
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, (tuple, list, dict)):
            _collect(item, found)


class _Tracer(FastMeta):
    """Sees every aten op of the forward. A tensor's receptive field rides on the tensor itself
    (an attribute tagged with this tracer, so it dies with the tensor and no other trace reads
    it): cheaper than a weak dictionary, which the trace would consult for every input of every
    op."""

    def __init__(self, stack: list[Call], param_names: dict[int, str]) -> None:
        super().__init__()
        self.stack = stack
        self.param_names = param_names
        self.param_call: dict[str, Call | None] = {}  # parameter -> innermost call first using it
        self.uncounted: dict[str, int] = defaultdict(int)
        self.inexact: dict[str, int] = defaultdict(int)
        self.largest = 0
        self.memo: dict = {}  # for cnnlab.analysis.rf_ops.propagate

    def tag(self, t: torch.Tensor, field_: Field, exact: bool) -> None:
        t._cnnlab_field = (self, field_, exact)

    def field(self, t: torch.Tensor) -> Field | None:
        tag = getattr(t, "_cnnlab_field", None)
        return tag[1] if tag is not None and tag[0] is self else None

    def exact(self, t: torch.Tensor) -> bool:
        tag = getattr(t, "_cnnlab_field", None)
        return tag[2] if tag is not None and tag[0] is self else True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = self.run(func, args, kwargs)  # with the meta shortcuts of cnnlab.stateless.FastMeta
        macs, other, uncounted = op_cost(func, args, kwargs, out)
        flat_in = tensors_in(args)
        if kwargs:
            flat_in += tensors_in(kwargs)
        field_, exact = propagate(func, args, kwargs, out, self.field, flat_in, self.memo)
        exact_in = all(self.exact(a) for a in flat_in)
        outs = tensors_in(out)
        if field_ is not None:
            exact = exact and exact_in
            for o in outs:
                if o.shape == outs[0].shape:
                    self.tag(o, field_, exact)
            if not exact and exact_in:
                self.inexact[func.overloadpacket.__name__] += 1  # where the bound first entered
        if outs:
            self.largest = max(self.largest, sum(o.untyped_storage().nbytes() for o in outs))
        if self.param_names:
            for a in flat_in:
                name = self.param_names.get(_storage_key(a))
                if name is not None and name not in self.param_call:
                    self.param_call[name] = self.stack[-1] if self.stack else None
        if uncounted is not None:
            self.uncounted[uncounted] += 1
        if macs or other:
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
        tensors = tensors_in(output)
        if tensors:
            call.output_shape = tuple(tensors[0].shape)
            call.field = tracer.field(tensors[0])
            call.field_exact = tracer.exact(tensors[0])

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
    tracer.tag(inputs, input_field(inputs.shape), True)
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
