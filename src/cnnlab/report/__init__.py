"""Reports: plots of models and runs (matplotlib, Agg backend)."""

from cnnlab.report.confusion import plot_confusion
from cnnlab.report.html import write_report
from cnnlab.report.plots import plot_complexity, plot_layer_costs, plot_receptive_field

__all__ = ["plot_complexity", "plot_confusion", "plot_layer_costs", "plot_receptive_field", "write_report"]
