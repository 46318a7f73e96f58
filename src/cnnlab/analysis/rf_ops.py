"""The receptive-field rule of each aten operation (see :mod:`cnnlab.analysis.receptive_field`).

``propagate`` gives an operation's output field from its inputs' fields through one table,
:data:`RULES`, keyed by aten op name: sliding windows (convolution, transposed convolution,
pooling, adaptive pooling) apply the recurrence; views, permutes and flattens move the
per-dimension fields around; matrix products and reductions see the contracted or reduced
dimensions whole. An op not in the table that broadcasts like an element-wise op merges its
inputs' fields; any other gets a conservative bound and is reported as such.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from cnnlab.analysis.receptive_field import (
    Axis,
    Dim,
    Field,
    merge_axes,
    merge_collapsed,
    plain_dim,
    whole_axes,
)


def _elementwise(out_shape, fields: list[tuple[torch.Size, Field]]) -> Field:
    """Broadcasting ops: dims right-aligned; equal-length dims merge, broadcast ones collapse."""
    nd = len(out_shape)
    dims: list[list[Dim]] = [[] for _ in range(nd)]
    collapsed: list[Axis] = []
    for shape, f in fields:
        collapsed += f.collapsed
        off = nd - len(shape)
        for i, dim in enumerate(f.dims):
            if off + i < 0 or shape[i] != out_shape[off + i]:  # broadcast: seen whole
                collapsed += whole_axes([dim])
            else:
                dims[off + i].append(dim)
    out: list[Dim] = []
    for n, cands in zip(out_shape, dims, strict=True):
        with_axes = [d for d in cands if any(a is not None for _, a in d)]
        if not with_axes:
            out.append(plain_dim(n))
        elif len({tuple(m for m, _ in d) for d in with_axes}) == 1:
            comps = []
            for j, (m, _) in enumerate(with_axes[0]):
                axes = [d[j][1] for d in with_axes if d[j][1] is not None]
                comps.append((m, merge_axes(axes) if axes else None))
            out.append(tuple(comps))
        else:  # differently composed dimensions meet: keep the union, collapsed
            collapsed += whole_axes(with_axes)
            out.append(plain_dim(n))
    return Field(tuple(out), merge_collapsed(collapsed))


def _reshape(f: Field, out_shape) -> Field:
    """view/reshape: regroup the components of the input dims into the output dims."""
    comps = [c for d in f.dims for c in d]
    collapsed = list(f.collapsed)
    out: list[Dim] = []
    k = 0
    for n in out_shape:
        taken: list[tuple[int, Axis | None]] = []
        prod = 1
        while k < len(comps) and (prod < n or (n == 1 and not taken and comps[k][0] == 1)):
            taken.append(comps[k])
            prod *= comps[k][0]
            k += 1
        while n != 1 and k < len(comps) and comps[k][0] == 1 and prod == n:  # trailing 1s
            taken.append(comps[k])
            k += 1
        if prod != n:  # a component split across dims: its axis is seen whole
            collapsed += [a.whole(m) for m, a in taken if a is not None]
            taken = [(n, None)]
        out.append(tuple(taken) or plain_dim(n))
    collapsed += [a for _, a in comps[k:] if a is not None]
    return Field(tuple(out), merge_collapsed(collapsed))


def _window_op(f: Field, kernel, stride, padding, dilation, out_shape) -> Field:
    """Sliding windows over the last len(kernel) dims (convolution, pooling)."""
    n = len(kernel)
    dims = list(f.dims[:-n])
    for i in range(n):
        dim = f.dims[-n + i]
        axis = dim[0][1] if len(dim) == 1 else None
        dims.append(plain_dim(out_shape[-n + i], axis and axis.window(
            kernel[i], stride[i], padding[i], dilation[i])))
    return Field(tuple(dims), f.collapsed)


def _expand(v, n, default=None):
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    if not v:
        v = list(default)
    return v * n if len(v) == 1 else v


def _conv(args, kwargs, shape, get) -> tuple[Field, bool] | None:
    """convolution(x, w, bias, stride, padding, dilation, transposed, ...): a sliding window."""
    f0 = get(args[0])
    if f0 is None:
        return None
    w = args[1]
    stride, padding, dilation, transposed = args[3], args[4], args[5], args[6]
    n = w.dim() - 2
    k = list(w.shape[2:])
    s, p, d = _expand(stride, n), _expand(padding, n), _expand(dilation, n)
    if transposed:  # fractional stride 1/s: unit o reads inputs i = (o + p - t d)/s, t < k
        p = [(d[i] * (k[i] - 1) - p[i]) / s[i] for i in range(n)]
        k = [1 + d[i] * (k[i] - 1) / s[i] for i in range(n)]
        s, d = [1 / v for v in s], [1] * n
    return _window_op(f0, k, s, p, d, shape), True


def _pool(max_pool: bool):
    """max/avg_pool(x, kernel, stride=kernel, padding=0[, dilation=1]): a sliding window."""
    def rule(args, kwargs, shape, get) -> tuple[Field, bool] | None:
        f0 = get(args[0])
        if f0 is None:
            return None
        n = len(shape) - 2 if len(shape) > 2 else 1
        ks = _expand(args[1], n)
        st = _expand(args[2] if len(args) > 2 else [], n, ks)
        pad = _expand(args[3] if len(args) > 3 else 0, n)
        dil = _expand(args[4] if max_pool and len(args) > 4 else 1, n)
        return _window_op(f0, ks, st, pad, dil, shape), True
    return rule


def _adaptive_pool(args, kwargs, shape, get) -> tuple[Field, bool] | None:
    """Adaptive pooling of i units to m: window o spans floor(o i/m)..ceil((o+1) i/m); the widest
    window and the mean stride i/m describe it, exactly when m divides i."""
    f0 = get(args[0])
    if f0 is None:
        return None
    n = len(args[1])
    ins = args[0].shape[-n:]
    ks = [max(math.ceil((o + 1) * i / m) - math.floor(o * i / m) for o in range(m))
          for i, m in zip(ins, shape[-n:], strict=True)]
    st = [i / m for i, m in zip(ins, shape[-n:], strict=True)]
    return _window_op(f0, ks, st, [0] * n, [1] * n, shape), all(
        i % m == 0 for i, m in zip(ins, shape[-n:], strict=True))


def propagate(func, args, kwargs, out, get, tensors=None, memo=None) -> tuple[Field | None, bool]:
    """The field of the (first) output of ``func`` given its inputs' fields (``get(tensor)``).

    ``tensors``: the input tensors when the caller has them already (default: found in ``args``
    and ``kwargs``, one level deep). ``memo``: a dict the caller keeps for one trace, in which
    the element-wise rule of a single same-shape input (a norm, an activation) is remembered per
    field (the rule is idempotent, so a chain conv -> norm -> relu computes it once).
    Returns (field, exact): ``exact`` is False when no rule knows
    the op and every input axis is conservatively collapsed (each output unit assumed to see its
    inputs' whole extent).
    """
    if tensors is None:
        tensors = [a for a in _flat(args, kwargs) if isinstance(a, torch.Tensor)]
    fielded = [(t.shape, f) for t in tensors if (f := get(t)) is not None]
    if not fielded:
        return None, True
    out0 = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(out0, torch.Tensor):
        return None, True
    shape = out0.shape
    rule = RULES.get(func.overloadpacket.__name__)
    found = rule(args, kwargs, shape, get) if rule is not None else None
    if found is not None:
        return found
    if memo is not None and len(fielded) == 1 and fielded[0][0] == shape:
        key = (id(fielded[0][1]), tuple(shape))
        if key not in memo:
            f = fielded[0][1]
            result = f if _settled(f, shape) else _elementwise(shape, fielded)
            memo[key] = (fielded[0][1], result)  # the field is kept: its id stays its own
            memo[(id(result), tuple(shape))] = (result, result)
        return memo[key][1], True
    if all(_broadcastable(s_, shape) for s_, _ in fielded):
        return _elementwise(shape, fielded), True
    collapsed = [a for s_, f in fielded for a in whole_axes(f.dims) + list(f.collapsed)]
    return Field(tuple(plain_dim(n) for n in shape), merge_collapsed(collapsed)), False


def _settled(f: Field, shape) -> bool:
    """Whether the element-wise rule of ``f`` alone on ``shape`` gives ``f`` back: one component
    per dim, of the dim's length, axis-less or with an axis; collapsed axes already one per input
    axis, in order (what :func:`merge_collapsed` returns). The rule is then skipped, not run."""
    if len(f.dims) != len(shape):
        return False
    for d, n in zip(f.dims, shape, strict=True):
        if len(d) != 1 or d[0][0] != n:
            return False
    c = f.collapsed
    return all(c[i].axis < c[i + 1].axis for i in range(len(c) - 1))


def _flat(args, kwargs):
    for a in list(args) + list((kwargs or {}).values()):
        if isinstance(a, (list, tuple)):
            yield from a
        else:
            yield a


def _broadcastable(shape, out_shape) -> bool:
    if len(shape) > len(out_shape):
        return False
    return all(a in (1, b) for a, b in zip(reversed(shape), reversed(out_shape), strict=False))


def _matmul(a, b, shape, get) -> tuple[Field, bool]:
    """(.., n, k) @ (.., k, m): rows from a, columns from b; the contracted k is seen whole."""
    fa, fb = get(a), get(b)
    dims: list[Dim] = [plain_dim(n) for n in shape]
    collapsed: list[Axis] = []
    if fa is not None:
        dims[:-1] = list(fa.dims[:-1])
        collapsed += whole_axes([fa.dims[-1]]) + list(fa.collapsed)
    if fb is not None:
        dims[-1] = fb.dims[-1]
        collapsed += whole_axes(fb.dims[:-1]) + list(fb.collapsed)
    return Field(tuple(dims), merge_collapsed(collapsed)), True


def _cat(args, kwargs, shape, get) -> tuple[Field, bool]:
    tensors, dim = args[0], (args[1] if len(args) > 1 else (kwargs or {}).get("dim", 0))
    dim %= len(shape)
    parts = [(tuple(shape[:dim]) + (t.shape[dim],) + tuple(shape[dim + 1:]), get(t))
             for t in tensors if get(t) is not None and t.dim() == len(shape)]
    merged = _elementwise(tuple(shape[:dim]) + (1,) + tuple(shape[dim + 1:]),
                          [(s[:dim] + (1,) + s[dim + 1:], _with_dim(f, dim, plain_dim(1)))
                           for s, f in parts])
    cat_axes = [a.whole(n) for _, f in parts for n, a in f.dims[dim] if a is not None]
    return Field(merged.dims[:dim] + (plain_dim(shape[dim]),) + merged.dims[dim + 1:],
                 merge_collapsed(list(merged.collapsed) + cat_axes)), True


def _with_dim(f: Field, i: int, dim: Dim) -> Field:
    return Field(f.dims[:i] + (dim,) + f.dims[i + 1:], f.collapsed)


def _permute(f, args, shape):
    return Field(tuple(f.dims[i] for i in args[1]), f.collapsed)


def _transpose(f, args, shape):
    nd = len(f.dims)
    i, j = (args[1] % nd, args[2] % nd) if len(args) > 2 else (0, 1)
    dims = list(f.dims)
    dims[i], dims[j] = dims[j], dims[i]
    return Field(tuple(dims), f.collapsed)


def _reduce(f, args, shape):
    """mean/sum/amax over dims: the reduced dims are seen whole (global pooling)."""
    nd = len(f.dims)
    red = args[1] if len(args) > 1 and args[1] is not None else list(range(nd))
    red = {r % nd for r in ([red] if isinstance(red, int) else red)} or set(range(nd))
    keep = len(shape) == nd
    collapsed = list(f.collapsed) + whole_axes([f.dims[i] for i in red])
    dims = [(plain_dim(1) if i in red else d) for i, d in enumerate(f.dims) if keep or i not in red]
    return Field(tuple(dims), merge_collapsed(collapsed))


def _slice(f, args, shape):
    dim = args[1] % len(f.dims) if len(args) > 1 else 0
    begin = args[2] if len(args) > 2 and args[2] is not None else 0
    step = args[4] if len(args) > 4 else 1
    (n, a), = f.dims[dim] if len(f.dims[dim]) == 1 else ((0, None),)
    begin = begin + n if begin < 0 else begin
    axis = a and replace(a, start=a.start + begin * a.jump, jump=a.jump * step)
    return _with_dim(f, dim, plain_dim(shape[dim], axis))


def _select(f, args, shape):
    dim, index = args[1] % len(f.dims), args[2]
    axes = [replace(a, start=a.start + index * a.jump) for _, a in f.dims[dim] if a is not None]
    return Field(f.dims[:dim] + f.dims[dim + 1:], merge_collapsed(list(f.collapsed) + axes))


def _pad(f, args, shape):
    """constant/reflection/replication padding: (left, right) pairs from the last dim back."""
    pad = list(args[1])
    dims = list(f.dims)
    for i in range(len(pad) // 2):
        d = len(dims) - 1 - i
        a = dims[d][0][1] if len(dims[d]) == 1 else None
        dims[d] = plain_dim(shape[d], a and replace(a, start=a.start - pad[2 * i] * a.jump))
    return Field(tuple(dims), f.collapsed)


def _upsample(f, args, shape, linear: bool = False):
    """Nearest/linear upsampling by out/in: jump j in/out; linear reads one more input unit."""
    n = len(shape) - 2
    dims = list(f.dims[:2])
    for i in range(n):
        dim, length = f.dims[2 + i], args[0].shape[2 + i]
        a = dim[0][1] if len(dim) == 1 else None
        if a is not None:
            extra = a.jump if linear else 0
            a = replace(a, jump=a.jump * length / shape[2 + i], size=a.size + extra)
        dims.append(plain_dim(shape[2 + i], a))
    return Field(tuple(dims), f.collapsed)


def _view(f, args, shape):
    return _reshape(f, shape)


def _on_first(rule):
    """A rule of the first input's field alone: ``rule(field, args, shape) -> Field``."""
    def wrapped(args, kwargs, shape, get) -> tuple[Field, bool] | None:
        f0 = get(args[0]) if isinstance(args[0], torch.Tensor) else None
        return None if f0 is None else (rule(f0, args, shape), True)
    return wrapped


# The one table: aten op name -> rule(args, kwargs, out_shape, get) -> (field, exact), or None when
# the rule does not apply (the op is then treated as element-wise, or as unknown).
RULES = {
    "convolution": _conv,
    "mm": lambda args, kw, shape, get: _matmul(args[0], args[1], shape, get),
    "bmm": lambda args, kw, shape, get: _matmul(args[0], args[1], shape, get),
    "addmm": lambda args, kw, shape, get: _matmul(args[1], args[2], shape, get),
    "baddbmm": lambda args, kw, shape, get: _matmul(args[1], args[2], shape, get),
    "cat": _cat,
}
for _d in (1, 2, 3):
    RULES.update({f"max_pool{_d}d": _pool(True), f"max_pool{_d}d_with_indices": _pool(True),
                  f"avg_pool{_d}d": _pool(False), f"adaptive_avg_pool{_d}d": _adaptive_pool,
                  f"_adaptive_avg_pool{_d}d": _adaptive_pool,
                  f"adaptive_max_pool{_d}d": _adaptive_pool})
for _names, _rule in (
        (("view", "_unsafe_view", "reshape", "unsqueeze", "squeeze", "flatten", "unflatten",
          "alias"), _view),
        (("permute",), _permute), (("transpose", "t"), _transpose),
        (("mean", "sum", "amax", "amin", "var", "std", "logsumexp", "max", "min"), _reduce),
        (("slice",), _slice), (("select",), _select),
        (("constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "replication_pad2d"), _pad),
        (("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d"), _upsample),
        (("upsample_linear1d", "upsample_bilinear2d", "upsample_bicubic2d"),
         lambda f, args, shape: _upsample(f, args, shape, linear=True))):
    for _name in _names:
        RULES[_name] = _on_first(_rule)
