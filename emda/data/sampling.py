"""Random 2D training patches from the z-slices of a volume, with augmentation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from emda.data.normalization import IntensityRange
from emda.data.planes import PLANE_AXES
from emda.data.resample import resize_patch, window_size
from emda.errors import EmdaError
from emda.io.volume import Volume
from emda.methods.base import Batch


@dataclass(frozen=True)
class Augmentation:
    """What varies between two draws of the same patch.

    ``dihedral``: one of the 8 flips/90-degree rotations (valid for in-plane EM).
    ``intensity_jitter`` j: contrast x(1 +- j) and brightness +- j.
    ``noise`` n: additive Gaussian noise with a standard deviation ~ U(0, n).
    """

    dihedral: bool = True
    intensity_jitter: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        for name in ("intensity_jitter", "noise"):
            if not getattr(self, name) >= 0:
                raise EmdaError(f"--{name.replace('_', '-')} must be >= 0")

    @classmethod
    def none(cls) -> Augmentation:
        return cls(dihedral=False)

    def intensity(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.intensity_jitter > 0:
            j = self.intensity_jitter
            x = x * np.float32(1 + rng.uniform(-j, j)) + np.float32(rng.uniform(-j, j))
        if self.noise > 0:
            sd = rng.uniform(0, self.noise)
            x = x + rng.normal(0, sd, size=x.shape).astype(np.float32)
        return x


class PatchSampler:
    """Draws ``(B, 1, P, P)`` patches from the allowed z-slices of a volume.

    Patches are cut from random positions of random slices, normalised with
    ``intensity`` and put through ``augmentation``. Slices smaller than the patch
    are mirror-padded.

    ``planes``: the plane stacks patches come from, each patch from one of them with
    equal probability: ``("xy",)`` cuts (y, x) slices; ``"xz"`` and ``"yz"`` cut (z, x)
    and (z, y) planes of an isotropic volume, their z rows kept inside the allowed
    slices' range. ``guide``: a volume aligned with ``raw`` (e.g. a teacher's
    probabilities) whose window comes with each patch as ``Batch.guide``, flipped and
    rotated with it but never intensity-augmented. ``zoom``: the volume's pixel size
    over the working one (:mod:`emda.data.resample`); each patch is cut from a window
    of ``patch_size / zoom`` pixels and resampled to ``patch_size``.
    """

    def __init__(
        self,
        raw: Volume,
        intensity: IntensityRange,
        patch_size: int,
        labels: Volume | None = None,
        z_indices: Sequence[int] | None = None,
        augmentation: Augmentation | None = None,
        planes: Sequence[str] = ("xy",),
        guide: Volume | None = None,
        zoom: float = 1.0,
    ) -> None:
        self.raw = raw
        self.zoom = zoom
        self.window = window_size(patch_size, zoom)  # in the volume's own pixels
        self.labels = labels
        self.intensity = intensity
        self.patch_size = patch_size
        self.z_indices = np.asarray(z_indices if z_indices is not None else range(raw.shape[0]))
        self.augmentation = augmentation or Augmentation.none()
        if guide is not None and guide.shape != raw.shape:
            raise EmdaError(
                f"{guide.path}: shape {guide.shape} differs from {raw.path}'s {raw.shape}"
            )
        self.guide = guide
        unknown = set(planes) - set(PLANE_AXES)
        if unknown or not planes:
            raise EmdaError(f"planes {sorted(unknown)}: must be among {', '.join(PLANE_AXES)}")
        if set(planes) != {"xy"} and raw.shape[0] == 1:
            raise EmdaError(f"{raw.path}: a 2D image has no planes other than (y, x)")
        self.planes = tuple(planes)
        # off-axis planes: z rows between the first and the last allowed slice
        self.z_rows = (int(self.z_indices.min()), int(self.z_indices.max()) + 1)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        return _stack([self._patch(rng) for _ in range(batch_size)])

    def _window(self, rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple]:
        """A plane stack (as an axis order) and a patch window in that order."""
        p = self.window
        # one plane stack: no draw, so slices-only sampling repeats what it always drew
        only = len(self.planes) == 1
        plane = self.planes[0] if only else self.planes[int(rng.integers(len(self.planes)))]
        axes = PLANE_AXES[plane]
        if plane == "xy":
            _, height, width = self.raw.shape
            index = int(rng.choice(self.z_indices))
            r0, r1 = 0, height
        else:  # rows are z, restricted to the allowed slices
            index = int(rng.integers(self.raw.shape[axes[0]]))
            (r0, r1), width = self.z_rows, self.raw.shape[axes[2]]
        top = r0 + int(rng.integers(0, max(r1 - r0 - p, 0) + 1))
        left = int(rng.integers(0, max(width - p, 0) + 1))
        # the plane as a 1-thick slab: a lazy permuted array then reads the window only
        return axes, (slice(index, index + 1), slice(top, min(top + p, r1)), slice(left, left + p))

    def _patch(
        self, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        p, size = self.window, self.patch_size
        axes, window = self._window(rng)

        def cut(volume: Volume | None) -> np.ndarray | None:
            if volume is None:
                return None
            return _pad_to(volume.permuted(axes).read(*window)[0].astype(np.float32), p)

        x = _pad_to(self.intensity.apply(self.raw.permuted(axes).read(*window)[0]), p)
        y, guide = cut(self.labels), cut(self.guide)
        if p != size:  # to the working pixel size; labels stay a mask
            x = resize_patch(x, size)
            guide = None if guide is None else resize_patch(guide, size)
            y = None if y is None else (resize_patch(y, size) >= 0.5).astype(np.float32)
        if self.augmentation.dihedral:
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            x, y, guide = (None if a is None else _dihedral(a, k, flip) for a in (x, y, guide))
        x = self.augmentation.intensity(x, rng)
        return tuple(  # type: ignore[return-value]
            None if a is None else np.ascontiguousarray(a, dtype=np.float32) for a in (x, y, guide)
        )


class MixedSampler:
    """Patches from several labelled volumes, each patch from one drawn with equal
    probability (balanced, whatever their sizes), each volume with its own
    normalisation and pixel-size zoom (its :class:`PatchSampler`)."""

    def __init__(self, samplers: Sequence[PatchSampler]) -> None:
        if not samplers:
            raise ValueError("MixedSampler needs at least one sampler")
        self.samplers = list(samplers)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        if len(self.samplers) == 1:  # no draw: one source repeats what it always drew
            return self.samplers[0].sample(batch_size, rng)
        picks = rng.integers(len(self.samplers), size=batch_size)
        patches = [self.samplers[int(i)]._patch(rng) for i in picks]
        return _stack(patches)


def _stack(patches: list) -> Batch:
    def stacked(i: int) -> torch.Tensor | None:
        if patches[0][i] is None:
            return None
        return torch.from_numpy(np.stack([p[i] for p in patches])[:, None])

    return Batch(stacked(0), stacked(1), stacked(2))  # type: ignore[arg-type]


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
