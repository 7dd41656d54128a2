"""Training on several processes with DistributedDataParallel, as ``torchrun`` launches it.

    torchrun --nproc_per_node 4 -m emda adapt --source ... --target ... --out run

Each process (rank) draws its own patches (seed + rank), so one iteration sees
``world size x --batch-size`` source patches; DDP averages the gradients, so all ranks
hold the same weights. Rank 0 alone writes the run directory (log, checkpoints, state,
batch-norm recalibration); the others only train. The backend is NCCL on CUDA (one GPU
per rank, ``LOCAL_RANK``) and Gloo on the CPU. Without torchrun's environment nothing
here does anything.
"""

from __future__ import annotations

import os

import torch
from torch import nn


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join the process group torchrun describes; the device this rank trains on."""
    if world_size() == 1:
        return device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def wrap(step: nn.Module, device: torch.device) -> nn.Module:
    """``step`` itself on one process; under torchrun, DDP around it (which broadcasts rank
    0's weights now and averages gradients in every backward pass)."""
    if world_size() == 1:
        return step
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        step,
        device_ids=[device.index] if device.type == "cuda" else None,
        # a method may leave a head or an encoder level out of some loss (weight 0)
        find_unused_parameters=True,
    )


def any_rank(flag: bool, device: torch.device) -> bool:
    """``flag`` from any rank, on every rank: a Ctrl-C seen by one process stops all of
    them after the same iteration."""
    if world_size() == 1:
        return flag
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def teardown() -> None:
    """Leave the process group once every rank is done with it.

    Without the barrier a rank could tear down its Gloo threads while the other still
    talks to it, and without the explicit destroy they are torn down at interpreter exit:
    either can abort the process (SIGABRT, "terminate called without an active
    exception") after a run that itself succeeded.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()
