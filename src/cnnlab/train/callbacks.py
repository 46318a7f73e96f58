"""The former name of :mod:`cnnlab.train.runlog` (it never held callbacks); kept for imports."""

from cnnlab.train.runlog import RunLog, draw_curves, plot_curves

__all__ = ["RunLog", "draw_curves", "plot_curves"]
