"""Reading NGFF (OME-Zarr) images: axes, units and the spatial (z, y, x) view.

An NGFF image may have time and channel axes before its space axes (bioformats2raw and
most converters write t, c, z, y, x even for one channel at one time point). emda works
on one (z, y, x) volume: singleton time and channel axes are dropped, a channel is
chosen with ``channel`` when there are several, and several time points are refused.
Scales are converted to nm with each axis's own unit (:mod:`emda.io.units`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emda.errors import EmdaError
from emda.io.units import nm_per

SPACE = ("z", "y", "x")


def axes_of(axes: list | None, ndim: int) -> list[dict]:
    """The axes as dicts with name and type; without metadata (NGFF before 0.4) the last
    three are z, y, x and any before them are named by position."""
    if not axes:
        names = [f"dim{i}" for i in range(max(0, ndim - 3))] + list(SPACE[-min(3, ndim) :])
        return [{"name": n, "type": "space" if n in SPACE else ""} for n in names]
    found = []
    for axis in axes:
        axis = axis if isinstance(axis, dict) else {"name": str(axis)}
        name = str(axis.get("name", ""))
        kind = axis.get("type") or ("space" if name in SPACE else "channel" if name == "c"
                                    else "time" if name == "t" else "")  # fmt: skip
        found.append({**axis, "name": name, "type": kind})
    return found


def spatial_voxel_size(scale: list, axes: list[dict], where: object) -> tuple | None:
    """(z, y, x) in nm from a dataset's scale and the axes' units; a 2D image's z is 1."""
    if len(scale) != len(axes):
        return None
    sizes = [float(s) * nm_per(a.get("unit"), where)
             for s, a in zip(scale, axes) if a["type"] == "space"]  # fmt: skip
    if not 2 <= len(sizes) <= 3:
        return None
    return tuple([1.0] * (3 - len(sizes)) + sizes)


def select_spatial(
    array: Any, axes: list[dict], channel: int | None, where: object, option: str = "--channel"
) -> Any:
    """``array`` as a (z, y, x) or (y, x) array: non-space axes fixed to one index;
    ``option`` names the command's channel option in errors."""
    if len(axes) != array.ndim:
        raise EmdaError(f"{where}: metadata lists {len(axes)} axes for an array of "
                        f"{array.ndim} dimensions")  # fmt: skip
    fixed: dict[int, int] = {}
    for i, axis in enumerate(axes):
        if axis["type"] == "space":
            continue
        size = int(array.shape[i])
        if axis["type"] == "channel" and size > 1:
            if channel is None:
                raise EmdaError(f"{where}: has {size} channels (axis {axis['name']!r}); "
                                f"choose one with {option} N")  # fmt: skip
            if not 0 <= channel < size:
                raise EmdaError(f"{option} {channel}: {where} has channels 0..{size - 1}")
            fixed[i] = channel
        elif size > 1:
            raise EmdaError(f"{where}: axis {axis['name']!r} has {size} entries; emda reads "
                            "one (z, y, x) volume (write one time point per image)")  # fmt: skip
        else:
            fixed[i] = 0
    if channel is not None and not any(a["type"] == "channel" for a in axes):
        raise EmdaError(f"{option} {channel}: {where} has no channel axis")
    return array if not fixed else AxisSelection(array, fixed)


class AxisSelection:
    """An N-D array seen without the axes fixed to one index; reads only what is asked."""

    def __init__(self, array: Any, fixed: dict[int, int]) -> None:
        self.array, self.fixed = array, dict(fixed)
        self.free = [i for i in range(array.ndim) if i not in fixed]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(self.array.shape[i]) for i in self.free)

    @property
    def ndim(self) -> int:
        return len(self.free)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    def __getitem__(self, index) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        index = index + (slice(None),) * (self.ndim - len(index))
        full: list = []
        given = iter(index)
        for i in range(self.array.ndim):
            full.append(self.fixed[i] if i in self.fixed else next(given))
        return np.asarray(self.array[tuple(full)])

    def __getattr__(self, name: str) -> Any:  # chunks, fill value, nchunks: the array's
        return getattr(self.array, name)
