"""`emda instances`: individual mitochondria from a prediction, as a label image.

The prediction is thresholded and its 3D connected components are labelled block by
block (:mod:`emda.postprocessing.labeling`), so volumes of any size fit in memory.
Objects connect across slices when the z-step is at most ``CONNECT_Z_MAX_NM``: a
mitochondrion is at least ~200 nm across, so at such a step it spans two or more
sections that overlap; at a coarser step (thick serial sections), neighbouring sections
of one object may not overlap and unrelated objects would be joined, so each slice is
labelled on its own. Objects smaller than ``min_size`` (nm^3) are removed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from scipy import ndimage

from emda.errors import EmdaError
from emda.evaluation.evaluate import binarize, check_threshold, prediction_kind
from emda.io.volume import Volume, VoxelSize, open_volume, split_address
from emda.io.writer import all_or_nothing
from emda.postprocessing.labeling import Block, label_blocks, plan_blocks
from emda.postprocessing.split import split_objects
from emda.safety.paths import check_output, refuse_writing_inputs
from emda.safety.validate import check_complete

CONNECT_Z_MAX_NM = 100.0
BLOCK_DEPTH = 32  # slices per block
BLOCK_SIZE = 1024  # y and x of a block: one block of uint64 labels is 256 MiB at most


@dataclass(frozen=True)
class InstanceSummary:
    count: int
    removed: int  # objects under the minimum size
    min_voxels: int
    connect_z: bool
    shape: tuple[int, int, int]
    dtype: str
    seconds: float
    split: int = 0  # objects added by splitting touching ones


def connects_across_z(voxel_size: VoxelSize | None) -> bool:
    """The default: connect across slices unless the z-step is coarser than the limit."""
    return voxel_size is None or voxel_size[0] <= CONNECT_Z_MAX_NM


def min_voxels(min_size: float | None, voxel_size: VoxelSize | None, path: str) -> int:
    """A minimum object size in nm^3 as a voxel count for this volume."""
    if min_size is None:
        return 0
    if not math.isfinite(min_size) or min_size <= 0:
        raise EmdaError(f"--min-size {min_size}: must be a positive volume in nm^3")
    if voxel_size is None:
        raise EmdaError(f"--min-size is in nm^3, and {path} has no voxel size: give "
                        "--voxel-size Z,Y,X")  # fmt: skip
    return math.ceil(min_size / float(np.prod(voxel_size)))


def check_prediction(volume: Volume) -> str:
    """A probability map or mask, not a label image: the kind ``binarize`` needs."""
    kind = prediction_kind(volume)
    if kind == "labels":
        raise EmdaError(f"{volume.path}: is a label image, not a probability map or mask")
    return kind


def label_instances(
    prediction: str,
    output: str,
    *,
    threshold: float = 0.5,
    min_size: float | None = None,
    connect_z: bool | None = None,
    split: bool = False,
    key: str | None = None,
    voxel_size: VoxelSize | None = None,
    overwrite: bool = False,
    progress=None,
) -> InstanceSummary:
    """Write the individual objects of ``prediction`` (probabilities at ``threshold``, or
    a mask) to ``output`` as a label image (uint32, uint64 when needed): 0 is
    background, objects are numbered 1..N. ``min_size`` in nm^3; ``connect_z`` None
    chooses from the voxel size (module docstring); ``split`` separates touching objects
    (:mod:`emda.postprocessing.split`)."""
    check_threshold(threshold)
    volume = open_volume(prediction, key, voxel_size)
    check_complete(volume)
    refuse_writing_inputs({"--output": output}, [volume.location])
    check_output(output, overwrite)
    kind = check_prediction(volume)
    smallest = min_voxels(min_size, volume.voxel_size, str(prediction))
    connect = connects_across_z(volume.voxel_size) if connect_z is None else connect_z
    start = time.perf_counter()

    def read_mask(block: Block) -> np.ndarray:
        return binarize(volume.read(block.z, block.y, block.x), kind, threshold, volume.path)

    store, _ = split_address(output)
    workdir = store.parent if str(store.parent) else Path(".")
    components, read_labels, cleanup = label_blocks(
        read_mask, volume.shape, connect, smallest, BLOCK_DEPTH, BLOCK_SIZE, workdir, progress
    )
    blocks = plan_blocks(volume.shape, BLOCK_DEPTH, BLOCK_SIZE)
    attrs = {"emda_kind": "labels", "emda_instances": {
        "input": str(prediction), "threshold": threshold, "min_size_nm3": min_size,
        "min_voxels": smallest, "connect_z": connect, "count": components.count}}  # fmt: skip
    try:
        with all_or_nothing() as open_writer:  # labelling again is cheap: nothing to resume
            writer = open_writer(output, volume.shape, components.lookup.dtype,
                                 volume.voxel_size, overwrite, attrs=attrs)  # fmt: skip
            boxes: dict[int, tuple[slice, ...]] = {}
            for done, block in enumerate(blocks, 1):
                labels = read_labels(block)
                writer.array[block.index] = labels
                if split:
                    _grow_boxes(boxes, labels, block)
                if progress:
                    progress(len(blocks) + done, 2 * len(blocks))
            count = components.count
            if split:
                count = split_objects(lambda box: np.asarray(writer.array[box]), boxes,
                                      partial(_store_parts, writer.array), count,
                                      volume.voxel_size, connect)  # fmt: skip
                writer.attrs["emda_instances"]["count"] = count
                writer.array.attrs.update({"emda_instances": writer.attrs["emda_instances"]})
    finally:
        cleanup()
    return InstanceSummary(
        count, components.removed, smallest, connect, volume.shape,
        str(components.lookup.dtype), time.perf_counter() - start, count - components.count,
    )  # fmt: skip


def _grow_boxes(boxes: dict, labels: np.ndarray, block: Block) -> None:
    """Union of each object's bounding box over the blocks it appears in."""
    origin = (block.z.start, block.y.start, block.x.start)
    for index, box in enumerate(ndimage.find_objects(labels), 1):
        if box is None:
            continue
        here = tuple(slice(s.start + o, s.stop + o) for s, o in zip(box, origin))
        old = boxes.get(index, here)
        boxes[index] = tuple(slice(min(a.start, b.start), max(a.stop, b.stop))
                             for a, b in zip(old, here))  # fmt: skip


def _store_parts(array, box, mask: np.ndarray, parts: np.ndarray) -> None:
    current = np.asarray(array[box])
    array[box] = np.where(mask, parts, current).astype(current.dtype)
