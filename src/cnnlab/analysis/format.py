"""The text table of a :class:`~cnnlab.analysis.summary.Summary` (what ``str(summary)`` prints)."""

from __future__ import annotations


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (powers of 1000; bytes in MB = 10^6 bytes)."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f}{suffix}{unit}"
    return f"{n:g}{unit}" if isinstance(n, float) else f"{n}{unit}"


def _shape(shape) -> str:
    return "x".join(map(str, shape)) if shape is not None else "-"


def format_summary(s) -> str:
    header = ("layer", "type", "output", "params", "MACs", "saved", "RF", "jump", "start")
    lines = [header]
    shown: list[str] = []  # names of the displayed ancestors, by depth
    for r in s.rows:
        shown[r.depth - 1:] = [r.name]
        parent = shown[-2] if len(shown) > 1 else ""
        label = r.name[len(parent) + 1:] if parent and r.name.startswith(parent + ".") else r.name
        rf = r.receptive_field
        rf_cells = (str(rf.size) + ("*" if not rf.aligned else "") + ("~" if not rf.exact else ""),
                    str(rf.jump), str(rf.start)) if rf else ("-", "-", "-")
        lines.append(("  " * (r.depth - 1) + (label or r.type), r.type,
                      _shape(r.output_shape), f"{r.params:,}" if r.params else "-",
                      human(r.macs) if r.macs else "-", human(r.saved_bytes, "B") if r.saved_bytes
                      else "-", *rf_cells))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    right = {3, 4, 5, 6, 7, 8}
    text = ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                      for i, (c, w) in enumerate(zip(row, widths, strict=True))) for row in lines]
    rule = "-" * len(text[0])
    text.insert(1, rule)
    m = s.memory
    pct = s.split_percent()
    text += [rule,
             f"{s.model_name} on input {_shape(s.input_shape)} ({s.mode} mode, {s.device})",
             f"params: {s.total_params:,} ({s.trainable_params:,} trainable, "
             f"{s.frozen_params:,} frozen)",
             f"multiply-adds: {s.total_macs:,} ({human(s.total_macs)} MACs = "
             f"{human(s.total_flops)} FLOPs; bias, norm, pool, element-wise not included)",
             "other ops: " + ", ".join(f"{k} {human(v)}" for k, v in s.ops.items()),
             f"saved for backward: {human(s.saved_bytes, 'B')}; training step with "
             f"{m.optimizer}: weights {human(m.params_bytes, 'B')} + grads "
             f"{human(m.grads_bytes, 'B')} + optimizer {human(m.optimizer_bytes, 'B')} "
             f"-> peak ~{human(m.peak_bytes, 'B')}",
             "conv / fc share: " + "; ".join(
                 f"{key} {pct[key]['conv']:.1f}% / {pct[key]['fc']:.1f}%"
                 for key in ("params", "macs", "saved_bytes") if key in pct)]
    if s.uncounted:
        text.append("uncounted ops (no formula): " + ", ".join(
            f"{k} x{v}" for k, v in sorted(s.uncounted.items())))
    if any(r.receptive_field and not r.receptive_field.aligned for r in s.rows):
        text.append("RF*: merging paths disagree on alignment; the union of their fields is shown")
    if s.inexact_rf_ops:
        text.append("RF~: bound past ops without a receptive-field rule: " + ", ".join(
            sorted(s.inexact_rf_ops)))
    return "\n".join(text)
