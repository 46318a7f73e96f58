"""The confusion matrix as a picture (matplotlib, Agg backend: no display needed).

Cell (t, p) is coloured by the fraction of class t predicted as p (each row sums to 1), and
labelled with the count, so the diagonal reads as per-class accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


def plot_confusion(confusion: torch.Tensor, classes: Sequence[str], path: str | Path,
                   title: str = "confusion matrix") -> Path:
    """Save a (C, C) count matrix (rows = true class, columns = predicted) as an image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnlab.report.plots import save_figure

    counts = confusion.cpu().long()
    rates = counts.float() / counts.sum(1, keepdim=True).clamp(min=1)  # row-normalised
    n = len(classes)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(n), [c[:12] for c in classes], rotation=45, ha="right")
    ax.set_yticks(range(n), [c[:12] for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for t in range(n):
        for p in range(n):
            ax.text(p, t, str(counts[t, p].item()), ha="center", va="center", fontsize=7,
                    color="white" if rates[t, p] > 0.5 else "black")
    fig.tight_layout()
    return save_figure(fig, path)
