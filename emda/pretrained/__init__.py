"""Pretrained source models shipped with emda, addressed as ``emda:NAME``.

Each is an emda checkpoint (float16 weights, read back as float32) with a model card
``NAME.json``: training data, licence, scores and the command that built it
(``benchmarks/pretrained.py``). They are part of the package, so they work offline.
Wherever a run directory is accepted (``emda predict``, ``recalibrate``, ``finetune``,
``export``, ``info``, a self-training teacher), ``emda:NAME`` names one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from emda.errors import EmdaError

PREFIX = "emda:"
HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.pt"))


def card(name: str) -> dict[str, Any]:
    """The model card of ``name`` (its ``.json``), with the checkpoint's size."""
    path = HERE / f"{name}.json"
    data = json.loads(path.read_text()) if path.exists() else {"name": name}
    return {**data, "bytes": (HERE / f"{name}.pt").stat().st_size}


def is_pretrained(value: str | os.PathLike) -> bool:
    return str(value).startswith(PREFIX)


def resolve(value: str | os.PathLike) -> Path:
    """The checkpoint file of ``emda:NAME``; any other value as a path, unchanged."""
    if not is_pretrained(value):
        return Path(value)
    name = str(value)[len(PREFIX) :]
    path = HERE / f"{name}.pt"
    if not name or not path.is_file():
        known = ", ".join(PREFIX + n for n in names()) or "none installed"
        raise EmdaError(f"{value}: no such pretrained model (emda models lists them: {known})")
    return path
