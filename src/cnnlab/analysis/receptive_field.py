"""Receptive fields followed through the real graph, one aten operation at a time.

Every tensor that descends from the input carries, for each of its dimensions, which input spatial
axis (if any) that dimension indexes and the field of one unit along it: ``size`` r, ``jump`` j
(the input distance between neighbouring units) and ``start`` (the input coordinate of the first
pixel of unit 0's field; unit i covers ``[start + i*j, start + i*j + r - 1]``, padding included).

A sliding window with kernel k, stride s, padding p and dilation d applies the recurrence of
Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural Networks" (Distill 2019)::

    r <- r + (d(k-1)) j,    start <- start - p j,    j <- j s

Where paths merge (``add``, ``cat``, any element-wise op of two fielded tensors) the field of a unit
is the union of the paths' fields; when the paths agree on jump and centre (aligned) that union is
the largest of them, Araujo et al.'s rule. When they disagree the union is kept and the axis is
marked ``aligned=False``. Dimensions reduced away (global pooling, flatten + linear) become
"collapsed" axes: each output unit then sees their whole extent. Normalisation statistics are
ignored, as in the standard convention (they act per unit in eval mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Axis:
    """The field of one unit along input spatial axis ``axis`` (0 = H, 1 = W, ...)."""

    axis: int
    size: float
    jump: float
    start: float
    aligned: bool = True

    def window(self, kernel: float, stride: float, padding: float, dilation: float = 1) -> Axis:
        """r + d(k-1) j, start - p j, j s (the recurrence above)."""
        return Axis(self.axis, self.size + dilation * (kernel - 1) * self.jump,
                    self.jump * stride, self.start - padding * self.jump, self.aligned)

    def whole(self, length: int) -> Axis:
        """The field of a unit that sees all ``length`` units along this axis (global pooling)."""
        return self.window(length, length, 0)


def merge_axes(axes: list[Axis]) -> Axis:
    """Union of the fields of merging paths; ``aligned`` unless jumps or centres disagree."""
    first = axes[0]
    if len(axes) == 1:
        return first
    start = min(a.start for a in axes)
    end = max(a.start + a.size for a in axes)
    centres = {a.start + (a.size - 1) / 2 for a in axes}
    jumps = {a.jump for a in axes}
    aligned = all(a.aligned for a in axes) and len(centres) == 1 and len(jumps) == 1
    jump = max(axes, key=lambda a: a.size).jump
    return Axis(first.axis, end - start, jump, start, aligned)


# One tensor dimension: the components it is made of, (length, Axis or None); a plain spatial
# dimension is one component, a flattened (B*H*W) dimension several.
Dim = tuple[tuple[int, Axis | None], ...]


@dataclass(frozen=True)
class Field:
    dims: tuple[Dim, ...]  # one per tensor dimension
    collapsed: tuple[Axis, ...] = ()  # axes reduced away: every unit sees their whole extent

    def axes(self) -> list[Axis]:
        return [a for d in self.dims for _, a in d if a is not None] + list(self.collapsed)


def plain_dim(length: int, axis: Axis | None = None) -> Dim:
    """A tensor dimension of one component: ``length`` units along ``axis`` (None: no input axis)."""
    return ((length, axis),)


def whole_axes(dims) -> list[Axis]:
    """The axes of ``dims`` as seen by a unit that reads all of them (the dims are reduced)."""
    out = []
    for dim in dims:
        out += [a.whole(n) for n, a in dim if a is not None]
    return out


def merge_collapsed(axes: list[Axis]) -> tuple[Axis, ...]:
    """Collapsed axes merged per input axis (:func:`merge_axes`), in axis order."""
    by_axis: dict[int, list[Axis]] = {}
    for a in axes:
        by_axis.setdefault(a.axis, []).append(a)
    return tuple(merge_axes(v) for _, v in sorted(by_axis.items()))


def input_field(shape: torch.Size) -> Field:
    """The input (B, C, *spatial): every spatial pixel is its own field (r=1, j=1, start=0)."""
    dims = [plain_dim(shape[0]), plain_dim(shape[1])]
    dims += [plain_dim(n, Axis(i, 1, 1, 0)) for i, n in enumerate(shape[2:])]
    return Field(tuple(dims))


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one output unit, per input spatial axis (H, W, ...).

    ``size``, ``jump`` and ``start`` are numbers when all axes agree (the usual square case) and
    tuples otherwise; ``sizes``/``jumps``/``starts`` are always tuples. Unit (i, j) sees the input
    rows ``start + i*jump`` to ``start + i*jump + size - 1`` (negative: padding). ``aligned`` is
    False when merging paths disagreed on jump or centre; ``exact`` is False when an op without a
    rule was crossed (the field is then a conservative bound).
    """

    sizes: tuple
    jumps: tuple
    starts: tuple
    aligned: bool = True
    exact: bool = True

    @staticmethod
    def _one(values: tuple):
        values = tuple(int(v) if float(v).is_integer() else float(v) for v in values)
        return values[0] if len(set(values)) == 1 else values

    @property
    def size(self):
        return self._one(self.sizes)

    @property
    def jump(self):
        return self._one(self.jumps)

    @property
    def start(self):
        return self._one(self.starts)

    def __str__(self) -> str:
        flag = "" if self.aligned else " (unaligned)"
        return f"{self.size} / {self.jump} / {self.start}{flag}"


def receptive_field(field: Field | None, n_axes: int, exact: bool = True) -> ReceptiveField | None:
    """The public view of a tensor's field: plain and collapsed axes merged per input axis."""
    if field is None:
        return None
    per_axis: dict[int, list[Axis]] = {}
    for dim in field.dims:
        if len(dim) == 1 and dim[0][1] is not None:
            per_axis.setdefault(dim[0][1].axis, []).append(dim[0][1])
    for dim in field.dims:  # a flattened (B*H*W) dim: each unit is one pixel of the grid
        for _, a in dim if len(dim) > 1 else ():
            if a is not None:
                per_axis.setdefault(a.axis, []).append(a)
    for a in field.collapsed:
        per_axis.setdefault(a.axis, []).append(a)
    if sorted(per_axis) != list(range(n_axes)):
        return None
    axes = [merge_axes(per_axis[i]) for i in range(n_axes)]
    return ReceptiveField(tuple(a.size for a in axes), tuple(a.jump for a in axes),
                          tuple(a.start for a in axes), all(a.aligned for a in axes), exact)
