"""What a run reports after each epoch: metrics.csv, TensorBoard scalars, a plot of the curves."""

from __future__ import annotations

from pathlib import Path

from cnnlab.train.checkpoint import write_metrics


class RunLog:
    """Write the history of a run into its directory (rank 0 only).

    ``tensorboard``: scalars under ``<run>/tensorboard`` when the ``tensorboard`` package is
    installed (imported lazily; silently skipped otherwise). ``plot``: ``curves.png`` with loss
    and accuracy per epoch, drawn with matplotlib's Agg backend.
    """

    def __init__(self, out: Path, tensorboard: bool = True, plot: bool = True) -> None:
        self.out = out
        self.plot = plot
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(out / "tensorboard"))

    def epoch_end(self, history: list[dict]) -> None:
        write_metrics(self.out / "metrics.csv", history)
        row = history[-1]
        if self.writer is not None:
            for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "images_per_s"):
                if row[key] is not None:  # test_*: None on epochs without evaluation
                    self.writer.add_scalar(key, float(row[key]), int(row["epoch"]))
            self.writer.flush()
        if self.plot:
            plot_curves(history, self.out / "curves.png")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def whole_number_ticks(ax, values) -> None:
    """Ticks on the x axis at whole numbers only (epochs, pixels): each value when there are
    few (a 1-epoch run: one tick, 1, in the middle), else matplotlib's integer locator."""
    from matplotlib.ticker import MaxNLocator

    values = sorted({int(v) for v in values})
    if values and values[-1] - values[0] <= 12:
        ax.set_xticks(range(values[0], values[-1] + 1))
        ax.set_xlim(values[0] - 0.5, values[-1] + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def draw_curves(history: list[dict]):
    """A matplotlib figure: loss (left) and accuracy (right) against the epoch, train and test
    (test only on the epochs that were evaluated, ``train.eval_every``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    for split, style in (("train", "--"), ("test", "-")):
        rows = [r for r in history if r[f"{split}_acc"] is not None]
        epochs = [int(r["epoch"]) for r in rows]
        ax_loss.plot(epochs, [float(r[f"{split}_loss"]) for r in rows], style, marker="o", label=split)
        ax_acc.plot(epochs, [100 * float(r[f"{split}_acc"]) for r in rows], style, marker="o",
                    label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        whole_number_ticks(ax, [int(r["epoch"]) for r in history])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_curves(history: list[dict], path: Path) -> Path:
    """:func:`draw_curves` saved as a PNG, atomically."""
    import io

    import matplotlib.pyplot as plt

    from cnnlab.train.checkpoint import atomic_write_bytes

    fig = draw_curves(history)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())
