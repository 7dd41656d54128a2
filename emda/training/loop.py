"""The one training loop. Methods contribute heads and named loss terms; nothing else.

Each step draws a labelled source batch (and, if the method wants it, an
unlabelled target batch), asks the method for its loss terms, sums them,
back-propagates, and logs every term by name to ``log.jsonl``, with the
diagnostics the method recorded (``TrainStep.log_metric``) under ``"metrics"``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from torch import nn

from emda.data.sampling import PatchSampler
from emda.data.style import amplitude_mix
from emda.errors import EmdaError
from emda.interrupt import Interrupted, StopOnInterrupt
from emda.methods.base import Batch, Method, TrainStep
from emda.model.checkpoint import Checkpoint, save_checkpoint
from emda.precision import autocast, resolve_precision
from emda.precision import name as precision_name
from emda.progress import make_progress
from emda.training import ddp
from emda.training.averaging import WeightAverage, first_averaged
from emda.training.config import TrainConfig
from emda.training.state import (
    CHECKPOINT_NAME,
    LOG_NAME,
    STATE_NAME,
    logged_values,
    restore_state,
    save_state,
    truncate_log,
)


@dataclass
class TrainResult:
    iterations: int
    seconds: float
    final_terms: dict[str, float]


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def train(
    model: nn.Module,
    method: Method,
    source: PatchSampler,
    target: PatchSampler | None,
    config: TrainConfig,
    device: torch.device,
    run_dir: Path,
    template: Checkpoint,
    show_progress: bool = True,
    resume: bool = False,
) -> TrainResult:
    """Train ``model`` in place and write the run directory's checkpoint and log.

    Every ``config.checkpoint_every`` iterations the complete training state (weights,
    heads, optimiser, schedule, random generators) is written atomically to
    ``state.pt``; ``resume`` continues from it and gives the same result as an
    uninterrupted run. Ctrl-C stops at the end of the current iteration and saves the
    state first.
    """
    device = ddp.setup(device)  # under torchrun: join the group, take this rank's GPU
    main = ddp.is_main()  # rank 0 writes the run directory; the others only train
    rng = seed_everything(config.seed + ddp.rank())  # each rank draws its own patches
    heads = nn.ModuleDict(method.build_heads(model))
    # channels_last: ~15 % faster convolutions on CPU (oneDNN) and tensor cores on CUDA
    model.to(device, memory_format=torch.channels_last).train()
    heads.to(device).train()
    # frozen head parameters (e.g. an EMA teacher's) are the method's to update
    params = [p for p in [*model.parameters(), *heads.parameters()] if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    schedule = _lr_lambda(config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    dtype = resolve_precision(config.precision, device, "train")
    template.training = {**template.training, "precision_used": precision_name(dtype)}
    # float16's narrow range needs loss scaling; bfloat16 has float32's range
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    use_target = method.uses_target and target is not None
    if method.uses_target and target is None:
        raise EmdaError(f"method '{method.name}' needs target data: pass --target")
    if config.amplitude_mix > 0 and target is None:
        raise EmdaError("--amplitude-mix needs --target (the style comes from target patches)")

    average = WeightAverage() if config.average_weights > 0 else None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    first, elapsed = 0, 0.0
    if resume:
        first = restore_state(run_dir, model, heads, optimizer, scheduler, scaler, template, rng,
                               average, device)  # fmt: skip
        if ddp.world_size() > 1:  # state.pt holds rank 0's generators: give each rank its own
            seq = np.random.SeedSequence([config.seed, ddp.rank(), first])
            rng = seed_everything(int(seq.generate_state(1)[0]))
        elapsed = truncate_log(run_dir, first) if main else 0.0
    # one module for the forward pass, so that DDP (under torchrun) sees every parameter
    forward = ddp.wrap(LossModule(model, heads, method, config.seg_loss), device)
    start = time.perf_counter() - elapsed
    terms_f: dict[str, float] = {}
    saver = functools.partial(save_state, run_dir, model, heads, optimizer, scheduler, scaler,
                              template, rng, average)  # fmt: skip
    averaged_from = first_averaged(config.iterations, config.average_weights)
    with (
        open(run_dir / LOG_NAME, "a", buffering=1) if main else open(os.devnull, "w") as log,
        _progress(show_progress and main) as progress,
        StopOnInterrupt() as stop,
    ):
        task = progress.add_task("training", total=config.iterations, terms="", completed=first)
        for it in range(first, config.iterations):
            src = source.sample(config.batch_size, rng)
            tgt = target.sample(config.batch_size, rng) if target is not None else None
            if config.amplitude_mix > 0:  # source structure in the target's style
                weights = rng.uniform(0, config.amplitude_mix, size=config.batch_size)
                src.x = amplitude_mix(src.x, tgt.x, torch.from_numpy(weights))
            tgt = tgt if use_target else None
            src.x, src.y = _to(src.x, device), src.y.to(device)
            if tgt is not None:
                tgt.x = _to(tgt.x, device)
                tgt.y = None if tgt.y is None else tgt.y.to(device)
                tgt.guide = None if tgt.guide is None else _to(tgt.guide, device)
            with autocast(device, dtype):
                terms, metrics = _step(forward, method.name, src, tgt, it, config.iterations)
            loss = total_loss(terms, method.name)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if average is not None and it + 1 >= averaged_from:
                average.update(model.state_dict())

            terms_f = {k: float(v.detach()) for k, v in terms.items()}
            if not math.isfinite(float(loss.detach())):
                raise EmdaError(
                    f"training diverged at iteration {it + 1} (loss terms: {terms_f}); "
                    "lower --lr or the method's weights"
                )
            record = {
                "iteration": it + 1,
                "loss": float(loss.detach()),
                **terms_f,
                "lr": scheduler.get_last_lr()[0],
                "seconds": round(time.perf_counter() - start, 3),
            }
            if metrics:
                record["metrics"] = {k: float(v) for k, v in metrics.items()}
            log.write(json.dumps(record) + "\n")
            progress.update(task, advance=1, terms=_format_terms(record))
            if ddp.any_rank(stop.requested, device) and it + 1 < config.iterations:
                if main:
                    saver(it + 1)
                raise Interrupted(
                    f"interrupted after iteration {it + 1} of {config.iterations}; the state is "
                    f"saved in {run_dir}: rerun the same command with --resume to continue"
                )
            if main and (it + 1) % config.checkpoint_every == 0 and it + 1 < config.iterations:
                saver(it + 1)
    if average is not None:  # the caller goes on with the model it gets back
        model.load_state_dict(average.weights(model.state_dict()))
    template.state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    template.iteration = config.iterations
    if main:
        save_checkpoint(template, run_dir / CHECKPOINT_NAME)
        state = run_dir / STATE_NAME
        if state.exists():
            state.unlink()  # the final checkpoint supersedes the intermediate state
    del forward  # under torchrun, DDP's reducer holds the process group
    ddp.teardown()
    return TrainResult(config.iterations, time.perf_counter() - start, terms_f)


class LossModule(nn.Module):
    """The network, the method's heads and its loss terms as one module: one forward
    call per iteration, which is what DistributedDataParallel wraps."""

    def __init__(self, model: nn.Module, heads: nn.ModuleDict, method: Method, seg_loss: str):
        super().__init__()
        self.model, self.heads = model, heads
        self.method, self.seg_loss = method, seg_loss

    def forward(
        self, source: Batch, target: Batch | None, progress: float, iteration: int
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The step's loss terms and the diagnostics the method logged."""
        metrics: dict[str, torch.Tensor] = {}
        terms = compute_terms(
            self.model, self.heads, self.method, source, target, progress, iteration,
            self.seg_loss, metrics,
        )  # fmt: skip
        return terms, metrics


