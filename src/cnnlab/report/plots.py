"""Pictures of a summary: cost per layer, a unit's receptive field, the zoo's complexity chart.

Every function draws with matplotlib's Agg backend (no display needed), saves to ``path`` (the
format follows the suffix: png, pdf, svg) and returns the path.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from cnnlab.analysis import Summary  # noqa: E402
from cnnlab.analysis.format import human  # noqa: E402
from cnnlab.errors import ConfigError  # noqa: E402


def save_figure(fig, path: str | Path) -> Path:
    """Save ``fig`` to ``path`` (missing folders created; no suffix: ``.png``), close it and
    return the path really written."""
    path = Path(path)
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _leaf_rows(s: Summary):
    """Module calls with no child call below them that do some counted work."""
    rows = s.all_rows
    leaves = [r for i, r in enumerate(rows)
              if i + 1 == len(rows) or rows[i + 1].depth <= r.depth]
    return [r for r in leaves if r.params or r.macs]


_WORDS = {"": "count", "k": "thousands", "M": "millions", "G": "billions", "T": "trillions"}


def _unit(values) -> tuple[float, str]:
    """The power of 1000 that keeps the largest of ``values`` between 1 and 1000: (factor, prefix)."""
    top = max((abs(v) for v in values), default=0)
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if top >= factor:
            return factor, prefix
    return 1.0, ""


def place_labels(ax, xs, ys, names, fontsize: float = 7, order=None) -> list[str]:
    """Label points without overlaps: each label takes the first of eight places around its
    point that covers no other label and no point, in ``order`` (default: shortest name first,
    so a family's plain member beats its variants); a label with no free place is left out.
    Returns the names labelled."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = []
    for x, y in zip(xs, ys):  # the markers themselves
        px, py = ax.transData.transform((x, y))
        taken.append(matplotlib.transforms.Bbox.from_extents(px - 4, py - 4, px + 4, py + 4))
    places = [(4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
              (-4, -3, "right", "top"), (0, 6, "center", "bottom"), (0, -6, "center", "top"),
              (7, 0, "left", "center"), (-7, 0, "right", "center")]
    order = order or sorted(range(len(names)), key=lambda i: (len(names[i]), names[i]))
    labelled = []
    for i in order:
        for dx, dy, ha, va in places:
            text = ax.annotate(names[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                               ha=ha, va=va, fontsize=fontsize)
            box = text.get_window_extent(renderer)
            inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
                      and box.y1 <= frame.y1)
            if inside and not any(box.overlaps(other) for other in taken):
                taken.append(box.expanded(1.04, 1.15))
                labelled.append(names[i])
                break
            text.remove()
    return labelled


def plot_layer_costs(s: Summary, path: str | Path, title: str | None = None) -> Path:
    """Two bar charts, one bar per layer: parameters and multiply-adds (MACs)."""
    rows = _leaf_rows(s)
    names = [r.name or r.type for r in rows]
    fig, (ax_p, ax_m) = plt.subplots(2, 1, figsize=(max(6.0, 0.22 * len(rows) + 2), 6.5),
                                     sharex=True)
    x = range(len(rows))
    p_factor, p_prefix = _unit([r.params for r in rows])  # axis units by size: k, M, G
    m_factor, m_prefix = _unit([r.macs for r in rows])
    ax_p.bar(x, [r.params / p_factor for r in rows], color="tab:blue")
    ax_p.set_ylabel(f"parameters ({_WORDS[p_prefix]})")
    ax_m.bar(x, [r.macs / m_factor for r in rows], color="tab:orange")
    ax_m.set_ylabel(f"multiply-adds ({_WORDS[m_prefix]})")
    ax_m.set_xticks(list(x), names, rotation=90, fontsize=7)
    ax_p.set_title(title or f"{s.model_name} at {'x'.join(map(str, s.input_shape[1:]))}: "
                   f"{human(s.total_params)} params, {human(s.total_macs)} MACs")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_receptive_field(s: Summary, layer: str, image: torch.Tensor | None, path: str | Path,
                         unit: tuple[int, int] | None = None) -> Path:
    """The input region one unit of ``layer`` sees, drawn on ``image`` (C, H, W) or a blank grid.

    The unit defaults to the centre of the layer's output map; its field spans rows
    ``start + i*jump`` .. ``start + i*jump + size - 1`` (parts outside the image are padding).
    """
    rows = [r for r in s.all_rows if r.name == layer]
    if not rows or rows[0].receptive_field is None or len(rows[0].output_shape or ()) != 4:
        known = [r.name for r in s.all_rows if r.receptive_field is not None
                 and len(r.output_shape or ()) == 4]
        raise ConfigError(f"layer {layer!r} has no 2-D feature map to draw a field for; "
                          f"choose one of: {', '.join(known[-8:])}")
    row = rows[0]
    rf = row.receptive_field
    height, width = s.input_shape[-2:]
    unit = unit or tuple((n - 1) // 2 for n in row.output_shape[-2:])
    top, left = (rf.starts[a] + unit[a] * rf.jumps[a] for a in (0, 1))
    fig, ax = plt.subplots(figsize=(5, 5))
    if image is not None:
        img = image.detach().float().cpu()
        img = (img - img.min()) / (img.max() - img.min() + 1e-12)
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(),
                  cmap="gray" if img.shape[0] == 1 else None)
    else:
        ax.imshow(torch.zeros(height, width).numpy(), cmap="gray", vmin=-1, vmax=1)
    ax.add_patch(Rectangle((left - 0.5, top - 0.5), rf.sizes[1], rf.sizes[0], fill=True,
                           alpha=0.25, color="tab:red"))
    ax.add_patch(Rectangle((left - 0.5, top - 0.5), rf.sizes[1], rf.sizes[0], fill=False,
                           lw=2, color="tab:red"))
    margin = max(0.0, -min(top, left), max(top + rf.sizes[0] - height, left + rf.sizes[1] - width))
    ax.set_xlim(-0.5 - margin, width - 0.5 + margin)
    ax.set_ylim(height - 0.5 + margin, -0.5 - margin)
    ax.set_title(f"{layer} unit {unit}: field {rf.size}, jump {rf.jump}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_complexity(path: str | Path, names: list[str] | None = None) -> Path:
    """The zoo's complexity chart: multiply-adds against parameters at each default input size.

    Models are built on the meta device, so even the largest costs no memory or init time.
    """
    from cnnlab.analysis import summary
    from cnnlab.models import create_model, list_models, model_info

    names = names or list_models()
    points = []
    for name in names:
        info = model_info(name)
        with torch.device("meta"):
            model = create_model(name)
        s = summary(model, info.input_size)
        points.append((name, s.total_params / 1e6, s.total_macs / 1e9, info.family, info.year))
    families = sorted({p[3] for p in points}, key=lambda f: min(p[4] for p in points if p[3] == f))
    colours = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(10, 7))
    for k, family in enumerate(families):  # one colour per family, oldest first in the legend
        mine = [p for p in points if p[3] == family]
        year = min(p[4] for p in mine)
        shade = (2 * k) % 20 + (2 * k) // 20 % 2  # tab20's strong colours first, then the pale
        ax.scatter([p[2] for p in mine], [p[1] for p in mine], color=colours(shade), s=36,
                   label=f"{family} ({year})", edgecolors="white", linewidths=0.5, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.margins(0.12)
    ax.set_xlabel("multiply-adds per image (G MACs, at the default input size)")
    ax.set_ylabel("parameters (M)")
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=8, loc="upper left", title="family (first year)", title_fontsize=8)
    ax.set_title("Computational complexity of the zoo (where names would overlap, a variant is "
                 "left unlabelled: its colour gives the family)", fontsize=10)
    fig.tight_layout()
    place_labels(ax, [p[2] for p in points], [p[1] for p in points], [p[0] for p in points])
    return save_figure(fig, path)
