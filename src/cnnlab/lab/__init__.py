"""The lab: one experiment per claim of the notes, each one command with a seed and a sentence.

``cnnlab lab list`` shows them; ``cnnlab lab NAME --out DIR`` runs one (``--quick`` for seconds,
``--full`` for a GPU) and writes ``results.json``, PNG plots and the trained runs to ``DIR``.
"""

from __future__ import annotations

import importlib

from cnnlab.errors import ConfigError
from cnnlab.lab.common import (
    RESULTS_FILE,
    SCALES,
    Experiment,
    LabContext,
    Outcome,
    read_results,
    run_experiment,
)

# name users type -> module in cnnlab.lab, in the order of the issue (and of `cnnlab lab list`)
EXPERIMENT_MODULES = {
    "depth": "depth", "transfer": "transfer", "data-scaling": "data_scaling",
    "ensemble": "ensemble", "tta": "tta", "equivariance": "equivariance",
    "bottleneck": "bottleneck", "complexity": "complexity", "explicit": "explicit",
    "invariance": "invariance", "error-sources": "error_sources", "convergence": "convergence",
}


def list_experiments() -> list[str]:
    return list(EXPERIMENT_MODULES)


def get_experiment(name: str) -> Experiment:
    """The registered :class:`Experiment` called ``name``."""
    if name not in EXPERIMENT_MODULES:
        raise ConfigError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENT_MODULES)}")
    return importlib.import_module(f"cnnlab.lab.{EXPERIMENT_MODULES[name]}").EXPERIMENT


__all__ = ["EXPERIMENT_MODULES", "RESULTS_FILE", "SCALES", "Experiment", "LabContext", "Outcome",
           "get_experiment", "list_experiments", "read_results", "run_experiment"]
