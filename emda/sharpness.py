"""How sharp a volume looks, and blurring the sharper of two to the other's level.

Microscopes and protocols differ in sharpness and noise as much as in grey values:
ssTEM sections of the Drosophila VNC have a mean gradient magnitude of 0.111 (image
normalised to its 1st/99th percentiles) where EPFL's FIB-SEM has 0.089
(``benchmarks/domain_gap_probe.py``). Blurring the sharper volume in-plane until its
gradient level equals the other's removes that difference with no free parameter and
without labels (``emda smooth --like``). Whether that helps depends on the pair: it did
not EPFL -> VNC, where the gap is the mitochondria's structure (benchmarks/FINDINGS.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from emda.errors import EmdaError
from emda.normalization import Normalization
from emda.volume import Volume, VolumeWriter

SAMPLE_SLICES = 16  # slices measured per volume, evenly spread over the chosen range
SAMPLE_EDGE = 2048  # centre crop of each measured slice, so huge slices stay cheap
MAX_SIGMA = 16.0  # pixels; a volume that needs more is not "a bit sharper"
ROW_BLOCK = 2048  # rows blurred at a time when writing, so memory holds one block


@lru_cache(maxsize=32)
def gaussian_taps(sigma: float) -> np.ndarray:
    """Normalised 1D Gaussian kernel of radius ceil(3 sigma)."""
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return taps / taps.sum()  # float64, as the training blur (emda.sampling) has always used


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable 2D Gaussian blur of a (y, x) image with mirrored borders (float32)."""
    image = np.asarray(image, dtype=np.float32)
    if sigma <= 0:
        return image.copy()
    taps = gaussian_taps(float(sigma)).astype(np.float32)  # float32 sums, float32 image
    r = len(taps) // 2
    for axis in (0, 1):
        n = image.shape[axis]
        # mirror as often as a tiny image needs (np.pad 'symmetric' repeats the reflection)
        padded = np.pad(image, [(r, r) if a == axis else (0, 0) for a in (0, 1)], "symmetric")
        out = np.zeros_like(image)
        for k, w in enumerate(taps):
            out += w * np.take(padded, np.arange(k, k + n), axis=axis)
        image = out
    return image


def _sample(volume: Volume, slices: Sequence[int]) -> list[np.ndarray]:
    picks = np.unique(np.linspace(0, len(slices) - 1, min(SAMPLE_SLICES, len(slices))).round())
    _, ny, nx = volume.shape
    y0, x0 = max(0, (ny - SAMPLE_EDGE) // 2), max(0, (nx - SAMPLE_EDGE) // 2)
    window = (slice(y0, y0 + SAMPLE_EDGE), slice(x0, x0 + SAMPLE_EDGE))
    return [np.asarray(volume.read(slices[int(i)], *window), np.float32) for i in picks]


def _level(images: list[np.ndarray], sigma: float, normalization: Normalization) -> float:
    """Mean gradient magnitude after blurring and normalising the sample as emda would."""
    blurred = [blur(im, sigma) for im in images]
    values = np.concatenate([b.ravel() for b in blurred])
    low, high = np.percentile(
        values, [normalization.lower_percentile, normalization.upper_percentile]
    )
    scale = float(high - low) if high > low else 1.0
    means = []
    for b in blurred:
        gy, gx = np.gradient(b / scale) if min(b.shape) > 1 else (np.zeros_like(b),) * 2
        means.append(float(np.hypot(gy, gx).mean()))
    return float(np.mean(means))


def gradient_level(
    volume: Volume, slices: Sequence[int], sigma: float = 0.0,
    normalization: Normalization = Normalization(),
) -> float:  # fmt: skip
    """Label-free sharpness: mean gradient magnitude of the normalised slices."""
    return _level(_sample(volume, slices), sigma, normalization)


def matching_sigma(
    volume: Volume, slices: Sequence[int], level: float, tolerance: float = 0.005,
    normalization: Normalization = Normalization(),
) -> float:  # fmt: skip
    """The in-plane blur (pixels) that brings ``volume``'s gradient level down to
    ``level``; 0 when it is already at or below it. Bisection: blurring only lowers it."""
    images = _sample(volume, slices)
    if _level(images, 0.0, normalization) <= level:
        return 0.0
    low, high = 0.0, 0.5
    while _level(images, high, normalization) > level:
        low, high = high, 2 * high
        if high > MAX_SIGMA:
            raise EmdaError(
                f"{volume.path}: still sharper than the reference after a {MAX_SIGMA:g}-pixel "
                "blur; these volumes differ by more than sharpness"
            )
    while high - low > tolerance:
        mid = (low + high) / 2
        low, high = (mid, high) if _level(images, mid, normalization) > level else (low, mid)
    return round((low + high) / 2, 4)


def smooth_volume(
    volume: Volume, sigma: float, writer: VolumeWriter,
    progress: Callable[[int, int], None] | None = None,
) -> None:  # fmt: skip
    """Blur every slice of ``volume`` in-plane into ``writer`` (same dtype, rounded and
    clipped for integers), one block of rows at a time."""
    nz, ny, nx = volume.shape
    halo = len(gaussian_taps(sigma)) // 2 if sigma > 0 else 0
    dtype = np.dtype(volume.dtype)
    for z in range(nz):
        out = np.empty((ny, nx), dtype)
        for y0 in range(0, ny, ROW_BLOCK):
            y1 = min(ny, y0 + ROW_BLOCK)
            a, b = max(0, y0 - halo), min(ny, y1 + halo)
            block = blur(volume.read(z, slice(a, b)), sigma)[y0 - a : y0 - a + (y1 - y0)]
            if dtype.kind in "iub":
                info = np.iinfo(dtype) if dtype.kind != "b" else None
                block = np.rint(block)
                block = np.clip(block, info.min, info.max) if info else block > 0.5
            out[y0:y1] = block.astype(dtype, copy=False)
        writer.write(z, out[None])
        if progress:
            progress(z + 1, nz)
