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
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from emda import ddp
from emda.averaging import WeightAverage, first_averaged
from emda.checkpoint import Checkpoint, atomic_torch_save, save_checkpoint
from emda.errors import EmdaError
from emda.interrupt import Interrupted, StopOnInterrupt
from emda.method import Batch, Method, TrainStep
from emda.sampling import Augmentation, PatchSampler
from emda.style import amplitude_mix

#: ``--target-planes`` choices and the plane stacks each samples
TARGET_PLANES = {"xy": ("xy",), "ortho": ("xy", "xz", "yz")}
LOG_NAME = "log.jsonl"
STATE_NAME = "state.pt"
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainConfig:
    iterations: int = 1500
    batch_size: int = 8
    patch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "cosine"  # or "constant"
    seed: int = 0
    augment: bool = True
    intensity_jitter: float = 0.1
    sharpness: float = 0.0
    noise: float = 0.0
    amplitude_mix: float = 0.0  # see emda.style; needs target patches
    smooth_objects: float = 0.0  # see emda.sampling.Augmentation; needs labelled patches
    seg_loss: str = "bce_dice"
    checkpoint_every: int = 250
    amp: bool = True  # mixed precision; only used on CUDA
    #: plane stacks of the target that target patches come from: "xy" or "ortho" (all
    #: three, for isotropic volumes such as FIB-SEM)
    target_planes: str = "xy"
    #: the last fraction of the iterations whose weights are averaged into the saved
    #: model (see emda.averaging); 0 saves the last iteration's weights; None: the
    #: method's own default (``Method.average_weights``), see ``for_method``
    average_weights: float | None = None

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "patch_size", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise EmdaError(f"--{name.replace('_', '-')} must be positive")
        if not self.lr > 0:
            raise EmdaError("--lr must be positive")
        if self.lr_schedule not in ("cosine", "constant"):
            raise EmdaError("--lr-schedule must be cosine or constant")
        if not 0 <= self.amplitude_mix <= 1:
            raise EmdaError("--amplitude-mix must be in [0, 1]")
        if self.average_weights is not None and not 0 <= self.average_weights <= 1:
            raise EmdaError("--average-weights must be in [0, 1]")
        if self.target_planes not in TARGET_PLANES:
            raise EmdaError(f"--target-planes must be one of {', '.join(TARGET_PLANES)}")
        self.augmentation()  # validates the augmentation settings

    def for_method(self, method: Method) -> TrainConfig:
        """This config with every setting a method may default filled in from it."""
        if self.average_weights is not None:
            return self
        return replace(self, average_weights=method.average_weights)

    def augmentation(self) -> Augmentation:
        return Augmentation(
            self.augment, self.intensity_jitter, self.sharpness, self.noise, self.smooth_objects
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
    config = config.for_method(method)
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
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext()
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
        first = _restore_state(run_dir, model, heads, optimizer, scheduler, scaler, template, rng,
                               average, device)  # fmt: skip
        if ddp.world_size() > 1:  # state.pt holds rank 0's generators: give each rank its own
            seq = np.random.SeedSequence([config.seed, ddp.rank(), first])
            rng = seed_everything(int(seq.generate_state(1)[0]))
        elapsed = _truncate_log(run_dir, first) if main else 0.0
    # one module for the forward pass, so that DDP (under torchrun) sees every parameter
    forward = ddp.wrap(LossModule(model, heads, method, config.seg_loss), device)
    start = time.perf_counter() - elapsed
    terms_f: dict[str, float] = {}
    saver = functools.partial(_save_state, run_dir, model, heads, optimizer, scheduler, scaler,
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
            with autocast:
                terms, metrics = forward(src, tgt, it / config.iterations, it)
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


def _save_state(
    run_dir, model, heads, optimizer, scheduler, scaler, template, rng, average, iteration
) -> None:
    """Intermediate state: a usable checkpoint, plus (in ``state.pt``, self-contained, so
    that a kill between the two writes cannot mismatch them) everything resuming needs."""
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    template.state_dict = weights
    template.iteration = iteration
    save_checkpoint(template, run_dir / CHECKPOINT_NAME)
    state = {
        "iteration": iteration,
        "model": weights,
        "heads": {k: v.detach().cpu() for k, v in heads.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "signature": json.dumps(_signature(template), sort_keys=True),
    }
    if average is not None:
        state["average"] = average.state_dict()
    atomic_torch_save(state, run_dir / STATE_NAME)


def _signature(template: Checkpoint) -> dict:
    """What must not change between a run and its resumption."""
    training = {k: v for k, v in template.training.items()
                if k not in ("checkpoint_every", "emda_version")}  # fmt: skip
    return {
        "method": template.method,
        "method_options": template.method_options,
        "model": template.model_config.to_dict(),
        "training": training,
    }


def _restore_state(
    run_dir, model, heads, optimizer, scheduler, scaler, template, rng, average, device
) -> int:
    path = run_dir / STATE_NAME
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = json.loads(state["signature"])
    except Exception as exc:  # a state file is written atomically; this is not one of ours
        raise EmdaError(f"{path}: unreadable training state ({exc})") from None
    now = json.loads(json.dumps(_signature(template), sort_keys=True))
    # settings added to TrainConfig since the run started had their default value then;
    # runs from before --average-weights existed averaged nothing
    then = {**asdict(TrainConfig()), "average_weights": 0.0}
    defaults = {k: v for k, v in then.items() if k in now["training"]}
    saved["training"] = {**defaults, **saved["training"]}
    for part in ("method", "method_options", "model", "training"):
        if saved[part] != now[part]:
            diff = _first_difference(saved[part], now[part])
            raise EmdaError(f"--resume: {run_dir} was started with different settings ({diff})")
    model.load_state_dict(state["model"])
    heads.load_state_dict(state["heads"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    rng.bit_generator.state = json.loads(state["numpy_rng"])
    if average is not None and "average" in state:
        average.load_state_dict(state["average"], device)
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["iteration"])


def _first_difference(saved, now) -> str:
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in sorted(set(saved) | set(now)):
            if saved.get(key) != now.get(key):
                return f"{key}: {saved.get(key)!r} then, {now.get(key)!r} now"
    return f"{saved!r} then, {now!r} now"


def _truncate_log(run_dir: Path, iteration: int) -> float:
    """Drop log records after ``iteration`` (written before a kill, redone now); returns
    the training time the kept records account for."""
    path = run_dir / LOG_NAME
    kept = [r for r in read_log(run_dir) if r["iteration"] <= iteration]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, path)
    return float(kept[-1]["seconds"]) if kept else 0.0


def logged_values(record: dict) -> dict[str, float]:
    """A log record's loss terms (``loss`` first) and method metrics, without bookkeeping."""
    skip = ("iteration", "lr", "seconds", "metrics")
    return {k: v for k, v in record.items() if k not in skip} | record.get("metrics", {})


def _format_terms(record: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in logged_values(record).items())


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[terms]}"),
        disable=not enabled,
        transient=False,
    )


def read_log(run_dir: Path) -> list[dict]:
    """The log's records; a last line cut short (a kill mid-write, or a run still
    writing) is left out."""
    path = Path(run_dir) / LOG_NAME
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    complete = lines if text.endswith("\n") else lines[:-1]
    return [json.loads(line) for line in complete if line.strip()]


SUMMARY_ITERATIONS = 100


def log_summary(records: list[dict], last: int = SUMMARY_ITERATIONS) -> dict[str, float]:
    """Each loss term and metric averaged over the last ``last`` logged iterations: how a
    run ended, steadier than its final, single-batch values."""
    sums: dict[str, list[float]] = {}
    for record in records[-last:]:
        for name, value in logged_values(record).items():
            sums.setdefault(name, []).append(value)
    return {name: sum(values) / len(values) for name, values in sums.items()}
