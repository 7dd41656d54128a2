"""Per-volume intensity normalisation from robust percentiles.

Each volume is mapped so that its ``lower``/``upper`` percentiles land on 0 and
1. The percentiles (and the source volume's range) are stored in the checkpoint
so ``emda predict`` normalises a new volume the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from emda.errors import EmdaError
from emda.io.volume import Volume

_MAX_SAMPLES = 8_000_000  # voxels read to estimate percentiles; enough for 0.1 % precision


class NormalizeMode(str, Enum):
    volume = "volume"  # percentiles of the volume being predicted (default)
    source = "source"  # the training source's range, stored in the checkpoint


@dataclass(frozen=True)
class IntensityRange:
    low: float
    high: float

    def apply(self, block: np.ndarray) -> np.ndarray:
        scale = self.high - self.low if self.high > self.low else 1.0
        return ((block.astype(np.float32) - np.float32(self.low)) / np.float32(scale)).astype(
            np.float32, copy=False
        )


@dataclass(frozen=True)
class Normalization:
    lower_percentile: float = 1.0
    upper_percentile: float = 99.0

    def __post_init__(self) -> None:
        if not 0 <= self.lower_percentile < self.upper_percentile <= 100:
            raise EmdaError(
                "normalisation percentiles must satisfy 0 <= lower < upper <= 100, got "
                f"{self.lower_percentile}, {self.upper_percentile}"
            )

    def fit(self, volume: Volume) -> IntensityRange:
        sample = _subsample(volume)
        finite = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
        if finite.size == 0:
            raise EmdaError(f"{volume.path}: no finite intensity values")
        low, high = np.percentile(finite, [self.lower_percentile, self.upper_percentile])
        if high <= low:  # (nearly) constant image: fall back to the full range
            low, high = float(finite.min()), float(finite.max())
        return IntensityRange(float(low), float(high))


def _subsample(volume: Volume) -> np.ndarray:
    """An evenly strided sample of at most ~_MAX_SAMPLES voxels, read block-wise."""
    z, y, x = volume.shape
    if z * y * x <= _MAX_SAMPLES:
        return volume.read().ravel()
    n_slices = min(z, 32)
    per_slice = _MAX_SAMPLES // n_slices
    stride = max(1, int(np.ceil(np.sqrt(y * x / per_slice))))
    zs = np.linspace(0, z - 1, n_slices).round().astype(int)
    return np.concatenate(
        [
            volume.read(int(k), slice(None, None, stride), slice(None, None, stride)).ravel()
            for k in np.unique(zs)
        ]
    )
