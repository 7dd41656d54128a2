"""The settings of one training run (``emda adapt`` and ``emda finetune``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from emda.data.sampling import Augmentation
from emda.errors import EmdaError
from emda.precision import Precision


class LrSchedule(str, Enum):
    cosine = "cosine"  # decay to 1 % of the initial rate over the iteration budget
    constant = "constant"


class TargetPlanes(str, Enum):
    xy = "xy"  # (y, x) slices only
    ortho = "ortho"  # all three plane stacks (isotropic volumes such as FIB-SEM)


FINETUNE_ITERATIONS, FINETUNE_LR = 500, 1e-4

#: the plane stacks each ``--target-planes`` choice samples
TARGET_PLANES = {"xy": ("xy",), "ortho": ("xy", "xz", "yz")}


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
    noise: float = 0.0
    amplitude_mix: float = 0.0  # see emda.data.style; needs target patches
    seg_loss: str = "bce_dice"
    checkpoint_every: int = 250
    #: the network's arithmetic (emda.precision): auto, float32, bfloat16 or float16
    precision: str = "auto"
    #: plane stacks of the target that target patches come from: "xy" or "ortho" (all
    #: three, for isotropic volumes such as FIB-SEM)
    target_planes: str = "xy"
    #: the last fraction of the iterations whose weights are averaged into the saved
    #: model (see emda.training.averaging); 0 saves the last iteration's weights
    average_weights: float = 0.0

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
        if not 0 <= self.average_weights <= 1:
            raise EmdaError("--average-weights must be in [0, 1]")
        if self.precision not in (known := [p.value for p in Precision]):
            raise EmdaError(f"--precision must be one of {', '.join(known)}")
        if self.target_planes not in TARGET_PLANES:
            raise EmdaError(f"--target-planes must be one of {', '.join(TARGET_PLANES)}")
        self.augmentation()  # validates the augmentation settings

    @classmethod
    def finetuning(cls, **settings) -> TrainConfig:
        """``emda finetune``'s defaults: a shorter run at a tenth of the learning rate, so
        the few target labels refine the adapted model rather than replace it."""
        return cls(**{"iterations": FINETUNE_ITERATIONS, "lr": FINETUNE_LR, **settings})

    def augmentation(self) -> Augmentation:
        return Augmentation(self.augment, self.intensity_jitter, self.noise)
