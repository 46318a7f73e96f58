"""Device and numeric precision: what runs where, chosen once and reported to the user.

On CPUs with bf16 support (AVX-512 BF16 / AMX), bf16 autocast with channels_last convolutions
runs several times faster than fp32 NCHW (BENCHMARKS.md); ``auto`` picks it there. On CUDA,
``auto`` picks bf16 where the GPU supports it, else fp16 with a gradient scaler.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from cnnlab.errors import ConfigError

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    device: torch.device  # where the model runs
    name: str  # fp32, bf16 or fp16
    channels_last: bool  # memory format of images and convolution weights

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for bf16/fp16; a no-op for fp32."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def format(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in this path's memory format: channels_last applies to 4-D images only (cached
        feature vectors pass as they are)."""
        if self.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` moved to this path's device and, for channels_last, its memory format."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def describe(self) -> str:
        layout = "channels_last" if self.channels_last else "NCHW"
        amp = "fp32" if self.name == "fp32" else f"{self.name} autocast"
        return f"{self.device.type} · {amp} · {layout}"


def resolve_device(name: str = "auto") -> torch.device:
    """The one device resolver: ``auto`` (cuda when a GPU is here, else cpu), ``cpu``, ``cuda`` or
    ``cuda:N``. A device this machine does not have is a :class:`ConfigError` saying so, before
    anything runs (never torch's "Found no NVIDIA driver" from the first tensor moved there)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: no CUDA GPU here; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA "
                              f"GPU(s), numbered from 0; use --device cuda or cuda:0")
    return device


def cpu_supports_bf16() -> bool:
    """True when oneDNN has fast bf16 kernels on this CPU (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(device: str | torch.device = "auto", precision: str = "auto",
                      channels_last: bool | None = None) -> Precision:
    """Pick the fastest correct numeric path for ``device`` unless told otherwise."""
    dev = resolve_device(device) if isinstance(device, str) else device
    if precision == "auto":
        if dev.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "bf16" if cpu_supports_bf16() else "fp32"
    if precision not in _DTYPES:
        raise ConfigError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    if precision == "fp16" and dev.type == "cpu":
        raise ConfigError("fp16 autocast is for GPUs; on the CPU use --precision bf16 or fp32")
    if channels_last is None:
        channels_last = precision != "fp32" or dev.type == "cuda"
    return Precision(dev, precision, channels_last)


def cpu_candidates(channels_last: bool | None = None) -> dict[str, Precision]:
    """The CPU's numeric paths that ``auto`` chooses among: fp32 NCHW, fp32 channels_last and,
    where oneDNN has bf16 kernels, bf16 + channels_last; only those of one memory format when
    ``channels_last`` is given."""
    cpu = torch.device("cpu")
    candidates = {"fp32": Precision(cpu, "fp32", False),
                  "fp32 channels_last": Precision(cpu, "fp32", True)}
    if cpu_supports_bf16():
        candidates["bf16"] = Precision(cpu, "bf16", True)
    if channels_last is None:
        return candidates
    return {k: p for k, p in candidates.items() if p.channels_last == channels_last}


def measure_cpu_precision(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                          repeats: int = 5, timer=None,
                          candidates: dict[str, Precision] | None = None,
                          ) -> tuple[Precision, dict[str, float]]:
    """Time training steps (forward, backward) of copies of ``model`` on each of ``candidates``
    (default :func:`cpu_candidates`), interleaved in this process so that a shared CPU's load
    hits all alike; return the fastest and the seconds per step of each (the minimum over
    ``repeats``: load only ever adds time, so the minimum is the least disturbed measurement).

    Small nets (LeNet-5) can run faster in fp32: bf16's casts cost more than its kernels save;
    which memory format is faster in fp32 depends on the network (BENCHMARKS.md).
    ``timer``: the clock (``time.perf_counter``; tests pass a fake one).
    """
    import torch.nn.functional as F

    def step(model: torch.nn.Module, x: torch.Tensor, p: Precision) -> None:
        with p.autocast():
            outputs = model(x)  # GoogLeNet in training mode: (logits, aux2, aux1)
            logits = outputs if isinstance(outputs, torch.Tensor) else outputs[0]
            loss = F.cross_entropy(logits.float(), labels)
        loss.backward()

    return _fastest(model, images, candidates or cpu_candidates(), step, repeats, training=True,
                    timer=timer)


def measure_cpu_inference(model: torch.nn.Module, images: torch.Tensor, repeats: int = 2
                          ) -> tuple[Precision, dict[str, float]]:
    """Like :func:`measure_cpu_precision` for forward passes without gradients (a frozen backbone
    computing cached features): fp32 NCHW, fp32 channels_last and, where oneDNN has bf16 kernels,
    bf16 channels_last (:func:`cpu_candidates`). Depthwise convolutions (EfficientNet) run 1.7x
    faster in channels_last even in fp32 on an AVX2 CPU (BENCHMARKS.md)."""

    @torch.no_grad()
    def step(model: torch.nn.Module, x: torch.Tensor, p: Precision) -> None:
        with p.autocast():
            model(x)

    return _fastest(model, images, cpu_candidates(), step, repeats, training=False)


def _fastest(model: torch.nn.Module, images: torch.Tensor, candidates: dict[str, Precision],
             step, repeats: int, training: bool, timer=None) -> tuple[Precision, dict[str, float]]:
    """Run ``step(copy, images, precision)`` on a copy of ``model`` (in training mode or not) per
    candidate, interleaved, ``repeats`` rounds after a warm-up round (oneDNN's kernel cache), the
    order reversed every other round so that neither candidate always runs first; return the
    fastest and each one's best (minimum) seconds per step."""
    import copy
    import time

    clock = timer or time.perf_counter
    models = {}
    for name, p in candidates.items():
        m = copy.deepcopy(model).to(p.device).train(training)
        models[name] = m.to(memory_format=torch.channels_last) if p.channels_last else m
    times: dict[str, float] = {name: float("inf") for name in candidates}
    names = list(candidates)
    for rep in range(repeats + 1):
        for name in names if rep % 2 == 0 else names[::-1]:
            p = candidates[name]
            x = p.format(images)
            start = clock()
            step(models[name], x, p)
            if rep:
                times[name] = min(times[name], clock() - start)
    best = min(times, key=times.get)
    return candidates[best], times