def _step(forward, name: str, src, tgt, it: int, iterations: int):
    """One forward pass; a method's own failure is reported as the method's, in one line."""
    try:
        return forward(src, tgt, it / iterations, it)
    except (EmdaError, KeyboardInterrupt):
        raise
    except torch.OutOfMemoryError:
        raise EmdaError(f"out of memory at iteration {it + 1}: lower --batch-size or "
                        "--patch-size") from None  # fmt: skip
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise EmdaError(f"--method {name}: failed at iteration {it + 1} ({type(exc).__name__}: "
                        f"{first}); a bug in the method or its plugin") from exc  # fmt: skip


def compute_terms(
    model: nn.Module,
    heads: nn.ModuleDict,
    method: Method,
    source: Batch,
    target: Batch | None,
    progress: float,
    iteration: int,
    seg_loss: str = "bce_dice",
    metrics: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """One step's forward passes and the method's named loss terms; what the method
    records with ``step.log_metric`` is added to ``metrics`` when one is given."""
    source_out = model.forward_features(source.x)
    target_out = None
    if target is not None:
        run = model.forward_features if method.needs_target_logits else model.encode
        target_out = run(target.x)
    step = TrainStep(
        model=model,
        heads=heads,
        source=source,
        source_out=source_out,
        target=target,
        target_out=target_out,
        progress=progress,
        iteration=iteration,
        seg_loss=seg_loss,
        metrics={} if metrics is None else metrics,
    )
    return method.loss_terms(step)


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, memory_format=torch.channels_last, non_blocking=True)


def total_loss(terms: dict[str, torch.Tensor], method: str) -> torch.Tensor:
    if not terms:
        raise EmdaError(f"method '{method}' returned no loss terms")
    for name, value in terms.items():
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise EmdaError(f"method '{method}': loss term '{name}' is not a scalar tensor")
    return torch.stack([v.float().reshape(()) for v in terms.values()]).sum()


def _lr_lambda(config: TrainConfig):
    if config.lr_schedule == "constant":
        return lambda it: 1.0
    # cosine decay to 1 % of the initial rate over the iteration budget
    return lambda it: (
        0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(it, config.iterations) / config.iterations))
    )


def _format_terms(record: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in logged_values(record).items())


def _progress(enabled: bool):
    return make_progress(
        enabled,
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[terms]}"),
        console=Console(),
    )
