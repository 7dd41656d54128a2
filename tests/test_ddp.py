"""Training under torchrun with DistributedDataParallel: 2 CPU processes on Gloo."""

import os
import subprocess
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from emda.model.checkpoint import load_checkpoint
from emda.training.state import read_log

from .conftest import CROPS, REPO


def _ranks_stay_in_step(rank: int, init_file: str, result_file: str) -> None:
    """Three DDP steps of a method's loss module with different data on each rank."""
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    from torch import nn

    from emda.methods.base import Batch
    from emda.model import UNet, UNetConfig
    from emda.training import ddp
    from emda.training.adapt import resolve_method
    from emda.training.loop import LossModule, total_loss

    method = resolve_method("dann", {})
    torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
    model = UNet(UNetConfig(base_channels=4, depth=4))
    heads = nn.ModuleDict(method.build_heads(model))
    forward = ddp.wrap(LossModule(model, heads, method, "bce_dice"), torch.device("cpu"))
    optimizer = torch.optim.Adam(forward.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own patches
    for it in range(3):
        source = Batch(torch.rand(2, 1, 32, 32, generator=g),
                       (torch.rand(2, 1, 32, 32, generator=g) > 0.7).float())  # fmt: skip
        target = Batch(torch.rand(2, 1, 32, 32, generator=g))
        terms, metrics = forward(source, target, it / 3, it)
        assert set(metrics) == {"domain_accuracy2", "domain_accuracy3", "domain_accuracy4"}
        loss = total_loss(terms, "dann")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    flat = torch.cat([p.detach().flatten() for p in forward.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(2)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        torch.save({"same": bool(torch.equal(gathered[0], gathered[1]))}, result_file)
    del forward, optimizer  # as emda.training.loop does: DDP's reducer holds the process group
    ddp.teardown()


def test_ranks_hold_the_same_weights_after_ddp_steps(tmp_path):
    result = tmp_path / "result.pt"
    mp.spawn(_ranks_stay_in_step, args=(str(tmp_path / "init"), str(result)), nprocs=2)
    assert torch.load(result)["same"]


def test_adapt_under_torchrun_on_two_cpu_processes(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", "-m", "emda", "adapt", "--source", str(CROPS / "epfl_train/raw.tif"),
            "--source-labels", str(CROPS / "epfl_train/labels.tif"), "--target",
            str(CROPS / "vnc/raw.tif"), "--method", "ynet", "--out", str(out), "--iterations",
            "6", "--batch-size", "2", "--patch-size", "64", "--base-channels", "4",
            "--checkpoint-every", "3", "--device", "cpu", "--threads", "1",
            "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = read_log(out)
    # rank 0 alone writes: one record per iteration, not one per rank
    assert [r["iteration"] for r in log] == list(range(1, 7))
    assert all(np.isfinite(r["loss"]) for r in log)
    ckpt = load_checkpoint(out)
    assert ckpt.iteration == 6 and ckpt.training["target_bn"]
    assert not (out / "state.pt").exists()
