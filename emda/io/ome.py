"""OME-Zarr output: multiscale metadata and the downsampled levels.

Level ``k`` halves level ``k - 1`` in y and x (not z: EM sections are already thick) and
is written block by block, so memory holds a few chunks, not a level. Probabilities are
averaged over 2 x 2 pixels; masks keep every other pixel (a mask stays a mask).

NGFF 0.5 (zarr v3, metadata under ``ome``) is the default; NGFF 0.4 (zarr v2, metadata
at the top of ``.zattrs``, "/" chunk keys) is written for viewers that read no other,
and for labels added to an image that is 0.4 itself.
Specs: https://ngff.openmicroscopy.org/0.5/ and https://ngff.openmicroscopy.org/0.4/
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NGFF_VERSION = "0.5"
NGFF_VERSIONS = ("0.4", "0.5")
ZARR_FORMAT = {"0.4": 2, "0.5": 3}


def zarr_format(version: str) -> int:
    return ZARR_FORMAT[version]


def array_options(version: str) -> dict:
    """zarr.create_array arguments for an array of an NGFF ``version`` image."""
    if version == "0.4":
        return {"zarr_format": 2, "chunk_key_encoding": {"name": "v2", "separator": "/"}}
    return {"zarr_format": 3, "dimension_names": ["z", "y", "x"]}


def group_version(path: Path) -> str | None:
    """The NGFF version of the OME-Zarr group at ``path`` (None if there is none)."""
    import zarr

    try:
        attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # no group there, or not zarr
        return None
    if "ome" in attrs:
        return str(attrs["ome"].get("version", NGFF_VERSION))
    for entry in attrs.get("multiscales", []):
        return str(entry.get("version", "0.4"))
    return "0.4" if "labels" in attrs else None


def with_metadata(attrs: dict, ome: dict, version: str) -> dict:
    """Group attributes holding the NGFF metadata ``ome`` as ``version`` lays it out."""
    if version == "0.5":
        return {**attrs, "ome": {"version": version, **ome}}
    multiscales = [{"version": version, **m} for m in ome.get("multiscales", [])]
    rest = {k: ({"version": version, **v} if isinstance(v, dict) else v)
            for k, v in ome.items() if k != "multiscales"}  # fmt: skip
    return {**attrs, **({"multiscales": multiscales} if multiscales else {}), **rest}


def multiscales_metadata(
    levels: int, voxel_size: tuple[float, float, float] | None, name: str
) -> dict:
    """The NGFF metadata of a z, y, x image with ``levels`` downsampled levels, without
    its version (:func:`with_metadata` places both as the version asks)."""
    unit = {"unit": "nanometer"} if voxel_size is not None else {}
    axes = [{"name": a, "type": "space", **unit} for a in ("z", "y", "x")]
    vz, vy, vx = voxel_size if voxel_size is not None else (1.0, 1.0, 1.0)
    datasets = [
        {
            "path": str(k),
            "coordinateTransformations": [{"type": "scale", "scale": [vz, vy * 2**k, vx * 2**k]}],
        }
        for k in range(levels + 1)
    ]
    return {"multiscales": [{"name": name, "axes": axes, "datasets": datasets}]}


def downsample(block: np.ndarray, average: bool) -> np.ndarray:
    """Halve a (y, x) block; odd edges repeat their last row/column when averaging."""
    if not average:
        return block[::2, ::2]
    y, x = block.shape
    padded = np.pad(block, ((0, y % 2), (0, x % 2)), mode="edge").astype(np.float32)
    mean = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).mean(axis=(1, 3))
    return (
        np.round(mean).astype(block.dtype) if block.dtype.kind in "ui" else mean.astype(block.dtype)
    )


def write_multiscale_group(
    root: Path,
    levels: int,
    voxel_size: tuple[float, float, float] | None,
    attrs: dict,
    name: str,
    label_of_image: bool = False,
    version: str = NGFF_VERSION,
) -> None:
    """Turn ``root`` (holding the full-resolution array ``0``) into an OME-Zarr image
    group: write levels 1..``levels`` and the group's metadata (``attrs`` beside ``ome``).
    A label image (``emda_kind`` "labels") is marked ``image-label``, so viewers show it
    as labels; ``label_of_image``: it lies in an image's ``labels/`` group."""
    import zarr

    labels = attrs.get("emda_kind") in ("labels", "mask")  # viewers show both as labels
    average = attrs.get("emda_kind") not in ("mask", "labels")  # ids and masks: subsample
    previous = zarr.open_array(str(root / "0"), mode="r")
    for k in range(1, levels + 1):
        nz, ny, nx = previous.shape
        shape = (nz, (ny + 1) // 2, (nx + 1) // 2)
        _, cy, cx = previous.chunks
        chunks = (1, min(cy, shape[1]), min(cx, shape[2]))
        level = zarr.create_array(
            store=str(root / str(k)),
            shape=shape,
            chunks=chunks,
            dtype=previous.dtype,
            **array_options(version),
        )
        for z in range(nz):
            for y0 in range(0, shape[1], chunks[1]):
                for x0 in range(0, shape[2], chunks[2]):
                    src = previous[z, 2 * y0 : 2 * (y0 + chunks[1]), 2 * x0 : 2 * (x0 + chunks[2])]
                    small = downsample(np.asarray(src), average)
                    level[z, y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
        previous = level
    ome = multiscales_metadata(levels, voxel_size, name)
    if labels:
        ome["image-label"] = {"source": {"image": "../../"}} if label_of_image else {}
    group = zarr.open_group(str(root), mode="a", zarr_format=zarr_format(version))
    group.attrs.put(with_metadata(attrs, ome, version))


def list_label(labels_group: Path, name: str, version: str = NGFF_VERSION) -> None:
    """Add ``name`` to the ``labels`` list of an OME-Zarr image's ``labels/`` group."""
    import zarr

    group = zarr.open_group(str(labels_group), mode="a", zarr_format=zarr_format(version))
    attrs = dict(group.attrs)
    listed = attrs.get("ome", attrs).get("labels", [])
    names = [*(n for n in listed if n != name), name]
    if version == "0.5":
        group.attrs.put({**attrs, "ome": {**attrs.get("ome", {}), "version": version,
                                          "labels": names}})  # fmt: skip
    else:
        group.attrs.put({**attrs, "labels": names})
