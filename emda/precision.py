"""The arithmetic precision of the network: float32, or autocast to bfloat16 / float16.

``--precision auto`` picks, per device and per task, what measurement showed faster
with the same results (benchmarks/roofline.py, docs/performance.md):

- a CPU with bfloat16 instructions (AVX512-BF16 or AMX): bfloat16 for training and
  prediction; other CPUs: float32 (oneDNN emulates bfloat16 there, slower than
  float32);
- a CUDA GPU: float16 for prediction, float32 for training (the base-16 U-Net is too
  small for half-precision training to pay for its casts and loss scaling).

A precision asked for explicitly is used for both tasks, and refused in one line when
the device cannot compute in it. Autocast leaves reductions, losses and the feature
statistics of the alignment methods in float32 (:func:`full_precision`).
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager, nullcontext
from enum import Enum
from pathlib import Path

import torch

from emda.errors import EmdaError


class Precision(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


#: the tasks ``auto`` decides for separately
TASKS = ("train", "predict")
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_has_bfloat16() -> bool:
    """Whether the CPU computes bfloat16 in hardware, and oneDNN uses it."""
    native = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    return native and torch.backends.mkldnn.is_available() and _mkldnn("bf16")


def cpu_has_float16() -> bool:
    native = bool(cpu_flags() & {"avx512_fp16", "amx_fp16"})
    return native and torch.backends.mkldnn.is_available() and _mkldnn("fp16")


def _mkldnn(kind: str) -> bool:
    check = getattr(torch.ops.mkldnn, f"_is_mkldnn_{kind}_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def supported(precision: str, device: torch.device) -> bool:
    """Whether ``device`` computes in ``precision`` (float32 always)."""
    if precision == "float32":
        return True
    if device.type == "cuda":
        return precision == "float16" or torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_bfloat16() if precision == "bfloat16" else cpu_has_float16()
    return False


def resolve_precision(
    choice: str | Precision, device: torch.device, task: str, option: str = "--precision"
) -> torch.dtype | None:
    """The autocast dtype for ``task`` ("train" or "predict") on ``device``; None for
    float32. ``auto`` picks per device and task (the module docstring); an explicit
    precision the device lacks is an error naming ``option``."""
    choice = Precision(choice).value
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    if choice == "auto":
        return _automatic(device, task)
    if not supported(choice, device):
        where = "this CPU has no" if device.type == "cpu" else f"{device} has no"
        raise EmdaError(f"{option} {choice}: {where} {choice} arithmetic (use float32 or auto)")
    return _DTYPES.get(choice)


def _automatic(device: torch.device, task: str) -> torch.dtype | None:
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_bfloat16() else None
    if device.type == "cuda":
        return torch.float16 if task == "predict" else None
    return None


def name(dtype: torch.dtype | None) -> str:
    """``"float32"`` for None, else the dtype's name: what a run records."""
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def dtype_of(precision: str) -> torch.dtype | None:
    """The dtype a resolved precision name stands for (None: float32)."""
    return _DTYPES.get(precision)


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Autocast to ``dtype`` on ``device`` (nothing for None: float32)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def full_precision(x: torch.Tensor) -> AbstractContextManager:
    """Autocast off on ``x``'s device: for statistics (covariances, kernel distances)
    that reduced precision would distort; inputs must still be cast with ``.float()``."""
    return torch.autocast(x.device.type, enabled=False)
