"""Training memory: weights, gradients, optimizer state, saved activations, and their peak.

Activation memory is measured by the trace (the bytes of tensors autograd saves for the backward
pass, each storage once). The rest follows from the parameters: a gradient per trainable
parameter, and per trainable parameter the optimizer's state — SGD with momentum keeps one buffer
(``momentum_buffer``), Adam/AdamW two (``exp_avg``, ``exp_avg_sq``), plain SGD none.

The peak of a training step is estimated as weights + gradients + optimizer state + saved
activations + the largest single tensor an operation produced (the transient that exists while
the last activations are still held). It ignores allocator rounding and backward workspaces.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cnnlab.errors import ConfigError

# Optimizer -> state tensors kept per trainable parameter.
OPTIMIZER_STATES = {"none": 0, "sgd": 0, "sgd_momentum": 1, "momentum": 1, "rmsprop": 1,
                    "adagrad": 1, "adam": 2, "adamw": 2}


@dataclass(frozen=True)
class MemoryReport:
    """Bytes of one training step's memory, by kind."""

    optimizer: str
    params_bytes: int  # all parameters (and buffers)
    grads_bytes: int  # one gradient per trainable parameter
    optimizer_bytes: int  # optimizer state
    saved_bytes: int  # activations saved for backward (measured)
    largest_output_bytes: int  # largest tensor one op produced
    peak_bytes: int  # the sum of the above: the estimated peak of a training step

    def to_dict(self) -> dict:
        return asdict(self)


def memory_report(params_bytes: int, trainable_bytes: int, saved_bytes: int,
                  largest_output_bytes: int, optimizer: str = "sgd_momentum") -> MemoryReport:
    """Assemble the memory of a training step for ``optimizer`` (a key of OPTIMIZER_STATES)."""
    key = optimizer.lower()
    if key not in OPTIMIZER_STATES:
        raise ConfigError(f"unknown optimizer {optimizer!r} for the memory estimate; "
                          f"choose one of {', '.join(sorted(OPTIMIZER_STATES))}")
    grads = trainable_bytes
    state = OPTIMIZER_STATES[key] * trainable_bytes
    peak = params_bytes + grads + state + saved_bytes + largest_output_bytes
    return MemoryReport(key, params_bytes, grads, state, saved_bytes, largest_output_bytes, peak)
