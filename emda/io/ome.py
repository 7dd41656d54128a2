"""OME-Zarr (NGFF 0.5) output: multiscale metadata and the downsampled levels.

Level ``k`` halves level ``k - 1`` in y and x (not z: EM sections are already thick) and
is written block by block, so memory holds a few chunks, not a level. Probabilities are
averaged over 2 x 2 pixels; masks keep every other pixel (a mask stays a mask).
Spec: https://ngff.openmicroscopy.org/0.5/
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NGFF_VERSION = "0.5"


def multiscales_metadata(
    levels: int, voxel_size: tuple[float, float, float] | None, name: str
) -> dict:
    """The ``ome`` attribute of a z, y, x image with ``levels`` downsampled levels."""
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
    return {
        "version": NGFF_VERSION,
        "multiscales": [{"name": name, "axes": axes, "datasets": datasets}],
    }


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
) -> None:
    """Turn ``root`` (holding the full-resolution array ``0``) into an OME-Zarr image
    group: write levels 1..``levels`` and the group's metadata (``attrs`` beside ``ome``).
    A label image (``emda_kind`` "labels") is marked ``image-label``, so viewers show it
    as labels; ``label_of_image``: it lies in an image's ``labels/`` group."""
    import zarr

    labels = attrs.get("emda_kind") == "labels"
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
            zarr_format=3,
            dimension_names=["z", "y", "x"],
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
        source = {"source": {"image": "../../"}} if label_of_image else {}
        ome["image-label"] = {"version": NGFF_VERSION, **source}
    group = zarr.open_group(str(root), mode="a", zarr_format=3)
    group.attrs.put({**attrs, "ome": ome})


def list_label(labels_group: Path, name: str) -> None:
    """Add ``name`` to the ``labels`` list of an OME-Zarr image's ``labels/`` group."""
    import zarr

    group = zarr.open_group(str(labels_group), mode="a", zarr_format=3)
    ome = dict(group.attrs.get("ome", {}))
    listed = [n for n in ome.get("labels", []) if n != name]
    group.attrs.put({**dict(group.attrs), "ome": {**ome, "version": NGFF_VERSION,
                                                  "labels": [*listed, name]}})  # fmt: skip
