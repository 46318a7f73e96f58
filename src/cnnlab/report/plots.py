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


def plot_layer_costs(s: Summary, path: str | Path, title: str | None = None) -> Path:
    """Two bar charts, one bar per layer: parameters and multiply-adds (MACs)."""
    rows = _leaf_rows(s)
    names = [r.name or r.type for r in rows]
    fig, (ax_p, ax_m) = plt.subplots(2, 1, figsize=(max(6.0, 0.22 * len(rows) + 2), 6.5),
                                     sharex=True)
    x = range(len(rows))
    ax_p.bar(x, [r.params / 1e6 for r in rows], color="tab:blue")
    ax_p.set_ylabel("parameters (M)")
    ax_m.bar(x, [r.macs / 1e6 for r in rows], color="tab:orange")
    ax_m.set_ylabel("multiply-adds (M)")
    ax_m.set_xticks(list(x), names, rotation=90, fontsize=7)
    ax_p.set_title(title or f"{s.model_name} at {'x'.join(map(str, s.input_shape[1:]))}: "
                   f"{s.total_params / 1e6:.2f}M params, {s.total_macs / 1e9:.3f}G MACs")
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
        points.append((name, s.total_params / 1e6, s.total_macs / 1e9, info.year))
    fig, ax = plt.subplots(figsize=(8, 6))
    sc = ax.scatter([p[2] for p in points], [p[1] for p in points], c=[p[3] for p in points],
                    cmap="viridis", s=40)
    for name, params, macs, _ in points:
        ax.annotate(name, (macs, params), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("multiply-adds per image (G MACs, at the default input size)")
    ax.set_ylabel("parameters (M)")
    ax.set_title("Computational complexity of the zoo")
    fig.colorbar(sc, ax=ax, label="year")
    fig.tight_layout()
    return save_figure(fig, path)
