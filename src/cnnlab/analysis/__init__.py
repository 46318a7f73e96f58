"""Analysis of any PyTorch model: shapes, parameters, multiply-adds, memory, receptive fields."""

from cnnlab.analysis.memory import MemoryReport
from cnnlab.analysis.receptive_field import ReceptiveField
from cnnlab.analysis.summary import LayerRow, Summary, summary

__all__ = ["LayerRow", "MemoryReport", "ReceptiveField", "Summary", "summary"]
