"""What ``--resume`` needs: the saved training state, its signature, and the log.

``state.pt`` is self-contained (weights, heads, optimiser, schedule, random
generators and the settings' signature), written atomically beside a usable
``checkpoint.pt``, so a kill between the two writes cannot mismatch them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import torch

from emda.errors import EmdaError
from emda.model.checkpoint import Checkpoint, atomic_torch_save, save_checkpoint
from emda.training.config import TrainConfig

LOG_NAME = "log.jsonl"
STATE_NAME = "state.pt"
CHECKPOINT_NAME = "checkpoint.pt"
#: what a run computes in: not part of the signature, since ``--precision auto`` may
#: resolve otherwise on the machine that resumes it (another node of a cluster)
USED = "precision_used"
#: settings emda no longer has; a run saved with them off resumes as before
RETIRED_SETTINGS = ("sharpness", "smooth_objects", "gamma", "blur")
#: settings another one replaced; a run saved with them resumes under the new one's
#: default (``amp``: CUDA-only float16, now ``precision``, whose auto trains in float32 on CUDA)
REPLACED_SETTINGS = ("amp",)

log = logging.getLogger("emda")


def save_state(
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
        USED: template.training.get(USED, "float32"),
    }
    if average is not None:
        state["average"] = average.state_dict()
    atomic_torch_save(state, run_dir / STATE_NAME)


def _signature(template: Checkpoint) -> dict:
    """What must not change between a run and its resumption."""
    training = {k: v for k, v in template.training.items()
                if k not in ("checkpoint_every", "emda_version", USED)}  # fmt: skip
    return {
        "method": template.method,
        "method_options": template.method_options,
        "model": template.model_config.to_dict(),
        "training": training,
    }


def restore_state(
    run_dir, model, heads, optimizer, scheduler, scaler, template, rng, average, device
) -> int:
    path = run_dir / STATE_NAME
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = json.loads(state["signature"])
    except Exception as exc:  # a state file is written atomically; this is not one of ours
        raise EmdaError(f"{path}: unreadable training state ({exc})") from None
    now = json.loads(json.dumps(_signature(template), sort_keys=True))
    # settings added to TrainConfig since the run started had their default value then
    defaults = {k: v for k, v in asdict(TrainConfig()).items() if k in now["training"]}
    saved["training"] = {**defaults, **saved["training"]}
    for name in RETIRED_SETTINGS:
        if not saved["training"].get(name, 0):
            saved["training"].pop(name, None)
    for name in REPLACED_SETTINGS:
        saved["training"].pop(name, None)
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
    _continue_precision(run_dir, state, saved["training"], template, int(state["iteration"]))
    return int(state["iteration"])


def _continue_precision(run_dir, state, saved: dict, template: Checkpoint, iteration: int) -> None:
    """Record in ``template`` what the run computed in so far and from now on; say so when
    ``--precision auto`` resolves otherwise here than where the run started."""
    asked = saved.get("precision", "auto")
    # a state saved before this was recorded trained in what it asked for; auto in float32
    before = state.get(USED) or ("float32" if asked == "auto" else asked)
    now = template.training.get(USED, "float32")
    if before.rpartition("then ")[2] == now:
        template.training = {**template.training, USED: before}
        return
    log.warning(
        "--resume: %s trained in %s up to iteration %d; --precision auto is %s on this "
        "machine, which the rest uses (give --precision to keep one)",
        *(run_dir, before, iteration, now),
    )
    used = f"{before} to iteration {iteration}, then {now}"
    template.training = {**template.training, USED: used}


def _first_difference(saved, now) -> str:
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in sorted(set(saved) | set(now)):
            if saved.get(key) != now.get(key):
                return f"{key}: {saved.get(key)!r} then, {now.get(key)!r} now"
    return f"{saved!r} then, {now!r} now"


def truncate_log(run_dir: Path, iteration: int) -> float:
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
