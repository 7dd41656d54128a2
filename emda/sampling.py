"""Random 2D training patches from the z-slices of a volume, with augmentation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from emda.method import Batch
from emda.normalization import IntensityRange
from emda.volume import Volume


class PatchSampler:
    """Draws ``(B, 1, P, P)`` patches from the allowed z-slices of a volume.

    Patches are cut from random positions of random slices, normalised with
    ``intensity``, and (if ``augment``) put through one of the 8 dihedral
    transforms (flips and 90-degree rotations, valid for in-plane EM) and an
    optional random contrast/brightness jitter. Slices smaller than the patch
    are mirror-padded.
    """

    def __init__(
        self,
        raw: Volume,
        intensity: IntensityRange,
        patch_size: int,
        labels: Volume | None = None,
        z_indices: Sequence[int] | None = None,
        augment: bool = True,
        intensity_jitter: float = 0.0,
    ) -> None:
        self.raw = raw
        self.labels = labels
        self.intensity = intensity
        self.patch_size = patch_size
        self.z_indices = np.asarray(z_indices if z_indices is not None else range(raw.shape[0]))
        self.augment = augment
        self.intensity_jitter = intensity_jitter

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
        if self.augment:
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            x = _dihedral(x, k, flip)
            y = None if y is None else _dihedral(y, k, flip)
        if self.intensity_jitter > 0:
            j = self.intensity_jitter
            x = x * np.float32(1 + rng.uniform(-j, j)) + np.float32(rng.uniform(-j, j))
        return np.ascontiguousarray(x, dtype=np.float32), (
            None if y is None else np.ascontiguousarray(y)
        )


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
