"""Refuse data that would make a result silently wrong, naming the file and the place.

Every check reads at most one slice at a time, so it works on volumes of any size.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import numpy as np

from emda.errors import EmdaError

log = logging.getLogger("emda")

COMPLETE_ATTR = "emda_complete"  # False on an output emda has not finished writing


def check_dtype(dtype: np.dtype, path: str) -> None:
    """Only real numbers (and booleans) are images, labels or probabilities."""
    if np.dtype(dtype).kind not in "biuf":
        raise EmdaError(f"{path}: values of type {np.dtype(dtype)} are not an image (expected "
                        "real numbers: integers or floats)")  # fmt: skip


def first_nonfinite(block: np.ndarray) -> int | None:
    """The first z of a (z, y, x) block holding NaN or Inf, or None."""
    if block.dtype.kind != "f":
        return None
    bad = ~np.isfinite(block.reshape(block.shape[0], -1)).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else None


def check_finite(volume, zs: Iterable[int] | None = None) -> None:
    """Refuse a float volume holding NaN or Inf on the slices ``zs`` (default all)."""
    if volume.dtype.kind != "f":
        return
    for z in range(volume.shape[0]) if zs is None else zs:
        if first_nonfinite(volume.read(slice(z, z + 1))) is not None:
            raise EmdaError(f"{volume.path}: slice z={z} contains NaN or Inf values")


def check_voxel_size(voxel_size, path: str) -> None:
    """Metadata read from a file must be usable: three positive, finite sizes."""
    if voxel_size is None:
        return
    if len(voxel_size) != 3 or not all(math.isfinite(v) and v > 0 for v in voxel_size):
        raise EmdaError(f"{path}: the file's voxel size {tuple(voxel_size)} is not three "
                        "positive numbers; give the right one with --voxel-size")  # fmt: skip


def check_complete(volume) -> None:
    """Refuse an output emda has not finished writing (its unwritten slices read as 0)."""
    attrs = getattr(volume.array, "attrs", None)
    if attrs is not None and dict(attrs).get(COMPLETE_ATTR) is False:
        raise EmdaError(f"{volume.path}: is an unfinished output of an interrupted command; "
                        "finish it with --resume first")  # fmt: skip


def warn_missing_chunks(volume) -> None:
    """A zarr input with chunks missing on disk reads them as its fill value: say so."""
    array = volume.array
    try:
        stored, total = int(array.nchunks_initialized), int(array.nchunks)
    except (AttributeError, TypeError, ValueError, OSError):
        return
    if stored < total:
        log.warning("%s: %d of its %d chunks are missing on disk and read as %s",
                    volume.path, total - stored, total, array.fill_value)  # fmt: skip


def check_probabilities(block: np.ndarray, source: str) -> None:
    """A float prediction is probabilities in [0, 1], not logits or labels."""
    if block.dtype.kind != "f" or not block.size:
        return
    if first_nonfinite(block.reshape(-1, *block.shape[-2:])) is not None:
        raise EmdaError(f"{source}: prediction contains NaN or Inf values")
    if block.min() < 0 or block.max() > 1:
        raise EmdaError(f"{source}: values outside [0, 1]; expected probabilities, not logits "
                        "or labels")  # fmt: skip


def check_state_dict(state: dict, path: str) -> None:
    """A checkpoint whose weights or batch-norm statistics are not finite predicts zeros."""
    for name, tensor in state.items():
        floating = hasattr(tensor, "is_floating_point") and tensor.is_floating_point()
        if floating and not bool(tensor.isfinite().all()):
            raise EmdaError(f"{path}: weights '{name}' hold NaN or Inf; the model is "
                                "broken (retrain, or recalibrate on finite data)")  # fmt: skip
