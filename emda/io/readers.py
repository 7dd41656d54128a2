"""Volumes in files that hold one array each, or a few named ones: TIFF (ImageJ, OME),
HDF5 (``file.h5/dataset`` or ``--key``) and MRC. HDF5 datasets and MRC files are read
block by block from disk (MRC through a memory map), like zarr; a TIFF is read whole.

Voxel sizes come from each format's own metadata: ImageJ's unit and spacing or OME's
PhysicalSize for TIFF; an HDF5 dataset's ``resolution`` (nm, z y x, as CREMI writes it),
``element_size_um`` (um, z y x, as ilastik and Fiji write it) or ``voxel_size`` (nm);
the MRC header's voxel size (angstrom).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emda.errors import EmdaError
from emda.io.units import NM_PER_UNIT, nm_per
from emda.io.volume import (
    HDF5_SUFFIXES,
    MRC_SUFFIXES,
    TIFF_SUFFIXES,
    Volume,
    VoxelSize,
    _short,
)


def open_file(store: Path, key: str | None, address) -> Volume:
    """The volume in a TIFF, HDF5 or MRC file (``key``: an HDF5 dataset)."""
    suffix = store.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return open_hdf5(store, key, address)
    if key:
        raise EmdaError(f"{address}: --key applies to zarr and HDF5 files only")
    if suffix in TIFF_SUFFIXES:
        return open_tiff(store)
    if suffix in MRC_SUFFIXES:
        return open_mrc(store)
    raise EmdaError(
        f"{address}: unsupported file type '{store.suffix or store.name}' "
        "(use .tif/.tiff, a .zarr store, .h5/.hdf5 or .mrc)"
    )


def open_tiff(path: Path) -> Volume:
    import tifffile

    if not path.is_file():
        raise EmdaError(f"{path}: no such file")
    try:
        with tifffile.TiffFile(path) as tif:
            array = tif.asarray()
            voxel = _tiff_voxel_size(tif)
    except EmdaError:
        raise
    except Exception as exc:
        raise EmdaError(f"{path}: not a readable TIFF ({_short(exc)})") from None
    array = np.squeeze(array) if array.ndim > 3 else array
    if array.ndim == 3 and array.shape[-1] in (3, 4) and array.shape[0] > 4:
        raise EmdaError(f"{path}: looks like an RGB image; convert it to greyscale first")
    return Volume(array, str(path), voxel, location=str(path))


def _tiff_voxel_size(tif) -> VoxelSize | None:
    """From ImageJ metadata (unit, spacing), or tifffile's own (what emda writes for
    dtypes ImageJ cannot hold, such as uint32 labels), and the X/YResolution tags."""
    shaped = tif.shaped_metadata[0] if tif.shaped_metadata else {}
    ij = tif.imagej_metadata or shaped or {}
    unit = str(ij.get("unit", "")).strip().lower().replace("metre", "meter")
    scale = NM_PER_UNIT.get(unit)  # "pixel" or none: uncalibrated
    if scale is None:
        return _ome_tiff_voxel_size(tif)
    tags = tif.pages[0].tags

    def size(tag: str) -> float | None:
        if tag not in tags:
            return None
        num, den = tags[tag].value
        return den / num * scale if num else None

    y, x = size("YResolution"), size("XResolution")
    if y is None or x is None:
        return None
    z = float(ij.get("spacing", 1.0)) * scale
    return (round(z, 6), round(y, 6), round(x, 6))


def _ome_tiff_voxel_size(tif) -> VoxelSize | None:
    """From an OME-TIFF's Pixels element: PhysicalSize{X,Y,Z} in their own units (OME's
    default unit is the micrometre)."""
    if not tif.is_ome or not tif.ome_metadata:
        return None
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(tif.ome_metadata)
    except ElementTree.ParseError:
        return None
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None or pixels.get("PhysicalSizeX") is None:
        return None

    def size(axis: str, default: float | None) -> float | None:
        value = pixels.get(f"PhysicalSize{axis}")
        if value is None:
            return default
        return float(value) * nm_per(pixels.get(f"PhysicalSize{axis}Unit", "µm"), tif.filename)

    x = size("X", None)
    y, z = size("Y", x), size("Z", x)
    return None if x is None else (round(z, 6), round(y, 6), round(x, 6))  # type: ignore[arg-type]


def open_hdf5(path: Path, key: str | None, address) -> Volume:
    try:
        import h5py
    except ImportError:
        raise EmdaError(f"{address}: reading HDF5 needs h5py (pip install h5py)") from None
    if not path.is_file():
        raise EmdaError(f"{path}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise EmdaError(f"{path}: not a readable HDF5 file ({_short(exc)})") from None
    node = handle[key] if key and key in handle else None
    if key and node is None:
        raise EmdaError(f"{address}: no dataset '{key}' in {path}")
    if node is None or isinstance(node, h5py.Group):
        names = hdf5_datasets(node if node is not None else handle)
        if len(names) != 1:  # one dataset (as emda and many exporters write) needs no name
            raise EmdaError(f"{address}: name a dataset as {path}/NAME or with --key "
                            f"(datasets here: {', '.join(names) or 'none'})")  # fmt: skip
        key = "/".join(k for k in (key, names[0]) if k)
        node = handle[key]
    location = f"{path}/{key}"
    return Volume(node, str(address), _hdf5_voxel_size(node.attrs, address), location=location)


def hdf5_datasets(group) -> list[str]:
    """Every dataset below an open HDF5 file or group, nested ones by their path."""
    import h5py

    names: list[str] = []
    group.visititems(lambda n, item: names.append(n) if isinstance(item, h5py.Dataset)
                     else None)  # fmt: skip
    return names


def _hdf5_voxel_size(attrs, where) -> VoxelSize | None:
    for name, factor in (("resolution", 1.0), ("voxel_size", 1.0), ("element_size_um", 1e3)):
        if name in attrs:
            values = [float(v) * factor for v in np.ravel(attrs[name])]
            if len(values) == 2:
                values = [1.0, *values]
            if len(values) != 3:
                raise EmdaError(f"{where}: attribute {name} holds {len(values)} values, not "
                                "z, y, x")  # fmt: skip
            return tuple(values)  # type: ignore[return-value]
    return None


def open_mrc(path: Path) -> Volume:
    try:
        import mrcfile
    except ImportError:
        raise EmdaError(f"{path}: reading MRC needs mrcfile (pip install mrcfile)") from None
    if not path.is_file():
        raise EmdaError(f"{path}: no such file")
    try:
        mrc = mrcfile.mmap(path, mode="r", permissive=True)
    except Exception as exc:  # mrcfile raises ValueError, OSError, EOFError on bad files
        raise EmdaError(f"{path}: not a readable MRC file ({_short(exc)})") from None
    if mrc.data is None:
        raise EmdaError(f"{path}: not a readable MRC file (no data after its header)")
    size = mrc.voxel_size  # angstrom, x y z; all zero when the header has none
    voxel = None
    if all(float(v) > 0 for v in (size.x, size.y, size.z)):
        voxel = (float(size.z) / 10, float(size.y) / 10, float(size.x) / 10)
    volume = Volume(mrc.data, str(path), voxel, location=str(path))
    volume.handle = mrc  # type: ignore[attr-defined]  # the memory map lives as long
    return volume
