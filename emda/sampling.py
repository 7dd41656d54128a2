"""Random 2D training patches from the z-slices of a volume, with augmentation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from emda.errors import EmdaError
from emda.method import Batch
from emda.normalization import IntensityRange
from emda.sharpness import gaussian_taps
from emda.volume import Volume

SHARPNESS_SIGMA = 1.5  # pixels; the blur that ``sharpness`` mixes in or subtracts
# ``smooth_objects``: the blur of an object's inside (3 px removes a texture of period
# 8 px, e.g. VNC's cristae at 4.6 nm/px, to 6 % of its amplitude) and the width of the
# soft erosion that keeps the blur away from the object's outline
OBJECT_SIGMA = 3.0
OUTLINE_SIGMA = 2.0


@dataclass(frozen=True)
class Augmentation:
    """What varies between two draws of the same patch.

    ``dihedral``: one of the 8 flips/90-degree rotations (valid for in-plane EM).
    ``intensity_jitter`` j: contrast x(1 +- j) and brightness +- j.
    ``sharpness`` s: x + a (x - G(x)) with a ~ U(-min(s, 1), s) and G a Gaussian blur,
    so a < 0 blurs (a = -1 is G(x)) and a > 0 sharpens; microscopes and protocols
    differ as much in resolution and sharpness as in grey values.
    ``noise`` n: additive Gaussian noise with a standard deviation ~ U(0, n).
    ``smooth_objects`` A: inside the labelled objects of a labelled patch only,
    x + a w (G(x) - x) with a ~ U(0, A) and w the labels softly eroded, so that the
    outline stays sharp and the texture inside (cristae) stops being a cue. Measured
    harmful VNC -> EPFL: the network learns the blur itself (benchmarks/FINDINGS.md).
    """

    dihedral: bool = True
    intensity_jitter: float = 0.0
    sharpness: float = 0.0
    noise: float = 0.0
    smooth_objects: float = 0.0

    def __post_init__(self) -> None:
        for name in ("intensity_jitter", "sharpness", "noise", "smooth_objects"):
            if not getattr(self, name) >= 0:
                raise EmdaError(f"--{name.replace('_', '-')} must be >= 0")

    @classmethod
    def none(cls) -> Augmentation:
        return cls(dihedral=False)

    def intensity(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.sharpness > 0:
            amount = rng.uniform(-min(self.sharpness, 1.0), self.sharpness)
            x = x + np.float32(amount) * (x - _blur(x, SHARPNESS_SIGMA))
        if self.intensity_jitter > 0:
            j = self.intensity_jitter
            x = x * np.float32(1 + rng.uniform(-j, j)) + np.float32(rng.uniform(-j, j))
        if self.noise > 0:
            sd = rng.uniform(0, self.noise)
            x = x + rng.normal(0, sd, size=x.shape).astype(np.float32)
        return x

    def objects(self, x: np.ndarray, y: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        """``x`` with the inside of the objects labelled in ``y`` blurred (``smooth_objects``)."""
        if self.smooth_objects <= 0 or y is None or not y.any():
            return x
        amount = np.float32(rng.uniform(0, self.smooth_objects))
        inside = np.clip(2 * _blur(y, OUTLINE_SIGMA) - 1, 0, 1)  # 0 on the outline, 1 deep in
        return x + amount * inside * (_blur(x, OBJECT_SIGMA) - x)


class PatchSampler:
    """Draws ``(B, 1, P, P)`` patches from the allowed z-slices of a volume.

    Patches are cut from random positions of random slices, normalised with
    ``intensity`` and put through ``augmentation``. Slices smaller than the patch
    are mirror-padded.
    """

    def __init__(
        self,
        raw: Volume,
        intensity: IntensityRange,
        patch_size: int,
        labels: Volume | None = None,
        z_indices: Sequence[int] | None = None,
        augmentation: Augmentation | None = None,
    ) -> None:
        self.raw = raw
        self.labels = labels
        self.intensity = intensity
        self.patch_size = patch_size
        self.z_indices = np.asarray(z_indices if z_indices is not None else range(raw.shape[0]))
        self.augmentation = augmentation or Augmentation.none()

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        xs, ys = [], []
        for _ in range(batch_size):
            x, y = self._patch(rng)
            xs.append(x)
            ys.append(y)
        x = torch.from_numpy(np.stack(xs)[:, None])
        y = None if self.labels is None else torch.from_numpy(np.stack(ys)[:, None])
        return Batch(x, y)

    def _patch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        p = self.patch_size
        _, height, width = self.raw.shape
        z = int(rng.choice(self.z_indices))
        y0 = int(rng.integers(0, max(height - p, 0) + 1))
        x0 = int(rng.integers(0, max(width - p, 0) + 1))
        window = (z, slice(y0, y0 + p), slice(x0, x0 + p))
        x = _pad_to(self.intensity.apply(self.raw.read(*window)), p)
        y = None
        if self.labels is not None:
            y = _pad_to(self.labels.read(*window).astype(np.float32), p)
        if self.augmentation.dihedral:
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            x = _dihedral(x, k, flip)
            y = None if y is None else _dihedral(y, k, flip)
        x = self.augmentation.objects(x, y, rng)
        x = self.augmentation.intensity(x, rng)
        return np.ascontiguousarray(x, dtype=np.float32), (
            None if y is None else np.ascontiguousarray(y)
        )


@lru_cache(maxsize=8)
def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) Gaussian blur with mirrored borders, so that blur(x) = B @ x @ B.T."""
    taps = gaussian_taps(sigma)
    radius = len(taps) // 2
    b = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        for t, w in zip(range(i - radius, i + radius + 1), taps):
            j = -t - 1 if t < 0 else (2 * n - t - 1 if t >= n else t)  # symmetric padding
            b[i, min(max(j, 0), n - 1)] += w
    return b.astype(np.float32)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return _blur_matrix(x.shape[0], sigma) @ x @ _blur_matrix(x.shape[1], sigma).T


def _dihedral(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, k)
    return a[:, ::-1] if flip else a


def _pad_to(a: np.ndarray, size: int) -> np.ndarray:
    pad = [(0, max(0, size - n)) for n in a.shape]
    if not any(after for _, after in pad):
        return a
    return np.pad(a, pad, mode="symmetric")


def choose_slices(n_slices: int, fraction: float, seed: int) -> list[int]:
    """The z-slices whose labels a finetuning run may use.

    ``max(1, round(fraction * n_slices))`` whole slices, drawn by a permutation
    seeded with ``seed``: the same seed and fraction always pick the same slices,
    and a larger fraction with the same seed keeps the smaller one's slices.
    """
    k = min(n_slices, max(1, round(fraction * n_slices)))
    order = np.random.default_rng(seed).permutation(n_slices)
    return sorted(int(i) for i in order[:k])
