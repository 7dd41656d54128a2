"""Single-file outputs (TIFF, HDF5, MRC) written from a finished partial zarr array.

Each writer streams the array slice by slice into a temporary file that the caller
renames over the output, so memory holds one slice and nothing half-written appears
under the output's name. A file is always written whole: an HDF5 output is a new file
holding one dataset, never a dataset added to a file that holds others.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from emda.errors import EmdaError
from emda.io.volume import HDF5_SUFFIXES, MRC_SUFFIXES, TIFF_SUFFIXES, VoxelSize

HDF5_DATASET = "data"  # the dataset of ``out.h5`` given without one


def file_kind(store: Path) -> str | None:
    """``tiff``, ``hdf5`` or ``mrc`` for an output file's suffix; None otherwise."""
    suffix = store.suffix.lower()
    for kind, suffixes in (("tiff", TIFF_SUFFIXES), ("hdf5", HDF5_SUFFIXES),
                           ("mrc", MRC_SUFFIXES)):  # fmt: skip
        if suffix in suffixes:
            return kind
    return None


def check_file_output(store: Path, key: str | None, dtype: np.dtype, option: str) -> None:
    """What a single-file output can hold, checked before any work."""
    kind = file_kind(store)
    if kind == "mrc" and (dtype.kind in "iu" and dtype.itemsize > 2):
        raise EmdaError(f"{option} {store}: MRC has no integer type for {dtype} labels "
                        "(write .tif, .zarr or .h5)")  # fmt: skip
    if kind == "hdf5" and store.is_file():
        others = sorted(set(_datasets_in(store)) - {key or HDF5_DATASET})
        if others:
            raise EmdaError(f"{option} {store}: holds other datasets ({', '.join(others[:3])}); "
                            "emda writes a whole new file, so write to another one")  # fmt: skip


def _datasets_in(path: Path) -> list[str]:
    import h5py

    from emda.io.readers import hdf5_datasets

    try:
        with h5py.File(path, "r") as fh:
            return hdf5_datasets(fh)
    except OSError:
        return ["(an unreadable HDF5 file)"]


def write_file(kind: str, tmp: Path, array: Any, shape: tuple[int, int, int], dtype: np.dtype,
               voxel_size: VoxelSize | None, attrs: dict, key: str | None) -> None:  # fmt: skip
    """Write ``array`` (read slice by slice) as a ``kind`` file at ``tmp``."""
    pages = (np.asarray(array[z]) for z in range(shape[0]))
    if kind == "tiff":
        write_tiff(tmp, pages, shape, dtype, voxel_size)
    elif kind == "hdf5":
        write_hdf5(tmp, pages, shape, dtype, voxel_size, attrs, key or HDF5_DATASET)
    elif kind == "mrc":
        write_mrc(tmp, pages, shape, dtype, voxel_size, attrs)
    else:
        raise ValueError(f"no single-file writer for {kind!r}")


def write_tiff(tmp: Path, pages, shape, dtype: np.dtype, voxel_size: VoxelSize | None) -> None:
    import tifffile

    kwargs: dict[str, Any] = {"compression": "zlib"}
    meta: dict[str, Any] = {"axes": "ZYX"}
    if voxel_size is not None:
        vz, vy, vx = voxel_size
        kwargs.update(resolution=(1 / vx, 1 / vy), resolutionunit="NONE")
        meta.update(spacing=vz, unit="nm")
    imagej = dtype in (np.dtype("uint8"), np.dtype("uint16"), np.dtype("float32"))
    with open(tmp, "wb") as fh:
        tifffile.imwrite(fh, data=pages, shape=shape, dtype=dtype, imagej=imagej, metadata=meta,
                         **kwargs)  # fmt: skip
        _sync(fh)


def write_hdf5(tmp: Path, pages, shape, dtype: np.dtype, voxel_size: VoxelSize | None,
               attrs: dict, dataset: str) -> None:  # fmt: skip
    """One chunked, compressed dataset; voxel size as ``resolution`` (nm, z y x, as CREMI
    files) and ``element_size_um`` (as ilastik), emda's attributes as JSON text."""
    import h5py

    _, y, x = shape
    with h5py.File(tmp, "w") as fh:
        data = fh.create_dataset(dataset, shape=shape, dtype=dtype, compression="gzip",
                                 chunks=(1, min(y, 1024), min(x, 1024)))  # fmt: skip
        for z, page in enumerate(pages):
            data[z] = page
        if voxel_size is not None:
            data.attrs["resolution"] = np.asarray(voxel_size, dtype=np.float64)
            data.attrs["element_size_um"] = np.asarray(voxel_size, dtype=np.float64) / 1000
        for name, value in attrs.items():
            data.attrs[name] = value if isinstance(value, str | int | float | bool) else (
                json.dumps(value))  # fmt: skip
        fh.flush()
    with open(tmp, "rb+") as raw:
        _sync(raw)


def write_mrc(tmp: Path, pages, shape, dtype: np.dtype, voxel_size: VoxelSize | None,
              attrs: dict) -> None:  # fmt: skip
    """MRC has no unsigned 8-bit mode: a mask (0/1) is written as int8, uint8
    probabilities as float32 in [0, 1] and other bytes as uint16, each read back by emda
    as what it is."""
    import mrcfile

    kind = attrs.get("emda_kind")
    probability = kind == "probability" and dtype == np.dtype("uint8")
    target = dtype
    if dtype == np.dtype("uint8"):  # a mask fits int8; other bytes need 16 bits
        target = np.dtype("float32" if probability else "int8" if kind == "mask" else "uint16")
    with mrcfile.new_mmap(tmp, shape=shape, mrc_mode=mrcfile.utils.mode_from_dtype(target),
                          overwrite=True) as mrc:  # fmt: skip
        for z, page in enumerate(pages):
            mrc.data[z] = page.astype(np.float32) / 255 if probability else page
        if voxel_size is not None:
            vz, vy, vx = voxel_size
            mrc.voxel_size = (vx * 10, vy * 10, vz * 10)  # angstrom, x y z
        mrc.update_header_stats()
        mrc.flush()
    with open(tmp, "rb+") as raw:
        _sync(raw)


def _sync(fh) -> None:
    fh.flush()
    os.fsync(fh.fileno())
