"""Distributed data-parallel training on ``torch.distributed``, launched by ``torchrun``.

``cnnlab train ... --nproc N`` re-runs the same command under ``torch.distributed.run`` with N
processes on this machine (gloo on CPU, NCCL on GPUs). Inside each process ``torchrun`` sets
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed` reads them, so the same
entry point works under a multi-node ``torchrun`` (docs/training.md). Each process trains on its
shard of every global batch; DDP averages the gradients, so N processes with a per-process batch
of B/N take the same steps as one process with batch B. Only rank 0 writes files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cnnlab.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # global rank of this process
    local_rank: int = 0  # rank on this machine (picks the GPU)
    world_size: int = 1  # number of processes in all

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group described by torchrun's environment (no-op for one process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size)
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend)
    return info


def check_world(batch_size: int, world_size: int, device_type: str = "cpu") -> None:
    """The rules a data-parallel run must meet, checked in the launching process before torchrun
    starts (and again in each process): at least one process, a global batch that splits evenly,
    and on CUDA one GPU per process."""
    if world_size < 1:
        raise ConfigError(f"--nproc must be at least 1, got {world_size}")
    if batch_size % world_size:
        fit = -(-batch_size // world_size) * world_size
        raise ConfigError(f"train.batch_size={batch_size} must be divisible by the {world_size} "
                          f"processes (--nproc {world_size}): use --batch-size {fit}")
    if device_type == "cuda" and world_size > torch.cuda.device_count():
        raise ConfigError(f"--nproc {world_size} on cuda needs one GPU per process; this machine "
                          f"has {torch.cuda.device_count()}")


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``tensor`` over all processes (in place); identity for one process."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's value of ``flag`` on every process (e.g. the early-stopping decision)."""
    return bool(broadcast_int(int(flag), info))


def broadcast_int(value: int, info: DistInfo) -> int:
    """Rank 0's ``value`` on every process (e.g. which numeric path ``auto`` measured fastest)."""
    if not info.enabled:
        return value
    t = torch.tensor([value])
    dist.broadcast(t, 0)
    return int(t.item())


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``cnnlab <argv>`` in ``nproc`` processes on this machine through torchrun.

    ``--standalone`` starts a rendezvous on a free loopback port. Each process gets
    ``OMP_NUM_THREADS = cores // nproc`` unless the caller set it.
    """
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "cnnlab.cli", *argv]
    return subprocess.call(command, env=env)
