"""Read and write 3D volumes (z, y, x): multi-page TIFF and zarr (v2 and v3 stores).

Zarr arrays stay on disk and are read a block at a time; TIFF stacks are read
whole (they are compressed page by page, so there is nothing to slice lazily).
A 2D image is a volume with z = 1. Addresses look like ``raw.tif``,
``volume.zarr`` (an array at the root), ``volume.zarr/raw`` or
``volume.zarr`` with ``key="raw"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emda.errors import EmdaError
from emda.io.ngff_read import axes_of, select_spatial, spatial_voxel_size
from emda.safety.validate import check_dtype, check_voxel_size, warn_missing_chunks

TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIXES = (".zarr",)
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
MRC_SUFFIXES = (".mrc", ".rec", ".st", ".ali", ".map")
VoxelSize = tuple[float, float, float]  # (z, y, x) in nm


@dataclass
class Volume:
    """A (z, y, x) array that may live on disk; index it like a numpy array."""

    array: Any  # numpy.ndarray or zarr.Array with 2 or 3 dimensions
    path: str
    voxel_size: VoxelSize | None = None
    #: applied to every block read (e.g. label values -> {0, 1} mask)
    transform: Callable[[np.ndarray], np.ndarray] | None = None
    #: the file or zarr array directory the data is read from (what an output must not be)
    location: str | None = None

    def __post_init__(self) -> None:
        check_dtype(self.array.dtype, self.path)
        if self.array.ndim not in (2, 3):
            raise EmdaError(
                f"{self.path}: expected a 2D image or 3D volume (z, y, x), "
                f"got {self.array.ndim} dimensions with shape {tuple(self.array.shape)}"
            )
        if 0 in self.array.shape:
            raise EmdaError(f"{self.path}: volume is empty (shape {tuple(self.array.shape)})")

    @property
    def shape(self) -> tuple[int, int, int]:
        s = tuple(int(n) for n in self.array.shape)
        return (1, *s) if len(s) == 2 else s  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def lazy(self) -> bool:
        """Read block by block from disk (zarr, HDF5, a memory-mapped MRC file)."""
        return not isinstance(self.array, np.ndarray) or isinstance(self.array, np.memmap)

    def attributes(self) -> dict:
        """The array's attributes (zarr, HDF5) as plain values; in HDF5, where emda keeps
        its structured attributes as JSON text, decoded."""
        attrs = dict(getattr(self.array, "attrs", None) or {})
        return {k: _plain_attribute(v) for k, v in attrs.items()}

    def read(self, z: int | slice = slice(None), y: slice = slice(None), x: slice = slice(None)):
        """Read a block as a numpy array; ``z`` an int gives a 2D slice."""
        try:
            if self.array.ndim == 2:
                block = np.asarray(self.array[y, x])[None][z]
            else:
                block = np.asarray(self.array[z, y, x])
        except (EmdaError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # a corrupt chunk fails inside zarr's codecs in many ways
            where = f" at z={z}" if isinstance(z, int) else (
                f" in z {z.start or 0}:{z.stop}" if z.stop is not None else "")  # fmt: skip
            raise EmdaError(f"{self.path}: unreadable data{where} ({_short(exc)})") from None
        return block if self.transform is None else self.transform(block)

    def __getitem__(self, index) -> np.ndarray:
        if not isinstance(index, tuple):
            index = (index,)
        return self.read(*index)

    def permuted(self, axes: tuple[int, int, int]) -> Volume:
        """The volume with its axes reordered (``(1, 0, 2)``: slices along y, each a
        (z, x) plane), read lazily; voxel sizes follow their axes."""
        if tuple(axes) == (0, 1, 2):
            return self
        if self.array.ndim != 3:
            raise EmdaError(f"{self.path}: a 2D image has no planes other than (y, x)")
        voxel = None if self.voxel_size is None else tuple(self.voxel_size[a] for a in axes)
        return Volume(permute(self.array, axes), self.path, voxel, self.transform,  # type: ignore[arg-type]
                      self.location)  # fmt: skip


class PermutedArray:
    """A 3D array (zarr or numpy) seen with its axes reordered; indexing reads only the
    region asked for, so a transposed zarr array stays on disk."""

    ndim = 3
    #: a single plane is read as part of a slab of this many, kept for the next planes: a
    #: (z, x) plane of a volume chunked by z-slices would otherwise decompress every chunk
    SLAB = 32

    def __init__(self, array: Any, axes: tuple[int, int, int]) -> None:
        self.array, self.axes = array, tuple(axes)
        self._slab: tuple[tuple, np.ndarray] | None = None  # (what was read, the data)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[a] for a in self.axes)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    def __getitem__(self, index) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        index = index + (slice(None),) * (3 - len(index))
        if isinstance(index[0], (int, np.integer)):
            plane = int(index[0]) % self.shape[0]
            start = plane - plane % self.SLAB
            key = (start, *(_hashable(i) for i in index[1:]))
            slab = self._slab  # one read of the attribute: threads may replace it
            if slab is None or slab[0] != key:
                stop = min(start + self.SLAB, self.shape[0])
                slab = (key, self._read((slice(start, stop), *index[1:])))
                self._slab = slab
            return slab[1][plane - start]
        return self._read(index)

    def _read(self, index: tuple) -> np.ndarray:
        source: list = [slice(None)] * 3
        for view_axis, axis in enumerate(self.axes):
            source[axis] = index[view_axis]
        block = np.asarray(self.array[tuple(source)])
        # the block's axes are the kept source axes in source order; put them in view order
        kept = [a for a in self.axes if isinstance(source[a], slice)]
        order = sorted(kept)
        return block.transpose([order.index(a) for a in kept])


def _hashable(index):
    return (index.start, index.stop, index.step) if isinstance(index, slice) else index


def permute(array: Any, axes: tuple[int, int, int]) -> Any:
    """``array`` seen with ``axes`` reordered: a numpy view, or a lazy :class:`PermutedArray`."""
    if isinstance(array, np.ndarray):
        return array.transpose(axes)
    return PermutedArray(array, axes)


def split_address(path: str | os.PathLike, key: str | None = None) -> tuple[Path, str | None]:
    """``a/b.zarr/raw/s0`` -> (``a/b.zarr``, ``raw/s0``); TIFF paths pass through."""
    parts = Path(path).parts
    for i, part in enumerate(parts):
        if part.endswith(ZARR_SUFFIXES) or part.lower().endswith(HDF5_SUFFIXES):
            inner = "/".join(parts[i + 1 :]) or None
            keys = [k for k in (inner, key) if k]
            return Path(*parts[: i + 1]), "/".join(keys) or None
    return Path(path), key


def is_zarr(path: str | os.PathLike) -> bool:
    store, _ = split_address(path)
    return store.name.endswith(ZARR_SUFFIXES)


def open_volume(
    path: str | os.PathLike,
    key: str | None = None,
    voxel_size: VoxelSize | None = None,
    channel: int | None = None,
    channel_option: str = "--channel",
) -> Volume:
    """Open a volume for reading; ``voxel_size`` (nm) overrides the file's metadata;
    ``channel`` picks one channel of a multichannel OME-Zarr image (``channel_option``:
    the option that gave it, for errors)."""
    store, key = split_address(path, key)
    if is_zarr(store):
        volume = _open_zarr(store, key, path, channel, channel_option)
    else:
        from emda.io import readers  # TIFF, HDF5, MRC

        if channel is not None:
            raise EmdaError(f"{channel_option} {channel}: applies to OME-Zarr images, not {path}")
        volume = readers.open_file(store, key, path)
    if voxel_size is not None:
        volume.voxel_size = tuple(float(v) for v in voxel_size)  # type: ignore[assignment]
    check_voxel_size(volume.voxel_size, str(path))
    if volume.lazy:
        warn_missing_chunks(volume)
    return volume


def _open_zarr(
    store: Path, key: str | None, address, channel: int | None = None, option: str = "--channel"
) -> Volume:
    import zarr

    if not store.exists():
        raise EmdaError(f"{store}: no such zarr store")
    try:
        node = zarr.open(str(store), mode="r", path=key) if key else zarr.open(str(store), mode="r")
    except Exception as exc:
        where = f"key '{key}' in {store}" if key else str(store)
        raise EmdaError(f"{where}: no zarr array or group there ({_short(exc)})") from None
    voxel, inner, axes = None, key, None
    if isinstance(node, zarr.Group):
        node, voxel, dataset, axes = _array_in_group(node, address)
        inner = "/".join(k for k in (key, dataset) if k)
    if axes is not None or node.ndim > 3:
        node = select_spatial(node, axes or axes_of(None, node.ndim), channel, address, option)
    elif channel is not None:
        raise EmdaError(f"{option} {channel}: {address} has no channel axis")
    voxel = _zarr_voxel_size(node.attrs) or voxel
    return Volume(node, str(address), voxel, location=str(store / inner if inner else store))


def _array_in_group(group, address):
    """A multiscale (OME-Zarr) group opens at full resolution, with its voxel size and
    axes; other groups need a key."""
    ms = _multiscales(group.attrs)
    if ms:
        try:
            first = ms[0]["datasets"][0]
            array = group[first["path"]]
            axes = axes_of(ms[0].get("axes"), array.ndim)
            return array, _scale_from_transforms(first, axes, address), first["path"], axes
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise EmdaError(f"{address}: OME-Zarr metadata names a dataset that is not there "
                            f"({_short(exc)})") from None  # fmt: skip
    arrays = sorted(name for name, _ in group.arrays())
    raise EmdaError(
        f"{address}: is a zarr group, not an array; name one as {address}/NAME or with --key "
        f"(arrays here: {', '.join(arrays) or 'none'})"
    )


def _multiscales(attrs) -> list:
    attrs = dict(attrs)
    return attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales") or []


def _scale_from_transforms(dataset: dict, axes: list[dict], address) -> VoxelSize | None:
    for t in dataset.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            return spatial_voxel_size(list(t["scale"]), axes, address)
    return None


def _zarr_voxel_size(attrs) -> VoxelSize | None:
    value = dict(attrs).get("voxel_size")
    if isinstance(value, list | tuple) and len(value) == 3:
        return tuple(float(v) for v in value)  # type: ignore[return-value]
    return None


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# --- labels -----------------------------------------------------------------


def to_foreground(block: np.ndarray, source: str, foreground: float | None = None) -> np.ndarray:
    """Binary mask (uint8 {0, 1}) from a label block.

    {0, 1} and {0, 255} are masks as they are; anything else needs ``foreground``.
    """
    if foreground is not None:
        return (block == foreground).astype(np.uint8)
    values = np.unique(block)
    if np.all(np.isin(values, (0, 1))):
        return block.astype(np.uint8, copy=False)
    if np.all(np.isin(values, (0, 255))):
        return (block > 0).astype(np.uint8)
    shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
    raise EmdaError(
        f"{source}: labels hold values {{{shown}}}; expected a mask of {{0, 1}} or {{0, 255}}. "
        f"Name the foreground with --foreground VALUE"
    )


def read_labels(
    path: str | os.PathLike, key: str | None = None, foreground: float | None = None
) -> Volume:
    """Open a label volume as a {0, 1} mask.

    TIFF labels are converted in memory. Zarr labels stay on disk: every slice is
    checked once (one slice in memory at a time) and converted as it is read.
    """
    volume = open_volume(path, key)
    if not volume.lazy:
        return Volume(
            to_foreground(volume.read(), volume.path, foreground), volume.path, volume.voxel_size
        )
    for z in range(volume.shape[0]):
        to_foreground(volume.read(z), volume.path, foreground)
    return Volume(
        volume.array,
        volume.path,
        volume.voxel_size,
        transform=lambda block: to_foreground(block, volume.path, foreground),
    )


def parse_voxel_size(text: str | None, option: str = "--voxel-size") -> VoxelSize | None:
    """``"50,4.6,4.6"`` (z, y, x in nm) -> tuple; a single number means isotropic."""
    if text is None or str(text).strip() == "":
        return None
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise EmdaError(f"{option} {text}: expected Z,Y,X in nm, e.g. 50,4.6,4.6") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or any(not np.isfinite(v) or v <= 0 for v in values):
        raise EmdaError(f"{option} {text}: expected three positive numbers Z,Y,X in nm")
    return (values[0], values[1], values[2])


def _plain_attribute(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
