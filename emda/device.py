"""Pick the torch device from ``--device auto|cpu|cuda``."""

from __future__ import annotations

from enum import Enum

import torch

from emda.errors import EmdaError


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def as_device(device: str | DeviceChoice | torch.device) -> torch.device:
    """A torch device from ``"auto"``, ``"cpu"``, ``"cuda"`` or a torch device."""
    return device if isinstance(device, torch.device) else resolve_device(device)


def resolve_device(choice: str | DeviceChoice) -> torch.device:
    choice = DeviceChoice(choice)
    if choice is DeviceChoice.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice is DeviceChoice.cuda and not torch.cuda.is_available():
        raise EmdaError("--device cuda: no CUDA GPU is available here (use --device cpu or auto)")
    return torch.device(choice.value)
