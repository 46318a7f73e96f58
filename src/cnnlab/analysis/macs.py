"""What one aten operation costs: multiply-adds, and the other work in its own column.

Multiply-adds (MACs) are those of convolution, transposed and grouped convolution, and matrix
products (``mm``, ``addmm``, ``bmm``, ``baddbmm`` — ``nn.Linear`` and ``torch.matmul`` land here),
without bias: the convention of the papers and of torchvision's weight metadata (whose "GFLOPS"
are these MACs). The formulas are ``torch.utils.flop_counter``'s, which count 2 FLOPs per MAC:

* convolution: B * prod(out_spatial) * C_out * C_in/groups * prod(k);
* transposed convolution: B * prod(in_spatial) * C_in * C_out/groups * prod(k), per *input*
  position (each input pixel scatters one k x k kernel);
* (n x k) @ (k x m): n * k * m, times the batch for ``bmm``.

Everything else is counted in elementary operations per category, never folded into MACs:
``bias`` (one add per output of a biased conv/addmm), ``norm`` (one per output of a
normalisation), ``pool`` (one per window element read), ``elementwise`` (one per output of a
pointwise op or per input of a reduction). Ops that compute but have none of these formulas are
returned as ``uncounted`` so the summary can list them.
"""

from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import flop_registry

aten = torch.ops.aten

# Ops that move or view data, or make new tensors, without arithmetic.
FREE_OPS = {
    "view", "_unsafe_view", "reshape", "permute", "transpose", "t", "expand", "unsqueeze",
    "squeeze", "flatten", "unflatten", "slice", "select", "cat", "stack", "clone", "contiguous",
    "_to_copy", "copy_", "detach", "alias", "as_strided", "as_strided_", "empty", "empty_like",
    "zeros", "zeros_like", "ones", "ones_like", "full", "fill_", "zero_", "new_empty", "new_zeros",
    "new_ones", "lift_fresh", "constant_pad_nd", "split", "split_with_sizes", "chunk", "unbind",
    "index_put", "index_put_", "index", "index_select", "gather", "scatter", "narrow", "arange",
    "bernoulli_", "bernoulli", "uniform_", "normal_", "rand", "randn", "rand_like", "_unsafe_index",
    "reflection_pad2d", "replication_pad2d", "reflection_pad1d", "roll", "flip", "repeat",
    "channel_shuffle", "pixel_shuffle", "pixel_unshuffle", "masked_fill", "masked_fill_",
    "lift_fresh_copy", "_reshape_alias", "diagonal", "tril", "triu", "eye", "sym_size",
}
NORM_OPS = {
    "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional", "native_layer_norm", "native_group_norm",
    "_batch_norm_with_update", "_batch_norm_no_update", "batch_norm", "layer_norm", "group_norm",
    "instance_norm", "local_response_norm", "_fused_rms_norm", "rms_norm",
}
REDUCE_OPS = {"mean", "sum", "amax", "amin", "max", "min", "var", "std", "logsumexp", "prod",
              "_softmax", "_log_softmax", "softmax", "log_softmax", "var_mean", "argmax", "argmin"}
MAC_OPS = {"convolution", "_convolution", "mm", "addmm", "bmm", "baddbmm"}


def _numel(x) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0].numel()
    return 0


_KINDS: dict = {}  # aten op -> its kind below, decided once per op (names and tags do not change)


def _kind(func) -> str:
    kind = _KINDS.get(func)
    if kind is None:
        name = func.overloadpacket.__name__
        if name in MAC_OPS and func.overloadpacket in flop_registry:
            kind = "mac"
        elif name in FREE_OPS:
            kind = "free"
        elif name in NORM_OPS:
            kind = "norm"
        elif "pool" in name and "backward" not in name:
            kind = "adaptive_pool" if "adaptive" in name else "pool"
        elif name in REDUCE_OPS:
            kind = "reduce"
        elif torch.Tag.pointwise in func.tags or name.startswith(("upsample", "_upsample")):
            kind = "pointwise"
        else:
            kind = "uncounted"
        _KINDS[func] = kind
    return kind


def op_cost(func, args, kwargs, out) -> tuple[int, dict[str, int], str | None]:
    """(MACs, {category: elementary ops}, name of the op if it computes without a formula)."""
    kind = _kind(func)
    if kind == "mac":
        name = func.overloadpacket.__name__
        formula = flop_registry[func.overloadpacket]
        formula = getattr(formula, "__wrapped__", formula)  # the formula itself, on shapes
        shapes = [a.shape if isinstance(a, torch.Tensor) else a for a in args]
        kw_shapes = {k: _shape(v) for k, v in (kwargs or {}).items()}
        macs = formula(*shapes, out_shape=_shape(out), **kw_shapes) // 2
        bias = args[2] if name in ("convolution", "_convolution") else (
            args[0] if name in ("addmm", "baddbmm") else None)
        other = {"bias": _numel(out)} if isinstance(bias, torch.Tensor) else {}
        return macs, other, None
    if kind == "free" or not isinstance(out, (torch.Tensor, tuple, list)):
        return 0, {}, None
    if kind == "norm":
        return 0, {"norm": _numel(out)}, None
    if kind in ("pool", "adaptive_pool"):
        first = out[0] if isinstance(out, (tuple, list)) else out
        if kind == "adaptive_pool":  # window = input / output size along each pooled axis
            window = args[0].numel() // max(first.numel(), 1)
        else:
            kernel = _as_list(args[1])
            window = math.prod(kernel * (first.dim() - 2) if len(kernel) == 1 else kernel)
        return 0, {"pool": first.numel() * max(window, 1)}, None
    if kind == "reduce":
        return 0, {"elementwise": _numel(args[0])}, None
    if kind == "pointwise":
        return 0, {"elementwise": _numel(out)}, None
    return 0, {}, func.overloadpacket.__name__


def _shape(out):
    """What torch's ``shape_wrapper`` hands a formula as ``out_shape``: shapes for tensors."""
    if isinstance(out, torch.Tensor):
        return out.shape
    if isinstance(out, (tuple, list)):
        return type(out)(_shape(o) for o in out)
    return out


def _as_list(v) -> list[int]:
    return list(v) if isinstance(v, (list, tuple)) else [v]
