"""``cnnlab.summary``: shapes, parameters, multiply-adds, memory and receptive fields per layer.

All figures come from one forward pass (:mod:`cnnlab.analysis.trace`), by default on the meta
device. Each row is one module *call*, its figures inclusive of everything run inside it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from cnnlab.analysis.memory import MemoryReport, memory_report
from cnnlab.analysis.receptive_field import ReceptiveField, receptive_field
from cnnlab.analysis.trace import run_trace
from cnnlab.errors import ConfigError, ShapeError
from cnnlab.stateless import StandInError

OP_KINDS = ("bias", "norm", "pool", "elementwise")


@dataclass(frozen=True)
class LayerRow:
    """One module call. ``macs`` are multiply-adds (no bias); ``flops`` = 2 x ``macs``."""

    name: str  # the module's path, as in named_modules() ("" for the model itself)
    type: str  # class name
    depth: int  # nesting in the call tree: 1 for the model's direct children
    output_shape: tuple[int, ...] | None  # of the first tensor output
    params: int  # parameters of the module and its children (each tensor once)
    trainable_params: int  # of which requires_grad
    macs: int  # multiply-adds of convs / matmuls / linear inside this call
    self_macs: int  # of which issued by this module's own forward, outside its children
    ops: dict = field(default_factory=dict)  # other work: bias / norm / pool / elementwise
    saved_bytes: int = 0  # activations saved for backward during this call (each storage once)
    receptive_field: ReceptiveField | None = None  # of the output; None without spatial dims

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def frozen_params(self) -> int:
        return self.params - self.trainable_params


@dataclass
class Summary:
    """Everything ``summary`` found; ``str()`` is the table, ``to_dict``/``to_csv`` export it."""

    model_name: str
    input_shape: tuple[int, ...]  # (B, C, *spatial)
    all_rows: list[LayerRow]  # every module call, in call order
    depth: int | None
    total_params: int  # each parameter tensor once, used or not
    trainable_params: int
    total_macs: int
    ops: dict[str, int]  # totals of the other work by kind
    saved_bytes: int
    memory: MemoryReport
    split: dict[str, dict[str, int]]  # "params"/"macs"/"saved_bytes" -> {"conv", "fc", "other"}
    uncounted: dict[str, int]  # op -> calls that compute but have no formula
    inexact_rf_ops: dict[str, int]  # op -> calls crossed without a receptive-field rule
    device: str
    mode: str  # "eval" or "train"

    @property
    def rows(self) -> list[LayerRow]:
        """Module calls down to ``depth`` (all when ``depth`` is None)."""
        return [r for r in self.all_rows if self.depth is None or r.depth <= self.depth]

    @property
    def frozen_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def total_flops(self) -> int:
        return 2 * self.total_macs

    def split_percent(self) -> dict[str, dict[str, float]]:
        """Share (%) of parameters, MACs and saved activations in conv vs fully connected parts.

        "conv" is every operation whose output is a feature map (it still has input spatial axes),
        "fc" every operation on vectors (after flatten or global pooling); a parameter belongs to
        the part of the first operation that reads it.
        """
        out = {}
        for key, parts in self.split.items():
            total = sum(parts.values()) or 1
            out[key] = {p: 100.0 * parts.get(p, 0) / total for p in ("conv", "fc", "other")}
        return out

    def to_dict(self) -> dict:
        rows = []
        for r in self.rows:
            rf = r.receptive_field
            rows.append(dict(
                name=r.name, type=r.type, depth=r.depth, output_shape=r.output_shape,
                params=r.params, trainable_params=r.trainable_params, macs=r.macs, flops=r.flops,
                **{f"{k}_ops": r.ops.get(k, 0) for k in OP_KINDS}, saved_bytes=r.saved_bytes,
                rf_size=rf and rf.size, rf_jump=rf and rf.jump, rf_start=rf and rf.start,
                rf_aligned=rf and rf.aligned, rf_exact=rf and rf.exact))
        return dict(model=self.model_name, input_shape=self.input_shape, device=self.device,
                    mode=self.mode, total_params=self.total_params,
                    trainable_params=self.trainable_params, total_macs=self.total_macs,
                    total_flops=self.total_flops, ops=self.ops, saved_bytes=self.saved_bytes,
                    memory=self.memory.to_dict(), split=self.split,
                    split_percent=self.split_percent(), uncounted=self.uncounted,
                    inexact_rf_ops=self.inexact_rf_ops, rows=rows)

    def to_csv(self) -> str:
        rows = self.to_dict()["rows"]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["name"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("x".join(map(str, v)) if isinstance(v, tuple) else v)
                             for k, v in row.items()})
        return buf.getvalue()

    def __str__(self) -> str:
        from cnnlab.analysis.format import format_summary

        return format_summary(self)


def _input_shape(input_size, batch_size: int) -> tuple[int, ...]:
    if isinstance(input_size, int):
        raise ConfigError(f"input_size must be (C, H, W) or (C, L), got the int {input_size}; "
                          "e.g. input_size=(3, 224, 224)")
    shape = tuple(int(v) for v in input_size)
    if len(shape) < 2 or any(v < 1 for v in shape):
        raise ConfigError(f"input_size must be (C, H, W) or (C, L) of positive sizes, got {shape}")
    return (batch_size, *shape)


def summary(model: nn.Module, input_size: Sequence[int], depth: int | None = None, *,
            batch_size: int = 1, device: str | torch.device | None = None, train: bool = False,
            optimizer: str = "sgd_momentum", dtype: torch.dtype = torch.float32) -> Summary:
    """Summarize ``model`` on an input of ``input_size`` = (C, H, W) (no batch dimension).

    Args:
        model: any ``nn.Module`` taking one tensor; it is not modified.
        input_size: (C, H, W), or (C, L) for 1-D models.
        depth: show module calls down to this nesting depth (None: all). Totals do not change.
        batch_size: the batch of the traced input (activation memory and MACs scale with it).
        device: ``None`` traces on the meta device (no arithmetic, no memory); a device name runs
            the forward for real on copies of the weights there.
        train: trace in training mode (dropout, batch statistics, auxiliary heads) instead of eval.
        optimizer: whose state the memory estimate includes (see ``memory.OPTIMIZER_STATES``).
        dtype: of the input and the stand-in weights.
    """
    shape = _input_shape(input_size, batch_size)
    dev = torch.device(device) if device is not None else torch.device("meta")
    inputs = torch.randn(shape, dtype=dtype, device="cpu").to(dev) if dev.type != "meta" else (
        torch.empty(shape, dtype=dtype, device="meta"))
    try:
        trace = run_trace(model, inputs, train)
    except StandInError as err:
        if err.kind == "other":
            raise err.error from None
        raise ShapeError(f"{type(model).__name__} cannot take an input of {shape}: "
                         f"{err.where()}: {err.text}. Try another --input size.") from None
    param_count: dict[int, tuple[int, int]] = {}
    distinct: dict[int, dict[int, nn.Parameter]] = {}

    def params_of(module: nn.Module) -> dict[int, nn.Parameter]:
        """The module's parameters, each tensor once (the set ``module.parameters()`` yields),
        built bottom-up once per module instead of walking every subtree for every row (its own
        ones read from ``_parameters``, what ``parameters(recurse=False)`` yields, without the
        generator machinery)."""
        if id(module) not in distinct:
            found = {id(p): p for p in module._parameters.values() if p is not None}
            for child in module.children():
                found.update(params_of(child))
            distinct[id(module)] = found
        return distinct[id(module)]

    def count(module: nn.Module) -> tuple[int, int]:
        if id(module) not in param_count:
            ps = list(params_of(module).values())
            param_count[id(module)] = (sum(p.numel() for p in ps),
                                       sum(p.numel() for p in ps if p.requires_grad))
        return param_count[id(module)]

    fields: dict[tuple[int, bool], ReceptiveField | None] = {}  # calls share field objects

    def public_field(call) -> ReceptiveField | None:
        key = (id(call.field), call.field_exact)
        if key not in fields:
            fields[key] = receptive_field(call.field, trace.n_axes, call.field_exact)
        return fields[key]

    rows = []
    for call in trace.calls:
        params, trainable = count(call.module)
        rows.append(LayerRow(call.name, call.type, call.depth, call.output_shape, params,
                             trainable, call.macs, call.self_macs, dict(call.ops),
                             call.saved_bytes, public_field(call)))
    root, rows = rows[0], rows[1:]
    total, trainable = count(model)
    elem = torch.empty((), dtype=dtype).element_size()
    buffers = sum(b.numel() * (elem if b.is_floating_point() else b.element_size())
                  for b in model.buffers())
    memory = memory_report(total * elem + buffers, trainable * elem, root.saved_bytes,
                           trace.largest_output_bytes, optimizer)
    return Summary(type(model).__name__, shape, rows, depth, total, trainable, root.macs,
                   {k: root.ops.get(k, 0) for k in OP_KINDS}, root.saved_bytes, memory,
                   trace.split, trace.uncounted, trace.inexact_rf_ops, str(dev),
                   "train" if train else "eval")
